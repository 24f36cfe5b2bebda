package lineage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/index"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// Page map blocks (format 4). A generation's page entries are kept in
// blocks of BlockPages pfns: one key per (lineage, block, generation) that
// has entries there, not one per page (see the package documentation).
const (
	BlockShift = 10
	BlockPages = 1 << BlockShift
	blockMask  = BlockPages - 1
	// FullEvery is the length of a delta chain at which the next
	// generation is written full (an entry for every page of its image),
	// so a lookup reads at most this many blocks of a pfn's block.
	FullEvery = 16
)

// Entry flags in a block: an entry with none is an all-zero page.
const (
	entryChunk = 1 << 0 // id (32) follows
	entryHint  = 1 << 1 // then uvarint(len) | chunkstore Hint
	entryTag   = 1 << 2 // then the page's tag (16)
	entryFlags = entryChunk | entryHint | entryTag
)

// Key lengths: prefix byte and three 8-byte integers.
const blockKeyLen = 1 + 8 + 8 + 8

// key2 is prefix | a | b, with room for a third integer.
func key2(prefix byte, a, b uint64) []byte {
	k := make([]byte, 0, blockKeyLen)
	k = append(k, prefix)
	k = binary.BigEndian.AppendUint64(k, a)
	return binary.BigEndian.AppendUint64(k, b)
}

func blockPrefix(lin, blk uint64) []byte { return key2(prefixBlock, lin, blk) }

// blockKey orders a block's generations newest first.
func blockKey(lin, blk, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(blockPrefix(lin, blk), ^gen)
}

func blockByGenPrefix(lin, gen uint64) []byte { return key2(prefixBlockByGen, lin, gen) }

func blockByGenKey(lin, gen, blk uint64) []byte {
	return binary.BigEndian.AppendUint64(blockByGenPrefix(lin, gen), blk)
}

// blockEntry is one page entry of a block.
type blockEntry struct {
	pfn uint64
	ref index.PageRef
}

// appendBlock encodes es (pfns ascending, all in one block) after dst:
//
//	uvarint(n) | n x (uvarint(pfn - previous pfn, the first from the
//	block's first pfn) | flags | [id (32)] [| uvarint(len) | hint]
//	[| tag (16)])
func appendBlock(dst []byte, blk uint64, es []blockEntry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(es)))
	prev := blk << BlockShift
	for _, e := range es {
		dst = binary.AppendUvarint(dst, e.pfn-prev)
		prev = e.pfn
		if e.ref.Zero {
			dst = append(dst, 0)
			continue
		}
		flags := byte(entryChunk)
		if !e.ref.Hint.IsZero() {
			flags |= entryHint
		}
		if e.ref.Tagged {
			flags |= entryTag
		}
		dst = append(dst, flags)
		dst = append(dst, e.ref.ID[:]...)
		if flags&entryHint != 0 {
			h := chunkstore.AppendHint(nil, e.ref.Hint)
			dst = binary.AppendUvarint(dst, uint64(len(h)))
			dst = append(dst, h...)
		}
		if flags&entryTag != 0 {
			dst = append(dst, e.ref.Tag[:]...)
		}
	}
	return dst
}

