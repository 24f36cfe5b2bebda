package fs

import (
	"errors"
	"os"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// Store is an open store: its chunks, its namespace and the content
// engine over both. Open is the one place that assembles it, so every
// command and the mount get the same wiring: the durable marker
// (index.SetDurable), the damaged tables' key ranges (index.SetDamaged),
// the disk-full guard (content.New takes the chunk store's Admit) and the
// page hook for xl save images.
type Store struct {
	Dir    string
	Chunks *chunkstore.Store
	Index  *index.Index
	Data   *content.Store
}

// OpenOptions says how to open a store. Zero fields take the defaults.
type OpenOptions struct {
	// ReadOnly opens the store read-only (a shared lock, no recovery, no
	// writes; see chunkstore.Options.ReadOnly).
	ReadOnly bool
	// AllowLost opens a writable store that lost durable writes (fsck
	// --repair); see chunkstore.Options.AllowLost.
	AllowLost bool
	// Chunks are the chunk store's options; nil takes
	// chunkstore.DefaultOptions. ReadOnly and AllowLost above override
	// theirs.
	Chunks *chunkstore.Options
	// Content sizes the engine; each zero field takes
	// content.DefaultConfig's (content.Config.EnsureDefaults). A nil Pages
	// takes XenPages.
	Content content.Config
	// NoXenPages stores xl save images by content only (debugging).
	NoXenPages bool
	// Wait is how long Open waits for a store another process holds
	// (a daemon just unmounted releases its store within moments); 0
	// fails at once with chunkstore.ErrLocked.
	Wait time.Duration
}

// Open opens (a writable open creates) the store in dir.
func Open(dir string, o OpenOptions) (*Store, error) {
	co := chunkstore.DefaultOptions()
	if o.Chunks != nil {
		co = *o.Chunks
	}
	co.ReadOnly, co.AllowLost = o.ReadOnly, o.AllowLost
	co = co.EnsureDefaults()
	deadline := time.Now().Add(o.Wait)
	var cs *chunkstore.Store
	for {
		var err error
		cs, err = chunkstore.Open(dir, co)
		if err == nil {
			break
		}
		if !errors.Is(err, chunkstore.ErrLocked) || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	var x *index.Index
	var err error
	if o.ReadOnly {
		x, err = index.OpenReadOnly(cs.DB())
	} else {
		x, err = index.Open(cs.DB(), now(), uint32(os.Getuid()), uint32(os.Getgid()), lineage.Keys)
	}
	if err != nil {
		cs.Close()
		return nil, err
	}
	if !o.ReadOnly {
		x.SetDurable(cs.CommitDurable)
	}
	x.SetDamaged(cs.DamagedRanges)
	cfg := o.Content.EnsureDefaults()
	if cfg.Pages == nil {
		cfg.Pages = XenPages(x, !o.NoXenPages)
	}
	if cfg.Runs == nil {
		cfg.Runs = lineage.Of(x)
	}
	return &Store{Dir: dir, Chunks: cs, Index: x, Data: content.New(cs, cs, x, cfg)}, nil
}

// Close closes the engine and the store.
func (s *Store) Close() error {
	s.Data.Close()
	return s.Chunks.Close()
}
