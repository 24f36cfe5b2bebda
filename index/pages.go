package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// Gen is one generation (one xl save image) of a guest lineage. Its page
// entries are a delta against generation Base (0: a full generation); a
// lookup at Gen sees the newest entry of a pfn with Floor <= gen' <= Gen.
type Gen struct {
	Lin, Gen, Floor, Base uint64
}

// Generation states (first byte of a generation record).
const (
	GenInFlight = 1 // its writer is still open
	GenLive     = 2 // complete; a file references it; a new generation may be a delta on it
	GenDead     = 3 // no file references it: gc relabels or drops its entries
)

// GenRecord is what the store keeps of a generation.
type GenRecord struct {
	Lin, Gen, Floor, Ino uint64
	State                byte
}

func lineageKey(uuid string) []byte { return append([]byte{prefixLineage}, uuid...) }

func genPrefix(lin uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixGen}, lin)
}

func genKey(lin, gen uint64) []byte { return binary.BigEndian.AppendUint64(genPrefix(lin), gen) }

func pfnPrefix(lin, pfn uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixPage}, lin)
	return binary.BigEndian.AppendUint64(k, pfn)
}

// pageKey orders a pfn's entries newest first.
func pageKey(lin, pfn, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(pfnPrefix(lin, pfn), ^gen)
}

func pageByGenPrefix(lin, gen uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixPageByGen}, lin)
	return binary.BigEndian.AppendUint64(k, gen)
}

func inoGenPrefix(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixInoGen}, ino)
}

func inoGenKey(ino, lin, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(inoGenPrefix(ino), lin), gen)
}

func encodeGenRecord(r GenRecord) []byte {
	b := []byte{r.State}
	b = binary.AppendUvarint(b, r.Floor)
	return binary.AppendUvarint(b, r.Ino)
}

func decodeGenRecord(k, v []byte) (GenRecord, error) {
	if len(k) != 17 || len(v) < 3 || v[0] < GenInFlight || v[0] > GenDead {
		return GenRecord{}, fmt.Errorf("%w: generation record %x", ErrCorrupt, k)
	}
	r := GenRecord{Lin: binary.BigEndian.Uint64(k[1:]), Gen: binary.BigEndian.Uint64(k[9:]), State: v[0]}
	f, n := binary.Uvarint(v[1:])
	ino, n2 := binary.Uvarint(v[1+max(n, 0):])
	if n <= 0 || n2 <= 0 || 1+n+n2 != len(v) || f > r.Gen {
		return GenRecord{}, fmt.Errorf("%w: generation record %x", ErrCorrupt, k)
	}
	r.Floor, r.Ino = f, ino
	return r, nil
}

func (x *Index) getGen(lin, gen uint64) (GenRecord, error) {
	k := genKey(lin, gen)
	v, c, err := x.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return GenRecord{}, ErrNotFound
	}
	if err != nil {
		return GenRecord{}, err
	}
	defer c.Close()
	return decodeGenRecord(k, v)
}

// BeginGen starts a generation of the lineage of guest uuid for the image
// being written into ino. It is a delta on the lineage's newest generation
// if that one is live; otherwise (first image, a concurrent writer of the
// same guest, the newest deleted) it is full.
func (x *Index) BeginGen(ino uint64, uuid string) (Gen, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := x.db.NewBatch()
	defer b.Close()
	var g Gen
	v, c, err := x.db.Get(lineageKey(uuid))
	switch {
	case err == nil:
		if len(v) != 8 {
			c.Close()
			return g, fmt.Errorf("%w: lineage %q", ErrCorrupt, uuid)
		}
		g.Lin = binary.BigEndian.Uint64(v)
		c.Close()
	case errors.Is(err, pebble.ErrNotFound):
		g.Lin = x.allocLocked(b)
		b.Set(lineageKey(uuid), binary.BigEndian.AppendUint64(nil, g.Lin), nil)
	default:
		return g, err
	}
	g.Gen = x.allocLocked(b)
	g.Floor = g.Gen
	last, err := x.lastGen(g.Lin)
	if err != nil {
		return g, err
	}
	if last.State == GenLive {
		g.Base, g.Floor = last.Gen, last.Floor
	}
	if ino == 0 {
		b.Set(genKey(g.Lin, g.Gen), encodeGenRecord(GenRecord{State: GenInFlight, Floor: g.Floor}), nil)
	} else if err := AdoptGen(b, g, ino); err != nil {
		return g, err
	}
	return g, x.commit(b)
}