// decodeBlock decodes block value v of key k, appending its entries to es.
func decodeBlock(k, v []byte, es []blockEntry) ([]blockEntry, error) {
	bad := func(what string) ([]blockEntry, error) {
		return es, fmt.Errorf("%w: page block %x: %s", index.ErrCorrupt, k, what)
	}
	if len(k) != blockKeyLen || k[0] != prefixBlock {
		return bad("key")
	}
	blk := field(k, 1)
	if blk > (1<<64-1)>>BlockShift {
		return bad("block number")
	}
	n, w := binary.Uvarint(v)
	if w <= 0 || n > BlockPages {
		return bad("entry count")
	}
	v = v[w:]
	first, end := blk<<BlockShift, (blk<<BlockShift)+BlockPages-1 // end: the last pfn
	prev := first
	for i := uint64(0); i < n; i++ {
		d, w := binary.Uvarint(v)
		if w <= 0 || (i > 0 && d == 0) || d > end-prev || len(v) < w+1 {
			return bad("pfn")
		}
		prev += d
		e := blockEntry{pfn: prev}
		flags := v[w]
		v = v[w+1:]
		switch {
		case flags == 0:
			e.ref.Zero = true
		case flags&^entryFlags != 0 || flags&entryChunk == 0:
			return bad("entry flags")
		default:
			if len(v) < chunkstore.IDSize {
				return bad("id")
			}
			e.ref.ID = chunkstore.ID(v[:chunkstore.IDSize])
			v = v[chunkstore.IDSize:]
			if flags&entryHint != 0 {
				hl, w := binary.Uvarint(v)
				if w <= 0 || hl == 0 || hl > uint64(len(v)-w) {
					return bad("hint")
				}
				h, err := chunkstore.ParseHint(v[w : w+int(hl)])
				if err != nil || h.IsZero() || len(chunkstore.AppendHint(nil, h)) != int(hl) {
					return bad("hint")
				}
				e.ref.Hint = h
				v = v[w+int(hl):]
			}
			if flags&entryTag != 0 {
				if len(v) < len(e.ref.Tag) {
					return bad("tag")
				}
				e.ref.Tag, e.ref.Tagged = chunkstore.Tag(v[:len(e.ref.Tag)]), true
				v = v[len(e.ref.Tag):]
			}
		}
		es = append(es, e)
	}
	if len(v) != 0 {
		return bad("trailing bytes")
	}
	return es, nil
}

// getBlock returns generation gen's block blk of lineage lin (found false
// if it has none), its entries appended to es.
func (m *Maps) getBlock(lin, blk, gen uint64, es []blockEntry) ([]blockEntry, bool, error) {
	k := blockKey(lin, blk, gen)
	v, c, err := m.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return es, false, nil
	}
	if err != nil {
		return es, false, err
	}
	defer c.Close()
	es, err = decodeBlock(k, v, es)
	return es, err == nil, err
}

// mergeEntries returns the entries of old and new (each ascending, new
// winning for a pfn in both), and calls replaced for each old entry that
// a new one replaced.
func mergeEntries(old, new []blockEntry, replaced func(old, new blockEntry) error) ([]blockEntry, error) {
	out := make([]blockEntry, 0, len(old)+len(new))
	i, j := 0, 0
	for i < len(old) || j < len(new) {
		switch {
		case j == len(new) || (i < len(old) && old[i].pfn < new[j].pfn):
			out = append(out, old[i])
			i++
		case i == len(old) || new[j].pfn < old[i].pfn:
			out = append(out, new[j])
			j++
		default:
			if err := replaced(old[i], new[j]); err != nil {
				return nil, err
			}
			out = append(out, new[j])
			i, j = i+1, j+1
		}
	}
	return out, nil
}

// PageWriter adds a generation's page entries to the batches its writer
// commits, as blocks: the entries put into a batch are encoded (with their
// chunks' hints) when the batch commits, merged into the generation's
// block if an earlier batch wrote one. A pfn put again replaces its entry,
// and the entry's chunk becomes a gc candidate. One writer per
// generation; not safe for concurrent use.
type PageWriter struct {
	m       *Maps
	g       Gen
	b       *chunkstore.Batch // the batch pending goes with
	pending *[]blockEntry

	mu      sync.Mutex      // flushes run in the goroutine that commits
	written map[uint64]bool // blocks committed before
	buf     []byte
	old     []blockEntry
}

// NewPageWriter returns the page map writer of in-flight generation g.
func (m *Maps) NewPageWriter(g Gen) *PageWriter {
	return &PageWriter{m: m, g: g, written: map[uint64]bool{}}
}

// Put records, in b, that the generation's page pfn is ref (its Hint, if
// zero, is filled in at commit when the store knows where the chunk is).
// A batch may commit in another goroutine while Put fills the next one;
// the batches of one generation commit one after the other.
func (w *PageWriter) Put(b *chunkstore.Batch, pfn uint64, ref index.PageRef) {
	if b != w.b {
		pending := new([]blockEntry)
		w.b, w.pending = b, pending
		b.OnCommit(func(pb *pebble.Batch, hint func(chunkstore.ID) chunkstore.Hint) error {
			return w.flush(pb, hint, *pending)
		})
	}
	*w.pending = append(*w.pending, blockEntry{pfn: pfn, ref: ref})
}

