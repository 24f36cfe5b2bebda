package daemon

import (
	"strings"
	"sync"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

// Daemon is the mount daemon's side of a store: what it holds, and its
// gc, one run at a time. Files are removed through the mounted
// filesystem's own namespace (by directory inode and entry, never by a
// path the kernel resolves), which keeps the kernel's caches right and
// open files readable until closed. Its methods are the Store the control
// socket serves.
type Daemon struct {
	Dir    string
	Chunks *chunkstore.Store
	Index  *index.Index
	FS     *fs.FS
	Data   *content.Store // the engine (transfers and receives write through it)
	// Human formats byte counts in a receive's progress lines (nil:
	// plain numbers).
	Human func(int64) string

	mu sync.Mutex // one gc or repair at a time; guards the counters
	// What the gc runs did, for the metrics.
	runs, expired, freed int64
	last                 time.Time
}

// GCCounters returns how many gc runs completed, the files they expired,
// the stored bytes they freed and when the last one ended.
func (d *Daemon) GCCounters() (runs, expired, freed int64, last time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runs, d.expired, d.freed, d.last
}

func (d *Daemon) Stats() (gc.Stats, error) {
	d.FS.WaitCommitted() // files closed behind their writers count
	return gc.ComputeStats(d.Chunks, d.Index)
}

func (d *Daemon) Writing() ([]fs.Writing, error) {
	w := d.FS.Writing()
	if w == nil {
		w = []fs.Writing{}
	}
	return w, nil
}

func (d *Daemon) Generations(p gc.Policy) ([]gc.Generation, error) {
	d.FS.WaitCommitted()
	return gc.List(d.Index, p)
}

func (d *Daemon) Fsck(p gc.Progress) (gc.FsckReport, error) {
	d.FS.WaitCommitted()
	rep, err := gc.FsckProgress(d.Chunks, d.Index, p)
	if rep == nil {
		return gc.FsckReport{}, err
	}
	return *rep, err
}

// Repair deletes the unreferenced chunks; a store whose log lost writes
// is mounted read-only, and its loss is accepted offline only.
func (d *Daemon) Repair() (RepairReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, err := gc.Repair(d.Chunks, d.Index)
	return RepairReport{Result: r}, err
}

// GC runs req now (the control socket's gc first waits for the files
// closed behind their writers; the receiver's and the automatic gc do
// not).
func (d *Daemon) GC(req GCRequest, p gc.Progress) (GCReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rep, err := RunGC(d.Chunks, d.Index, req, d.FS.Remove, p)
	if req.DryRun || rep.Result == nil {
		return rep, err
	}
	d.runs++
	d.expired += int64(len(rep.Expired) - len(rep.Failed))
	d.freed += rep.Result.StoredFreed
	d.last = time.Now()
	if err == nil {
		err = d.Index.Sync() // what gc reports removed stays removed
	}
	return rep, err
}

// AutoGC runs policy after each completed checkpoint until stop closes:
// images counts the whole xl save images committed so far, polled every
// interval; logf hears what each run expired, as printGC would say it.
func (d *Daemon) AutoGC(policy gc.Policy, images func() int64, interval time.Duration, logf func(string, ...any), report func(GCReport) string, stop <-chan struct{}) {
	last := images()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if n := images(); n != last {
			last = n
			rep, err := d.GC(GCRequest{Policy: policy}, nil)
			if err != nil {
				logf("gc: %v", err)
				continue
			}
			if len(rep.Expired) > 0 || len(rep.Failed) > 0 {
				logf("gc after checkpoint:\n%s", strings.TrimRight(report(rep), "\n"))
			}
		}
	}
}