// AdoptGen makes ino the image of in-flight generation g begun with no
// file (BeginGen with ino 0: a receiver's checkpoint, whose file is made
// when it is published), in b: deleting ino then ends the generation, and
// a crash keeps it live with the file.
func AdoptGen(b *pebble.Batch, g Gen, ino uint64) error {
	if err := b.Set(genKey(g.Lin, g.Gen), encodeGenRecord(GenRecord{State: GenInFlight, Floor: g.Floor, Ino: ino}), nil); err != nil {
		return err
	}
	return b.Set(inoGenKey(ino, g.Lin, g.Gen), nil, nil)
}

// lastGen returns the lineage's newest generation record (State 0 if none).
func (x *Index) lastGen(lin uint64) (GenRecord, error) {
	p := genPrefix(lin)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return GenRecord{}, err
	}
	defer it.Close()
	if !it.Last() {
		return GenRecord{}, it.Error()
	}
	return decodeGenRecord(it.Key(), it.Value())
}

// EndGen ends an in-flight generation when its writer closes: live if the
// writer committed content that may name its pages, dead otherwise.
func (x *Index) EndGen(g Gen, live bool) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	r, err := x.getGen(g.Lin, g.Gen)
	if err != nil || r.State != GenInFlight {
		return err
	}
	r.State = GenDead
	if live {
		r.State = GenLive
	}
	x.pending.Store(true)
	return x.db.Set(genKey(g.Lin, g.Gen), encodeGenRecord(r), noSync)
}