func (w *PageWriter) flush(pb *pebble.Batch, hint func(chunkstore.ID) chunkstore.Hint, es []blockEntry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	sort.SliceStable(es, func(i, j int) bool { return es[i].pfn < es[j].pfn })
	lin, gen := w.g.Lin, w.g.Num
	candidate := func(old, new blockEntry) error {
		if old.ref.Zero || (!new.ref.Zero && new.ref.ID == old.ref.ID) {
			return nil
		}
		return index.AddCandidate(pb, old.ref.ID)
	}
	for i := 0; i < len(es); {
		blk := es[i].pfn >> BlockShift
		// The block's entries, the last put of a pfn winning.
		run := es[i:i]
		j := i
		for ; j < len(es) && es[j].pfn>>BlockShift == blk; j++ {
			e := es[j]
			if !e.ref.Zero && e.ref.Hint.IsZero() {
				e.ref.Hint = hint(e.ref.ID)
			}
			if n := len(run); n > 0 && run[n-1].pfn == e.pfn {
				if err := candidate(run[n-1], e); err != nil {
					return err
				}
				run[n-1] = e
				continue
			}
			run = append(run, e)
		}
		i = j
		if w.written[blk] {
			old, found, err := w.m.getBlock(lin, blk, gen, w.old[:0])
			if err != nil {
				return err
			}
			w.old = old
			if found {
				if run, err = mergeEntries(old, run, candidate); err != nil {
					return err
				}
			}
		} else if err := pb.Set(blockByGenKey(lin, gen, blk), nil, nil); err != nil {
			return err
		}
		w.buf = appendBlock(w.buf[:0], blk, run)
		if err := pb.Set(blockKey(lin, blk, gen), w.buf, nil); err != nil { // Set copies
			return err
		}
		w.written[blk] = true
	}
	return nil
}

// PageReader looks up page entries of one lineage. Not safe for concurrent
// use. It merges, for the block of the pfn asked for, the blocks of the
// generations a lookup sees (newest first, down to the floor) into a table
// of the block's pages, and answers lookups in that block from it; Close
// (or a lookup in another block) lets it read the store again.
type PageReader struct {
	m     *Maps
	lin   uint64
	it    *pebble.Iterator
	loads int
	// legacy answers for a format 2 or 3 store (read-only).
	legacy *legacyPageReader

	ok              bool
	blk, gen, floor uint64
	has             [BlockPages / 64]uint64
	refs            [BlockPages]index.PageRef
	es              []blockEntry
}

// pageReaderRenew is how many blocks a reader merges from one snapshot.
const pageReaderRenew = 256

// NewPageReader returns a reader of lineage lin's page entries.
func (m *Maps) NewPageReader(lin uint64) *PageReader {
	r := &PageReader{m: m, lin: lin}
	if m.legacy {
		r.legacy = newLegacyPageReader(m, lin)
	}
	return r
}

// Close releases the reader's snapshot; the next Lookup takes a new one
// (and sees everything committed before it).
func (r *PageReader) Close() {
	if r.legacy != nil {
		r.legacy.Close()
	}
	if r.it != nil {
		r.it.Close()
		r.it = nil
	}
	r.ok = false
}

// Lookup returns pfn's page as generation gen (with floor) sees it; found
// is false if no entry is visible.
func (r *PageReader) Lookup(pfn, gen, floor uint64) (ref index.PageRef, found bool, err error) {
	if r.legacy != nil {
		return r.legacy.Lookup(pfn, gen, floor)
	}
	blk := pfn >> BlockShift
	if !r.ok || blk != r.blk || gen != r.gen || floor != r.floor {
		if err := r.load(blk, gen, floor); err != nil {
			return ref, false, err
		}
	}
	i := pfn & blockMask
	if r.has[i/64]&(1<<(i%64)) == 0 {
		return ref, false, nil
	}
	return r.refs[i], true, nil
}

