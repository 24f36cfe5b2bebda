package receive

import (
	"fmt"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// Chunks is what a publisher needs of the chunk store (chunkstore.Store).
type Chunks interface {
	NewBatch(opts ...pebble.BatchOption) *chunkstore.Batch
	PutID(b *chunkstore.Batch, id chunkstore.ID, data []byte) (int, error)
	Prepare(owner chunkstore.Owner, dst []byte, id chunkstore.ID, data []byte) ([]byte, error)
	SetPrepared(b *chunkstore.Batch, id chunkstore.ID, value []byte) error
	Unpin(ids ...chunkstore.ID)
	TagKey() []byte
	// Admit refuses n more bytes when the disk is too full for them.
	Admit(n int) error
}

// Index is what a publisher needs of the namespace (index.Index): files
// to publish its images as, and their extents.
type Index interface {
	AddExtent(b *pebble.Batch, ino, ver uint64, e index.Extent) error
	Create(dir uint64, name string, in index.Inode) (index.Inode, error)
	Rename(srcDir uint64, srcName string, dstDir uint64, dstName string, replace bool, now int64) (index.Inode, error)
	Unlink(dir uint64, name string, now int64) (index.Inode, error)
	Purge(ino uint64) error
	Sync() error
	CommitUnsynced(ino, ver uint64, size, mtime int64) (index.Inode, error)
}

// Lineages is what a publisher needs of the guests' lineages
// (xen/lineage.Maps): a generation per checkpoint, its page map, and the
// guest record of each image it publishes.
type Lineages interface {
	BeginGen(ino uint64, uuid string) (lineage.Gen, error)
	EndGen(g lineage.Gen, live bool) error
	NewPageReader(lin uint64) *lineage.PageReader
	NewPageWriter(g lineage.Gen) *lineage.PageWriter
	SetXen(ino uint64, info lineage.XenInfo) error
}

// Config sizes a publisher.
type Config struct {
	// Params cut the image's bytes that are not pages (content-defined).
	Params content.Params
	// BatchBytes is how many bytes a publisher collects before it
	// applies its batch.
	BatchBytes int
}

// DefaultConfig is the engine's (content.DefaultConfig).
func DefaultConfig() Config {
	c := content.DefaultConfig()
	return Config{Params: c.Params, BatchBytes: c.BatchBytes}
}

// Publisher turns a checkpointed stream (xl remus, followed by xen.Remus)
// into generations of a guest's lineage: it stores each page as it
// arrives, and publishes each checkpoint as a plain xl save image built
// from metadata only. The image's pages are page runs over the lineage's
// page map, whose entries are a delta (the pfns whose page changed since
// the previous publication), and its other bytes are chunks cut by CDC.
// Not safe for concurrent use.
//
// Memory does not grow with the guest beyond two bits per pfn: the page
// map lives in the store. A checkpoint's generation begins (in flight,
// with no file yet) at its first page, and each page that differs from
// what the previous publication holds for its pfn becomes an entry of it
// at once, in the pending batch; Publish gives the generation its file. A
// pfn sent again within one checkpoint (live precopy rounds) replaces its
// entry, looked up in the batch's own map or in the store.
type Publisher struct {
	c    Chunks
	x    Index
	maps Lineages
	cfg  Config
	uuid string
	name string
	g    lineage.Gen         // the checkpoint's generation (Gen 0: none begun yet)
	pw   *lineage.PageWriter // g's page map
	// sent and put are this checkpoint's pfns: received, and given an
	// entry in g (the others are the previous publication's page).
	sent, put xen.PFNSet
	received  xen.PFNSet               // every pfn received since the publisher started
	unapplied map[uint64]index.PageRef // g's entries in the pending batch
	reader    *lineage.PageReader      // the lineage's entries, as of the last apply
	b         *chunkstore.Batch
	pinned    []chunkstore.ID // chunks the pending batch references
	last      lineage.Gen     // the generation published last (Gen 0: none)
	added     int64           // chunk bytes added since the last publication
	vbuf      []byte          // an encoded page, reused

	// Stats of the last Publish.
	NewBytes int64 // chunk bytes its pages and meta added
	Changed  int   // page entries it wrote
}

// NewPublisher returns a publisher for guest uuid (name is recorded with
// each image, for stats).
func NewPublisher(c Chunks, x Index, maps Lineages, cfg Config, uuid, name string) *Publisher {
	return &Publisher{c: c, x: x, maps: maps, cfg: cfg, uuid: uuid, name: name, unapplied: map[uint64]index.PageRef{}, b: c.NewBatch()}
}

// Close drops what was not published: the unfinished checkpoint's
// generation ends dead, and gc takes its entries and the pages only they
// referenced.
func (p *Publisher) Close() error {
	err := p.apply()
	p.b.Close()
	if p.reader != nil {
		p.reader.Close()
	}
	if p.g.Num != 0 {
		if eerr := p.maps.EndGen(p.g, false); err == nil {
			err = eerr
		}
		p.g = lineage.Gen{}
	}
	return err
}

// lookup returns pfn's page as generation gen (floor) sees it in the store.
func (p *Publisher) lookup(pfn uint64, gen, floor uint64) (index.PageRef, bool, error) {
	if p.reader == nil {
		p.reader = p.maps.NewPageReader(p.g.Lin)
	}
	return p.reader.Lookup(pfn, gen, floor)
}

// Page stores the latest content of pfn (data is not kept).
func (p *Publisher) Page(pfn uint64, data []byte) error {
	if err := p.c.Admit(len(data)); err != nil {
		return err
	}
	if err := p.begin(); err != nil {
		return err
	}
	ref := index.PageRef{Zero: chunkstore.IsZero(data)}
	key := p.c.TagKey()
	if !ref.Zero && key != nil {
		ref.Tag, ref.Tagged = chunkstore.PageTag(key, data), true
	}
	old, found, inG, err := p.previous(pfn)
	if err != nil {
		return err
	}
	p.received.Add(pfn)
	if found && ref.Tagged && old.Tagged && !old.Zero && old.Tag == ref.Tag {
		return nil // as it was (the keyed tag proves it): nothing to store
	}
	if !ref.Zero {
		ref.ID = chunkstore.Sum(data)
	}
	if found && old.Holds(ref.ID, ref.Zero) {
		return nil // as it was: nothing to store
	}
	if !ref.Zero {
		v, err := p.c.Prepare(p.b.Owner, p.vbuf[:0], ref.ID, data) // pins until the batch is applied
		if err == nil && v != nil {
			p.added += int64(len(v))
			err = p.c.SetPrepared(p.b, ref.ID, v) // copies v
			p.vbuf = v
		}
		p.pinned = append(p.pinned, ref.ID)
		if err != nil {
			return err
		}
	}
	// A pfn sent again replaces its entry: the page writer makes the old
	// one's chunk a gc candidate.
	p.pw.Put(p.b, pfn, ref)
	if !inG {
		p.put.Add(pfn)
	}
	p.unapplied[pfn] = ref
	return p.applyIfFull()
}

// begin begins the checkpoint's generation, if it has not begun yet.
func (p *Publisher) begin() error {
	if p.g.Num != 0 {
		return nil
	}
	g, err := p.maps.BeginGen(0, p.uuid)
	p.g, p.pw = g, p.maps.NewPageWriter(g)
	return err
}

// previous returns what pfn's page is before this one: the entry in the
// checkpoint's generation if pfn was sent before in this checkpoint (inG),
// else the last publication's page if the generation is a delta on it.
func (p *Publisher) previous(pfn uint64) (old index.PageRef, found, inG bool, err error) {
	g := p.g
	if !p.sent.Add(pfn) && p.put.Has(pfn) {
		if old, inG = p.unapplied[pfn]; !inG {
			old, inG, err = p.lookup(pfn, g.Num, g.Num)
		}
		return old, inG, inG, err
	}
	if g.Base != 0 && g.Base == p.last.Num {
		old, found, err = p.lookup(pfn, g.Base, g.BaseFloor)
	}
	return old, found, false, err
}

// apply commits the pending batch: its entries now hold their chunks, and
// the reader's next lookup sees them.
func (p *Publisher) apply() error {
	if p.b.Empty() {
		return nil
	}
	err := p.b.Commit(pebble.NoSync)
	p.resetBatch()
	if p.reader != nil {
		p.reader.Close()
	}
	return err
}

// resetBatch drops the pending batch (committed or not) for a new one and
// releases its pins.
func (p *Publisher) resetBatch() {
	p.b.Close()
	p.b = p.c.NewBatch()
	p.c.Unpin(p.pinned...)
	p.pinned = p.pinned[:0]
	clear(p.unapplied)
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
	if err := p.begin(); err != nil { // a checkpoint that sent no page begins here
		return in, err
	}
	g := p.g
	if err := lineage.AdoptGen(p.b.Batch, g, in.Ino); err != nil {
		return in, err
	}
	committed := false
	defer func() {
		if !committed {
			// What the batch holds would name the failed generation
			// again (AdoptGen): drop it; the generation ends dead, and
			// gc takes what it had applied.
			p.resetBatch()
		}
		p.maps.EndGen(g, committed)
		p.g = lineage.Gen{}
		p.sent.Reset()
		p.put.Reset()
	}()
	// A delta on the generation this publisher wrote last; anything else
	// (the first, or another writer of the same guest in between) must
	// name every page itself: the ones not sent in this checkpoint are
	// copied from the last publication.
	// So must a full generation (lineage.FullEvery), though it was compared
	// with the last one.
	full := g.Base == 0 || g.Base != p.last.Num || g.Full()
	p.Changed = 0
	cut := content.NewCutter(p.cfg.Params)
	off := int64(0)
	err := img.Each(func(seg xen.Segment) error {
		for data := seg.Meta; len(data) > 0; {
			n := cut.Cut(data)
			c := data[:n]
			if !chunkstore.IsZero(c) {
				id := chunkstore.Sum(c)
				added, err := p.c.PutID(p.b, id, c)
				p.pinned = append(p.pinned, id)
				if err != nil {
					return err
				}
				p.added += int64(added)
				if err := p.x.AddExtent(p.b.Batch, in.Ino, in.Ver, index.Extent{Off: off, Len: int64(n), ID: id}); err != nil {
					return err
				}
			}
			off += int64(n)
			data = data[n:]
		}
		for pfns := seg.PFNs; len(pfns) > 0; {
			k := min(len(pfns), index.MaxRunPages)
			run := &index.PageRun{Lin: g.Lin, Gen: g.Num, Floor: g.Floor}
			for _, pfn := range pfns[:k] {
				if !p.received.Has(pfn) {
					return fmt.Errorf("pfn %#x: no page received", pfn)
				}
				if full && !p.put.Has(pfn) {
					if err := p.copyLast(pfn); err != nil {
						return err
					}
				}
				run.Add(pfn)
			}
			e := index.Extent{Off: off, Len: int64(k) * index.PageSize, Run: run}
			if err := p.x.AddExtent(p.b.Batch, in.Ino, in.Ver, e); err != nil {
				return err
			}
			off += e.Len
			pfns = pfns[k:]
		}
		return p.applyIfFull()
	})
	if err != nil {
		return in, err
	}
	p.Changed = int(p.put.Len())
	if err := p.apply(); err != nil {
		return in, err
	}
	in, err = p.x.CommitUnsynced(in.Ino, in.Ver, off, mtime) // Publish syncs after the rename
	if err != nil {
		return in, err
	}
	committed = true
	if err := p.maps.SetXen(in.Ino, lineage.XenInfo{UUID: p.uuid, Name: p.name, NewBytes: p.added, Pages: int64(p.Changed)}); err != nil {
		return in, err
	}
	p.last, p.NewBytes, p.added = g, p.added, 0
	return in, nil
}

// copyLast gives the checkpoint's generation pfn's page as the last
// publication has it (a full generation: not a delta on that one).
func (p *Publisher) copyLast(pfn uint64) error {
	ref, ok, err := p.lookup(pfn, p.last.Num, p.last.Floor)
	if err != nil {
		return err
	}
	if !ok || p.last.Num == 0 {
		return fmt.Errorf("pfn %#x: no page received", pfn)
	}
	p.put.Add(pfn)
	p.pw.Put(p.b, pfn, ref)
	return p.applyIfFull()
}

// applyIfFull applies the pending batch once it holds BatchBytes.
func (p *Publisher) applyIfFull() error {
	if p.b.Len() >= p.cfg.BatchBytes {
		return p.apply()
	}
	return nil
}
