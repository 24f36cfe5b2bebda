package content

import (
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
)

// Publisher turns a checkpointed stream (xl remus, followed by xen.Remus)
// into generations of a guest's lineage: it stores each page as it
// arrives, and publishes each checkpoint as a plain xl save image built
// from metadata only. The image's pages are page runs over the lineage's
// page map, whose entries are a delta (the pfns whose page changed since
// the previous publication), and its other bytes are chunks cut by CDC.
// Not safe for concurrent use.
type Publisher struct {
	s     *Store
	x     *index.Index
	uuid  string
	name  string
	pages map[uint64]index.PageRef // every pfn's latest page
	// dirty is the pfns changed since the last publication. Nothing in the
	// store refers to their pages yet, so each holds one pin on its page
	// until a publication writes its entry.
	dirty  map[uint64]bool
	b      *chunkstore.Batch
	pinned []chunkstore.ID // meta chunks, until their batch is applied
	last   uint64          // the generation published last (0: none)
	added  int64           // chunk bytes added since the last publication

	// Stats of the last Publish.
	NewBytes int64 // chunk bytes its pages and meta added
	Changed  int   // page entries it wrote
}

// NewPublisher returns a publisher for guest uuid (name is recorded with
// each image, for stats).
func (s *Store) NewPublisher(x *index.Index, uuid, name string) *Publisher {
	return &Publisher{s: s, x: x, uuid: uuid, name: name, pages: map[uint64]index.PageRef{}, dirty: map[uint64]bool{}, b: s.db.NewBatch()}
}

// Close drops what was not published: the pages received since the last
// publication become gc candidates (nothing refers to them).
func (p *Publisher) Close() error {
	err := p.release(p.b.Batch, true)
	if err == nil {
		err = p.b.Commit(pebble.NoSync)
	}
	p.b.Close()
	p.s.chunks.Unpin(p.pinned...)
	p.pinned = nil
	return err
}

// release unpins the pages of the dirty pfns and forgets them as dirty;
// with candidates, it also makes them gc candidates in b.
func (p *Publisher) release(b *pebble.Batch, candidates bool) error {
	for pfn := range p.dirty {
		if ref := p.pages[pfn]; !ref.Zero {
			p.s.chunks.Unpin(ref.ID)
			if candidates {
				if err := index.AddCandidate(b, ref.ID); err != nil {
					return err
				}
			}
		}
	}
	clear(p.dirty)
	return nil
}

// Page stores the latest content of pfn (data is not kept).
func (p *Publisher) Page(pfn uint64, data []byte) error {
	if p.s.admit != nil {
		if err := p.s.admit(len(data)); err != nil {
			return err
		}
	}
	ref := index.PageRef{Zero: chunkstore.IsZero(data)}
	if !ref.Zero {
		ref.ID = chunkstore.Sum(data)
	}
	old, ok := p.pages[pfn]
	if ok && old == ref {
		return nil
	}
	if !ref.Zero {
		// Prepare pins the page: the pin is the pfn's while it is dirty.
		v, err := p.s.chunks.Prepare(nil, ref.ID, data)
		if err == nil && v != nil {
			p.added += int64(len(v))
			err = p.s.chunks.SetPrepared(p.b, ref.ID, v)
		}
		if err != nil {
			p.s.chunks.Unpin(ref.ID)
			return err
		}
	}
	if ok && p.dirty[pfn] && !old.Zero {
		// Sent again before any publication (a live precopy round): the
		// earlier page was never referenced, so gc may reclaim it.
		p.s.chunks.Unpin(old.ID)
		if err := index.AddCandidate(p.b.Batch, old.ID); err != nil {
			return err
		}
	}
	p.pages[pfn], p.dirty[pfn] = ref, true
	if p.b.Len() >= p.s.cfg.BatchBytes {
		return p.apply()
	}
	return nil
}

func (p *Publisher) apply() error {
	if p.b.Empty() {
		return nil
	}
	err := p.b.Commit(pebble.NoSync)
	p.b.Close()
	p.b = p.s.db.NewBatch()
	p.s.chunks.Unpin(p.pinned...)
	p.pinned = p.pinned[:0]
	return err
}

