package daemon

import (
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

// Offline is a store no daemon serves, opened for each call (read-only to
// read it, writable to change it) and closed after.
type Offline struct {
	dir string
	o   Options
}

// NewOffline returns the unmounted store in dir.
func NewOffline(dir string, o Options) *Offline { return &Offline{dir: dir, o: o} }

func (s *Offline) Dir() string   { return s.dir }
func (s *Offline) Mounted() bool { return false }

func (s *Offline) with(o fs.OpenOptions, fn func(*fs.Store) error) error {
	o.Wait = s.o.Wait
	st, err := fs.Open(s.dir, o)
	if err != nil {
		return err
	}
	err = fn(st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Offline) Stats() (r gc.Stats, err error) {
	err = s.with(fs.OpenOptions{ReadOnly: true}, func(st *fs.Store) (err error) {
		r, err = gc.ComputeStats(st.Chunks, st.Index)
		return err
	})
	return r, err
}

// Writing is empty: nothing writes into a store no daemon serves.
func (s *Offline) Writing() ([]fs.Writing, error) { return []fs.Writing{}, nil }

func (s *Offline) Generations(p gc.Policy) (r []gc.Generation, err error) {
	err = s.with(fs.OpenOptions{ReadOnly: true}, func(st *fs.Store) (err error) {
		r, err = gc.List(st.Index, p)
		return err
	})
	return r, err
}

func (s *Offline) Fsck(p gc.Progress) (r gc.FsckReport, err error) {
	err = s.with(fs.OpenOptions{ReadOnly: true}, func(st *fs.Store) error {
		rep, err := gc.FsckProgress(st.Chunks, st.Index, p)
		if rep != nil {
			r = *rep
		}
		return err
	})
	return r, err
}

func (s *Offline) Repair() (r RepairReport, err error) {
	err = s.with(fs.OpenOptions{AllowLost: true}, func(st *fs.Store) (err error) {
		if lost := st.Chunks.Lost(); lost != nil {
			if err := st.Chunks.AcceptLoss(); err != nil {
				return err
			}
			r.Accepted = &Accepted{Durable: lost.DB, Lost: lost.Marker - lost.DB}
		}
		r.Result, err = gc.Repair(st.Chunks, st.Index)
		return err
	})
	return r, err
}

func (s *Offline) GC(req GCRequest, p gc.Progress) (r GCReport, err error) {
	err = s.with(fs.OpenOptions{}, func(st *fs.Store) (err error) {
		r, err = RunGC(st.Chunks, st.Index, req, gc.OfflineRemover(st.Index, time.Now().UnixNano()), p)
		return err
	})
	return r, err
}

// RunGC is one gc request: its plan (gc.NewPlan), then what it would free
// (a dry run) or its execution, removing files with rm.
func RunGC(cs *chunkstore.Store, x *index.Index, req GCRequest, rm gc.Remover, p gc.Progress) (GCReport, error) {
	rep := GCReport{DryRun: req.DryRun, Expired: []gc.Victim{}}
	plan, err := gc.NewPlan(x, req.Policy, req.Lineage)
	if err != nil {
		return rep, err
	}
	if plan.Expired != nil {
		rep.Expired = plan.Expired
	}
	if req.DryRun {
		rep.WouldFree, err = plan.WouldFree(cs, x)
		return rep, err
	}
	done, err := plan.Execute(cs, x, rm, gc.Options{CompactKeys: !req.NoCompact, RewriteAll: req.RewriteAll}, p)
	rep.Failed = done.Failed
	rep.Result = &done.Result
	return rep, err
}