// load merges block blk as generation gen (floor) sees it.
func (r *PageReader) load(blk, gen, floor uint64) error {
	r.ok = false
	if r.it == nil || r.loads >= pageReaderRenew {
		if r.it != nil {
			r.it.Close()
		}
		lo := binary.BigEndian.AppendUint64([]byte{prefixBlock}, r.lin)
		it, err := r.m.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: index.PrefixEnd(lo)})
		if err != nil {
			r.it = nil
			return err
		}
		r.it, r.loads = it, 0
	}
	r.loads++
	clear(r.has[:])
	p := blockPrefix(r.lin, blk)
	it := r.it
	for ok := it.SeekGE(blockKey(r.lin, blk, gen)); ok && bytes.HasPrefix(it.Key(), p); ok = it.Next() {
		if ^field(it.Key(), 2) < floor {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if r.es, err = decodeBlock(it.Key(), v, r.es[:0]); err != nil {
			return err
		}
		for _, e := range r.es {
			i := e.pfn & blockMask
			if r.has[i/64]&(1<<(i%64)) == 0 {
				r.has[i/64] |= 1 << (i % 64)
				r.refs[i] = e.ref
			}
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	r.ok, r.blk, r.gen, r.floor = true, blk, gen, floor
	return nil
}

// genBlocks returns the blocks generation gen of lin has entries in.
func (m *Maps) genBlocks(lin, gen uint64) ([]uint64, error) {
	var blks []uint64
	err := m.x.Scan(blockByGenPrefix(lin, gen), func(k, _ []byte) error {
		if len(k) != blockKeyLen {
			return fmt.Errorf("%w: block key %x", index.ErrCorrupt, k)
		}
		blks = append(blks, field(k, 2))
		return nil
	})
	return blks, err
}

// shadowed returns the pfns of block blk that a generation in (gen, upto]
// of lin has an entry for.
func shadowed(it *pebble.Iterator, lin, blk, gen, upto uint64, es []blockEntry) (*[BlockPages / 64]uint64, []blockEntry, error) {
	var set [BlockPages / 64]uint64
	p := blockPrefix(lin, blk)
	for ok := it.SeekGE(blockKey(lin, blk, upto)); ok && bytes.HasPrefix(it.Key(), p); ok = it.Next() {
		if ^field(it.Key(), 2) <= gen {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, es, err
		}
		if es, err = decodeBlock(it.Key(), v, es[:0]); err != nil {
			return nil, es, err
		}
		for _, e := range es {
			i := e.pfn & blockMask
			set[i/64] |= 1 << (i % 64)
		}
	}
	return &set, es, it.Error()
}

// reclaimPlan splits dead generation gen's entries in block blk into those
// that heir (0: none) still sees, which move to it, and those that go.
func (m *Maps) reclaimPlan(it *pebble.Iterator, lin, blk, gen, heir uint64, es []blockEntry, move, drop func(blockEntry) error) error {
	var set *[BlockPages / 64]uint64
	if heir != 0 {
		var err error
		if set, _, err = shadowed(it, lin, blk, gen, heir, nil); err != nil {
			return err
		}
	}
	for _, e := range es {
		i := e.pfn & blockMask
		var err error
		if set != nil && set[i/64]&(1<<(i%64)) == 0 {
			err = move(e)
		} else {
			err = drop(e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *Maps) lineageBlocks(lin uint64) (*pebble.Iterator, error) {
	lo := binary.BigEndian.AppendUint64([]byte{prefixBlock}, lin)
	return m.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: index.PrefixEnd(lo)})
}

// reclaimDecision is the one decision both the reclaim of a dead
// generation and a gc dry run take: for each block of generation rec
// (dead, with the generations in dead dead too), which of its page
// entries the heir (the next live generation of the same delta chain, 0
// for none) still sees and so moves to it, and which go. visit gets each
// block the generation lists (es nil where it holds no block), with the
// heir. It reports blocked (and visits nothing) when the heir is still
// being written.
func (m *Maps) reclaimDecision(rec GenRecord, dead map[uint64]bool, visit func(blk, heir uint64, es, move, drop []blockEntry) error) (blocked bool, err error) {
	heir, err := m.heir(rec, dead)
	if errors.Is(err, errBlocked) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	lin, gen := rec.Lin, rec.Num
	blks, err := m.genBlocks(lin, gen)
	if err != nil {
		return false, err
	}
	it, err := m.lineageBlocks(lin)
	if err != nil {
		return false, err
	}
	defer it.Close()
	var es, move, drop []blockEntry
	for _, blk := range blks {
		var found bool
		if es, found, err = m.getBlock(lin, blk, gen, es[:0]); err != nil {
			return false, err
		}
		move, drop = move[:0], drop[:0]
		if found {
			err = m.reclaimPlan(it, lin, blk, gen, heir, es,
				func(e blockEntry) error { move = append(move, e); return nil },
				func(e blockEntry) error { drop = append(drop, e); return nil })
			if err != nil {
				return false, err
			}
		}
		held := es // nil: the generation has no block here (only its by-generation key)
		if !found {
			held = nil
		} else if held == nil {
			held = []blockEntry{}
		}
		if err := visit(blk, heir, held, move, drop); err != nil {
			return false, err
		}
	}
	return false, nil
}

// ReclaimGen processes dead generation gen of lineage lin as
// reclaimDecision decides: each of its page entries that a later live
// generation of the same delta chain still sees moves to that
// generation's block; the others are deleted and their chunks become gc
// candidates. Then the record goes. Each block moves in one batch, so it
// is crash-safe and can be redone; it returns false without doing
// anything if the next generation that is not dead is still being
// written. The caller serializes ReclaimGen calls.
func (m *Maps) ReclaimGen(lin, gen uint64) (done bool, entries int, err error) {
	if m.legacy {
		return false, 0, errLegacy
	}
	rec, err := m.getGen(lin, gen)
	if errors.Is(err, index.ErrNotFound) {
		return true, 0, nil
	}
	if err != nil || rec.State != GenDead {
		return false, 0, err
	}
	b := m.db.NewBatch()
	defer func() { b.Close() }()
	var hs []blockEntry
	var buf []byte
	blocked, err := m.reclaimDecision(rec, nil, func(blk, heir uint64, es, move, drop []blockEntry) error {
		for _, e := range drop {
			if !e.ref.Zero {
				if err := index.AddCandidate(b, e.ref.ID); err != nil {
					return err
				}
			}
		}
		if len(move) > 0 {
			var hfound bool
			var err error
			if hs, hfound, err = m.getBlock(lin, blk, heir, hs[:0]); err != nil {
				return err
			}
			if !hfound {
				b.Set(blockByGenKey(lin, heir, blk), nil, nil)
			}
			// heir has no entry for a moving pfn: nothing is replaced.
			merged, err := mergeEntries(move, hs, func(_, _ blockEntry) error { return nil })
			if err != nil {
				return err
			}
			buf = appendBlock(buf[:0], blk, merged)
			b.Set(blockKey(lin, blk, heir), buf, nil)
		}
		if es != nil {
			b.Delete(blockKey(lin, blk, gen), nil)
			entries += len(es)
		}
		b.Delete(blockByGenKey(lin, gen, blk), nil)
		return m.x.ApplyIfFull(&b)
	})
	if blocked || err != nil {
		return false, entries, err
	}
	b.Delete(genKey(lin, gen), nil)
	return true, entries, m.x.Apply(b)
}

// errLegacy is what gc gets from a store whose page maps are still in
// format 3 (open read-only: a writable open upgrades them first).
var errLegacy = errors.New("page maps of an older format: open the store writable to upgrade it first")

// PageRefKey names one page entry's reference to its chunk (for Freed's
// bookkeeping): lineage, generation, pfn.
func PageRefKey(lin, gen, pfn uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{'p'}, lin)
	k = binary.BigEndian.AppendUint64(k, gen)
	return binary.BigEndian.AppendUint64(k, pfn)
}

// DropPlan calls fn for each chunk reference of generation gen's page
// entries that reclaiming it would drop, were the generations in dead (of
// the same lineage) and gen itself dead: what a gc dry run needs, by the
// very decision ReclaimGen takes (reclaimDecision). A generation whose
// successor is being written drops nothing yet. The reference is named by
// PageRefKey.
func (m *Maps) DropPlan(lin, gen uint64, dead map[uint64]bool, fn func(id chunkstore.ID, ref []byte) error) error {
	if m.legacy {
		return errLegacy
	}
	rec, err := m.getGen(lin, gen)
	if errors.Is(err, index.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = m.reclaimDecision(rec, dead, func(_, _ uint64, _, _, drop []blockEntry) error {
		for _, e := range drop {
			if !e.ref.Zero {
				if err := fn(e.ref.ID, PageRefKey(lin, gen, e.pfn)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return err
}

// GenEntries returns how many page entries generation gen of lin holds.
func (m *Maps) GenEntries(lin, gen uint64) (int, error) {
	if m.legacy {
		return m.legacyGenEntries(lin, gen)
	}
	blks, err := m.genBlocks(lin, gen)
	if err != nil {
		return 0, err
	}
	n := 0
	var es []blockEntry
	for _, blk := range blks {
		if es, _, err = m.getBlock(lin, blk, gen, es[:0]); err != nil {
			return n, err
		}
		n += len(es)
	}
	return n, nil
}

// WalkPageRefs calls fn for every page entry that names a chunk, in key
// order: one pass over every page map block of the store.
func (m *Maps) WalkPageRefs(fn func(id chunkstore.ID, lin, gen, pfn uint64) error) error {
	if m.legacy {
		return errLegacy
	}
	var es []blockEntry
	return m.x.Scan([]byte{prefixBlock}, func(k, v []byte) error {
		var err error
		if es, err = decodeBlock(k, v, es[:0]); err != nil {
			return err
		}
		lin, gen := field(k, 0), ^field(k, 2)
		for _, e := range es {
			if !e.ref.Zero {
				if err := fn(e.ref.ID, lin, gen, e.pfn); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// PageReferenced returns which of ids a page entry names: one pass over
// the page map blocks (the mark of gc's mark and sweep; see
// chunkstore.Store.BeginMark for how it stays right while writers go on).
func (m *Maps) PageReferenced(ids []chunkstore.ID) (map[chunkstore.ID]bool, error) {
	want := make(map[chunkstore.ID]bool, len(ids))
	for _, id := range ids {
		want[id] = false
	}
	found := 0
	errDone := errors.New("all found")
	err := m.WalkPageRefs(func(id chunkstore.ID, _, _, _ uint64) error {
		if seen, ok := want[id]; ok && !seen {
			want[id] = true
			if found++; found == len(want) {
				return errDone
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errDone) {
		return nil, err
	}
	return want, nil
}

// readerPool recycles ResolveRun's readers: a reader's table and decode
// buffer are about 180 KiB, and a restore resolves a run per 4 MiB span
// (allocating and zeroing them each time was a third of a long lineage's
// read CPU).
var readerPool = sync.Pool{New: func() any { return &PageReader{es: make([]blockEntry, 0, BlockPages)} }}

// ResolveRun returns the pages [from, to) of run.
func (m *Maps) ResolveRun(run *index.PageRun, from, to int64) ([]index.PageRef, error) {
	var r *PageReader
	if m.legacy {
		r = m.NewPageReader(run.Lin)
	} else {
		r = readerPool.Get().(*PageReader)
		r.m, r.lin = m, run.Lin
		defer func() { r.m = nil; readerPool.Put(r) }()
	}
	defer r.Close()
	pfns := run.Pfns(nil, from, to)
	out := make([]index.PageRef, len(pfns))
	for i, pfn := range pfns {
		ref, ok, err := r.Lookup(pfn, run.Gen, run.Floor)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: no page entry for pfn %#x of generation %d (lineage %d)", index.ErrCorrupt, pfn, run.Gen, run.Lin)
		}
		out[i] = ref
	}
	return out, nil
}