// Publish writes img (the plain image of the checkpoint that just ended)
// as file name in directory dir, atomically: it is built under a staging
// name (index.StagingPrefix, which the mount hides) and renamed when
// committed, so readers never see it half-written.
func (p *Publisher) Publish(dir uint64, name string, img *xen.PlainImage, mtime int64) (index.Inode, error) {
	tmp := index.StagingPrefix + name
	in, err := p.x.Create(dir, tmp, index.Inode{Mode: syscall.S_IFREG | 0o444, Atime: mtime, Mtime: mtime, Ctime: mtime})
	if err != nil {
		return in, err
	}
	in, err = p.build(in, img, mtime)
	if err == nil {
		_, err = p.x.Rename(dir, tmp, dir, name, true, mtime)
	}
	if err == nil {
		err = p.x.Sync() // published means durable
	}
	if err != nil {
		// Leave nothing behind: the hidden file goes, and with it the
		// generation (gc reclaims it).
		if _, uerr := p.x.Unlink(dir, tmp, mtime); uerr == nil {
			p.x.Purge(in.Ino)
		}
		return in, fmt.Errorf("publishing %s: %w", name, err)
	}
	return in, nil
}

func (p *Publisher) build(in index.Inode, img *xen.PlainImage, mtime int64) (index.Inode, error) {
	p.Changed = 0
	g, err := p.x.BeginGen(in.Ino, p.uuid)
	if err != nil {
		return in, err
	}
	committed := false
	defer func() { p.x.EndGen(g, committed) }()
	// A delta on the generation this publisher wrote last; anything else
	// (the first, or another writer of the same guest in between) gets
	// every entry.
	put := func(pfn uint64) error {
		ref := p.pages[pfn]
		p.Changed++
		return index.PutPage(p.b, g, pfn, ref.ID, ref.Zero)
	}
	if g.Base == 0 || g.Base != p.last {
		for pfn := range p.pages {
			if err := put(pfn); err != nil {
				return in, err
			}
		}
	} else {
		for pfn := range p.dirty { // the delta: work proportional to it
			if err := put(pfn); err != nil {
				return in, err
			}
		}
	}
	cut := newCutter(p.s.cfg.Params)
	off := int64(0)
	for _, seg := range img.Segments {
		for data := seg.Meta; len(data) > 0; {
			n := cut.cut(data)
			c := data[:n]
			if !chunkstore.IsZero(c) {
				id := chunkstore.Sum(c)
				added, err := p.s.chunks.PutID(p.b, id, c)
				p.pinned = append(p.pinned, id)
				if err != nil {
					return in, err
				}
				p.added += int64(added)
				if err := p.x.AddExtent(p.b.Batch, in.Ino, in.Ver, index.Extent{Off: off, Len: int64(n), ID: id}); err != nil {
					return in, err
				}
			}
			off += int64(n)
			data = data[n:]
		}
		for pfns := seg.PFNs; len(pfns) > 0; {
			k := min(len(pfns), index.MaxRunPages)
			run := &index.PageRun{Lin: g.Lin, Gen: g.Gen, Floor: g.Floor}
			for _, pfn := range pfns[:k] {
				if _, ok := p.pages[pfn]; !ok {
					return in, fmt.Errorf("pfn %#x: no page received", pfn)
				}
				run.Add(pfn)
			}
			e := index.Extent{Off: off, Len: int64(k) * index.PageSize, Run: run}
			if err := p.x.AddExtent(p.b.Batch, in.Ino, in.Ver, e); err != nil {
				return in, err
			}
			off += e.Len
			pfns = pfns[k:]
		}
	}
	if err := p.apply(); err != nil {
		return in, err
	}
	in, err = p.x.CommitUnsynced(in.Ino, in.Ver, off, mtime) // Publish syncs after the rename
	if err != nil {
		return in, err
	}
	committed = true
	if err := p.x.SetXen(in.Ino, index.XenInfo{UUID: p.uuid, Name: p.name, NewBytes: p.added, Pages: int64(p.Changed)}); err != nil {
		return in, err
	}
	p.s.stats.Images.Add(1)
	p.last, p.NewBytes, p.added = g.Gen, p.added, 0
	// The entries are written (in the applied batch): the pages are
	// referenced now and need no pins.
	return in, p.release(nil, false)
}
