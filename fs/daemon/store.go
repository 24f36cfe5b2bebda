package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
)

// Store is what a command does with a store, mounted or not.
type Store interface {
	// Dir is the store directory.
	Dir() string
	// Mounted reports whether a daemon serves the store.
	Mounted() bool
	Stats() (gc.Stats, error)
	// Writing lists the files being written through the mount (none
	// when the store is not mounted).
	Writing() ([]fs.Writing, error)
	Generations(p gc.Policy) ([]gc.Generation, error)
	Fsck(p gc.Progress) (gc.FsckReport, error)
	// Repair deletes the chunks nothing references, after accepting a
	// store whose log lost acknowledged writes as it is now.
	Repair() (RepairReport, error)
	GC(req GCRequest, p gc.Progress) (GCReport, error)
}

// GCRequest is what a gc run does.
type GCRequest struct {
	Policy gc.Policy `json:"policy"`
	DryRun bool      `json:"dry_run"`
	// Lineage limits gc to the images of one guest in one directory (the
	// receiver expires its own lineage after each checkpoint).
	Lineage *gc.Scope `json:"lineage,omitempty"`
	// NoCompact skips the compaction (and the wait for blob rewrites): the
	// receiver expires after every checkpoint and must not stall on it.
	NoCompact bool `json:"no_compact,omitempty"`
	// RewriteAll rewrites every segment with dead bytes (gc --compact).
	RewriteAll bool `json:"rewrite_all,omitempty"`
}

// GCReport is what gc did (or, with DryRun, would do).
type GCReport struct {
	DryRun  bool        `json:"dry_run"`
	Expired []gc.Victim `json:"expired"`
	Failed  []string    `json:"failed,omitempty"` // files that could not be removed
	// WouldFree is, for a dry run, the stored bytes removing the expired
	// files and collecting would free.
	WouldFree int64      `json:"would_free,omitempty"`
	Result    *gc.Result `json:"result,omitempty"`
}

// RepairReport is what a repair did.
type RepairReport struct {
	gc.Result
	// Accepted is set when the store's log had lost acknowledged writes
	// and the store was accepted as it is now: the durable commits it
	// has, and how many the log lost.
	Accepted *Accepted `json:"accepted,omitempty"`
}

// Accepted is a lost-writes state accepted by a repair.
type Accepted struct {
	Durable uint64 `json:"durable"`
	Lost    uint64 `json:"lost"`
}

// Options are how Open reaches a store.
type Options struct {
	// Wait is how long to wait for a store another process holds (a
	// daemon just unmounted closes its store within a fraction of a
	// second).
	Wait time.Duration
}

// StoreDir returns the store directory path names: the store of a ckptfs
// mount when path is its mountpoint, else path made absolute.
func StoreDir(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if e, ok, err := fs.MountAt(abs); err == nil && ok && strings.HasPrefix(e.FSType, "fuse.ckptfs") && e.Source != "" {
		return e.Source, nil
	}
	return abs, nil
}

// Open returns the store at path (a store directory or its mountpoint):
// each call goes to the daemon that serves it, or, when none does (or it
// has just exited), to the store opened here for that call.
func Open(path string, o Options) (Store, error) {
	dir, err := StoreDir(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return &auto{c: &Client{dir: dir}, off: &Offline{dir: dir, o: o}}, nil
}

// auto asks the daemon, and opens the store itself when none answers.
type auto struct {
	c   *Client
	off *Offline
}

func either[T any](a *auto, daemon func(*Client) (T, error), offline func(*Offline) (T, error)) (T, error) {
	v, err := daemon(a.c)
	if errors.Is(err, ErrNoDaemon) {
		return offline(a.off)
	}
	return v, err
}

func (a *auto) Dir() string   { return a.c.dir }
func (a *auto) Mounted() bool { return a.c.Mounted() }
func (a *auto) Stats() (gc.Stats, error) {
	return either(a, (*Client).Stats, (*Offline).Stats)
}
func (a *auto) Writing() ([]fs.Writing, error) {
	return either(a, (*Client).Writing, (*Offline).Writing)
}
func (a *auto) Generations(p gc.Policy) ([]gc.Generation, error) {
	return either(a, func(c *Client) ([]gc.Generation, error) { return c.Generations(p) },
		func(o *Offline) ([]gc.Generation, error) { return o.Generations(p) })
}
func (a *auto) Fsck(p gc.Progress) (gc.FsckReport, error) {
	return either(a, func(c *Client) (gc.FsckReport, error) { return c.Fsck(p) },
		func(o *Offline) (gc.FsckReport, error) { return o.Fsck(p) })
}
func (a *auto) Repair() (RepairReport, error) {
	return either(a, (*Client).Repair, (*Offline).Repair)
}
func (a *auto) GC(req GCRequest, p gc.Progress) (GCReport, error) {
	return either(a, func(c *Client) (GCReport, error) { return c.GC(req, p) },
		func(o *Offline) (GCReport, error) { return o.GC(req, p) })
}