// dropInoGen marks the generations held by ino dead, in b.
func (x *Index) dropInoGen(b *pebble.Batch, ino uint64) error {
	return x.ImageGens(ino, func(lin, gen uint64) error {
		r, err := x.getGen(lin, gen)
		if err == nil {
			r.State = GenDead
			b.Set(genKey(lin, gen), encodeGenRecord(r), nil)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return b.Delete(inoGenKey(ino, lin, gen), nil)
	})
}

// abortGens ends every in-flight generation (at Open: no writer survived).
// One whose file still exists may be named by its committed content, so it
// becomes live and goes with the file; the others are dead.
func (x *Index) abortGens(b *pebble.Batch) error {
	return x.scan([]byte{prefixGen}, func(k, v []byte) error {
		r, err := decodeGenRecord(k, v)
		if err != nil || r.State != GenInFlight {
			return err
		}
		r.State = GenDead
		if _, err := x.Get(r.Ino); err == nil {
			r.State = GenLive
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return b.Set(k, encodeGenRecord(r), nil)
	})
}

// WalkGens calls fn for every generation record, by lineage then number.
func (x *Index) WalkGens(fn func(GenRecord) error) error {
	return x.scan([]byte{prefixGen}, func(k, v []byte) error {
		r, err := decodeGenRecord(k, v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// PutPage records, in b, that generation g's page pfn is chunk id (or all
// zero). The entry gets the chunk's hint (where its record is) when b
// commits.
func PutPage(b *chunkstore.Batch, g Gen, pfn uint64, id chunkstore.ID, zero bool) error {
	if zero {
		// Hinted like the others (no hint: the zero ID), so that a later
		// PutPage of the same key in b wins (ReplacePage).
		b.SetHinted(pageKey(g.Lin, pfn, g.Gen), nil, chunkstore.ID{})
	} else {
		if err := b.Set(refKey(id, holderPage, g.Lin, pfn, g.Gen), nil, nil); err != nil {
			return err
		}
		b.SetHinted(pageKey(g.Lin, pfn, g.Gen), id[:], id)
	}
	return b.Set(binary.BigEndian.AppendUint64(pageByGenPrefix(g.Lin, g.Gen), pfn), nil, nil)
}

// ReplacePage records, in b, that generation g's page pfn, whose entry in
// g was old, is now chunk id (or all zero): old's chunk reference goes and
// old's chunk becomes a gc candidate.
func ReplacePage(b *chunkstore.Batch, g Gen, pfn uint64, old PageRef, id chunkstore.ID, zero bool) error {
	if !old.Zero {
		if err := b.Delete(refKey(old.ID, holderPage, g.Lin, pfn, g.Gen), nil); err != nil {
			return err
		}
		if err := AddCandidate(b.Batch, old.ID); err != nil {
			return err
		}
	}
	return PutPage(b, g, pfn, id, zero)
}

func putPage(b *pebble.Batch, lin, gen, pfn uint64, ref PageRef) error {
	var v []byte
	if !ref.Zero {
		if err := b.Set(refKey(ref.ID, holderPage, lin, pfn, gen), nil, nil); err != nil {
			return err
		}
		v = chunkstore.AppendHint(ref.ID[:], ref.Hint)
	}
	if err := b.Set(pageKey(lin, pfn, gen), v, nil); err != nil {
		return err
	}
	return b.Set(binary.BigEndian.AppendUint64(pageByGenPrefix(lin, gen), pfn), nil, nil)
}

// decodePage decodes a page entry's value: empty for a zero page, else the
// chunk's id and, optionally, its hint.
func decodePage(k, v []byte) (PageRef, error) {
	var ref PageRef
	if len(v) == 0 {
		ref.Zero = true
		return ref, nil
	}
	if len(v) < chunkstore.IDSize {
		return ref, fmt.Errorf("%w: page entry %x", ErrCorrupt, k)
	}
	ref.ID = chunkstore.ID(v[:chunkstore.IDSize])
	h, err := chunkstore.ParseHint(v[chunkstore.IDSize:])
	if err != nil {
		return ref, fmt.Errorf("%w: page entry %x: %v", ErrCorrupt, k, err)
	}
	ref.Hint = h
	return ref, nil
}

func delPage(b *pebble.Batch, lin, gen, pfn uint64, id chunkstore.ID, zero bool) error {
	if !zero {
		if err := b.Delete(refKey(id, holderPage, lin, pfn, gen), nil); err != nil {
			return err
		}
	}
	if err := b.Delete(pageKey(lin, pfn, gen), nil); err != nil {
		return err
	}
	return b.Delete(binary.BigEndian.AppendUint64(pageByGenPrefix(lin, gen), pfn), nil)
}

// PageRef is a page's content: a chunk (and where it was), or all zero.
type PageRef struct {
	ID   chunkstore.ID
	Zero bool
	Hint chunkstore.Hint
}

// PageReader looks up page entries of one lineage. Not safe for concurrent
// use; it reads a snapshot, renewed every so many lookups.
type PageReader struct {
	x     *Index
	lin   uint64
	it    *pebble.Iterator
	uses  int
	lower []byte
	upper []byte
}

const pageReaderRenew = 1 << 14

// NewPageReader returns a reader of lineage lin's page entries.
func (x *Index) NewPageReader(lin uint64) *PageReader {
	lo := binary.BigEndian.AppendUint64([]byte{prefixPage}, lin)
	return &PageReader{x: x, lin: lin, lower: lo, upper: prefixEnd(lo)}
}

// Close releases the reader's snapshot; the next Lookup takes a new one
// (and sees everything committed before it).
func (r *PageReader) Close() {
	if r.it != nil {
		r.it.Close()
		r.it = nil
	}
}

// Lookup returns pfn's page as generation gen (with floor) sees it; found
// is false if no entry is visible.
func (r *PageReader) Lookup(pfn, gen, floor uint64) (ref PageRef, found bool, err error) {
	if r.it == nil || r.uses >= pageReaderRenew {
		r.Close()
		r.uses = 0
		if r.it, err = r.x.db.NewIter(&pebble.IterOptions{LowerBound: r.lower, UpperBound: r.upper}); err != nil {
			return ref, false, err
		}
	}
	r.uses++
	if !r.it.SeekGE(pageKey(r.lin, pfn, gen)) {
		return ref, false, r.it.Error()
	}
	k := r.it.Key()
	if len(k) != 25 || binary.BigEndian.Uint64(k[9:]) != pfn || ^binary.BigEndian.Uint64(k[17:]) < floor {
		return ref, false, nil
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return ref, false, err
	}
	ref, err = decodePage(k, v)
	return ref, err == nil, err
}

// ResolveRun returns the pages [from, to) of run.
func (x *Index) ResolveRun(run *PageRun, from, to int64) ([]PageRef, error) {
	r := x.NewPageReader(run.Lin)
	defer r.Close()
	pfns := run.Pfns(nil, from, to)
	out := make([]PageRef, len(pfns))
	for i, pfn := range pfns {
		ref, ok, err := r.Lookup(pfn, run.Gen, run.Floor)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: no page entry for pfn %#x of generation %d (lineage %d)", ErrCorrupt, pfn, run.Gen, run.Lin)
		}
		out[i] = ref
	}
	return out, nil
}

// ReclaimGen processes dead generation gen of lineage lin: each of its
// page entries that a later live generation of the same delta chain still
// sees is relabelled to that generation; the others are deleted and their
// chunks become gc candidates. Then the record goes. It is idempotent and
// crash-safe (every entry moves in one batch); it returns false without
// doing anything if the next generation that is not dead is still being
// written. The caller serializes ReclaimGen calls.
func (x *Index) ReclaimGen(lin, gen uint64) (done bool, entries int, err error) {
	rec, err := x.getGen(lin, gen)
	if errors.Is(err, ErrNotFound) {
		return true, 0, nil
	}
	if err != nil || rec.State != GenDead {
		return false, 0, err
	}
	heir, err := x.heir(rec, nil)
	if errors.Is(err, errBlocked) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	// One snapshot of the lineage's entries serves every lookup. Entries a
	// writer adds meanwhile belong to generations past heir, which change
	// no decision below.
	lo := binary.BigEndian.AppendUint64([]byte{prefixPage}, lin)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return false, 0, err
	}
	defer it.Close()
	q := pageByGenPrefix(lin, gen)
	b := x.db.NewBatch()
	defer func() { b.Close() }()
	err = x.scan(q, func(k, _ []byte) error {
		if len(k) != 25 {
			return fmt.Errorf("%w: page key %x", ErrCorrupt, k)
		}
		pfn := binary.BigEndian.Uint64(k[17:])
		ref, newer, ok, err := entryAt(it, lin, pfn, gen)
		if err != nil {
			return err
		}
		if !ok {
			return b.Delete(k, nil) // entry gone already: only the index key left
		}
		if err := delPage(b, lin, gen, pfn, ref.ID, ref.Zero); err != nil {
			return err
		}
		if heir != 0 && (newer == 0 || newer > heir) {
			err = putPage(b, lin, heir, pfn, ref)
		} else if !ref.Zero {
			err = b.Set(candidateKey(ref.ID), nil, nil)
		}
		if err != nil {
			return err
		}
		entries++
		return x.commitIfFull(&b)
	})
	if err != nil {
		return false, entries, err
	}
	b.Delete(genKey(lin, gen), nil)
	return true, entries, x.commit(b)
}

var errBlocked = errors.New("blocked")

// entryAt returns, from it (over lineage lin's entries), generation gen's
// entry for pfn (ok false if none) and the generation of pfn's next newer
// entry (0 if none): what reclaiming decides on.
func entryAt(it *pebble.Iterator, lin, pfn, gen uint64) (ref PageRef, newer uint64, ok bool, err error) {
	pk := pageKey(lin, pfn, gen)
	if !it.SeekGE(pk) || !bytes.Equal(it.Key(), pk) {
		return ref, 0, false, it.Error()
	}
	ref, err = decodePage(pk, it.Value())
	if err != nil {
		return ref, 0, false, err
	}
	if it.Prev() && bytes.Equal(it.Key()[:17], pk[:17]) {
		newer = ^binary.BigEndian.Uint64(it.Key()[17:])
	}
	return ref, newer, true, nil
}

// heir returns the next live generation after rec in its delta chain (0 if
// none), taking the generations in dead as dead too; errBlocked if the
// next one that is not dead is still being written.
func (x *Index) heir(rec GenRecord, dead map[uint64]bool) (uint64, error) {
	var heir uint64
	err := x.scanFrom(genPrefix(rec.Lin), genKey(rec.Lin, rec.Gen+1), func(k, v []byte) (bool, error) {
		r, err := decodeGenRecord(k, v)
		if err != nil || r.Floor != rec.Floor {
			return false, err
		}
		switch {
		case r.State == GenDead || dead[r.Gen]:
			return true, nil
		case r.State == GenInFlight:
			return false, errBlocked
		}
		heir = r.Gen
		return false, nil
	})
	return heir, err
}

// DropPlan calls fn for each chunk reference of generation gen's page
// entries that reclaiming it would drop, were the generations in dead (of
// the same lineage) and gen itself dead: what a gc dry run needs. A
// generation whose successor is being written drops nothing yet.
func (x *Index) DropPlan(lin, gen uint64, dead map[uint64]bool, fn func(id chunkstore.ID, ref []byte) error) error {
	rec, err := x.getGen(lin, gen)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	heir, err := x.heir(rec, dead)
	if errors.Is(err, errBlocked) {
		return nil
	}
	if err != nil {
		return err
	}
	lo := binary.BigEndian.AppendUint64([]byte{prefixPage}, lin)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	defer it.Close()
	return x.scan(pageByGenPrefix(lin, gen), func(k, _ []byte) error {
		if len(k) != 25 {
			return fmt.Errorf("%w: page key %x", ErrCorrupt, k)
		}
		pfn := binary.BigEndian.Uint64(k[17:])
		ref, newer, ok, err := entryAt(it, lin, pfn, gen)
		if err != nil || !ok || ref.Zero || (heir != 0 && (newer == 0 || newer > heir)) {
			return err // gone, a zero page (no chunk), or moving to heir
		}
		return fn(ref.ID, refKey(ref.ID, holderPage, lin, pfn, gen))
	})
}

// scanFrom calls fn for keys with prefix p from start on, while fn returns
// true.
func (x *Index) scanFrom(p, start []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.SeekGE(start); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// ImageGens calls fn for each generation whose pages ino's image holds.
func (x *Index) ImageGens(ino uint64, fn func(lin, gen uint64) error) error {
	return x.scan(inoGenPrefix(ino), func(k, _ []byte) error {
		if len(k) != 25 {
			return fmt.Errorf("%w: generation key %x", ErrCorrupt, k)
		}
		return fn(binary.BigEndian.Uint64(k[9:]), binary.BigEndian.Uint64(k[17:]))
	})
}

// GenEntries returns how many page entries generation gen of lin holds.
func (x *Index) GenEntries(lin, gen uint64) (int, error) {
	n := 0
	err := x.scan(pageByGenPrefix(lin, gen), func(_, _ []byte) error { n++; return nil })
	return n, err
}
