package lineage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/index"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// Page entries of formats 2 and 3: a key per page ('P'), a by-generation
// key per page ('Q') and a reference key per page ('r' ... 'p'). A
// read-only open reads them as they are; a writable open converts them to
// blocks (upgradePages).

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

// decodePage decodes a format 2 or 3 page entry's value: empty for a zero
// page, else the chunk's id and, optionally, its hint.
func decodePage(k, v []byte) (index.PageRef, error) {
	var ref index.PageRef
	if len(v) == 0 {
		ref.Zero = true
		return ref, nil
	}
	if len(v) < chunkstore.IDSize {
		return ref, fmt.Errorf("%w: page entry %x", index.ErrCorrupt, k)
	}
	ref.ID = chunkstore.ID(v[:chunkstore.IDSize])
	h, err := chunkstore.ParseHint(v[chunkstore.IDSize:])
	if err != nil {
		return ref, fmt.Errorf("%w: page entry %x: %v", index.ErrCorrupt, k, err)
	}
	ref.Hint = h
	return ref, nil
}

// legacyPageReader looks up format 2 and 3 page entries: one seek each.
type legacyPageReader struct {
	m     *Maps
	lin   uint64
	it    *pebble.Iterator
	uses  int
	lower []byte
	upper []byte
}

const legacyReaderRenew = 1 << 14

func newLegacyPageReader(m *Maps, lin uint64) *legacyPageReader {
	lo := binary.BigEndian.AppendUint64([]byte{prefixPage}, lin)
	return &legacyPageReader{m: m, lin: lin, lower: lo, upper: index.PrefixEnd(lo)}
}

func (r *legacyPageReader) Close() {
	if r.it != nil {
		r.it.Close()
		r.it = nil
	}
}

func (r *legacyPageReader) Lookup(pfn, gen, floor uint64) (ref index.PageRef, found bool, err error) {
	if r.it == nil || r.uses >= legacyReaderRenew {
		r.Close()
		r.uses = 0
		if r.it, err = r.m.db.NewIter(&pebble.IterOptions{LowerBound: r.lower, UpperBound: r.upper}); err != nil {
			return ref, false, err
		}
	}
	r.uses++
	if !r.it.SeekGE(pageKey(r.lin, pfn, gen)) {
		return ref, false, r.it.Error()
	}
	k := r.it.Key()
	if len(k) != keyLen(3) || field(k, 1) != pfn || ^field(k, 2) < floor {
		return ref, false, nil
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return ref, false, err
	}
	ref, err = decodePage(k, v)
	return ref, err == nil, err
}

func (m *Maps) legacyGenEntries(lin, gen uint64) (int, error) {
	n := 0
	err := m.x.Scan(pageByGenPrefix(lin, gen), func(_, _ []byte) error { n++; return nil })
	return n, err
}

// upgradePages converts format 2 and 3 page entries into blocks: the 'P'
// keys of one (lineage, block) at a time, in one batch with the deletion
// of their 'P' and 'Q' keys, so an interrupted upgrade goes on where it
// stopped at the next open. Then it deletes the by-generation keys no
// entry accounted for. The entries' reference keys are the index's: its
// upgrade deletes them all once this is done.
func (m *Maps) upgradePages() error {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPage}, UpperBound: []byte{prefixPage + 1}})
	if err != nil {
		return err
	}
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	b := m.db.NewBatch()
	defer func() { b.Close() }()
	type group struct{ lin, blk uint64 }
	var cur group
	gens := map[uint64][]blockEntry{} // the group's entries by generation
	var buf []byte
	flush := func() error {
		for gen, es := range gens {
			// Keys come pfn ascending within a generation.
			buf = appendBlock(buf[:0], cur.blk, es)
			b.Set(blockKey(cur.lin, cur.blk, gen), buf, nil)
			b.Set(blockByGenKey(cur.lin, gen, cur.blk), nil, nil)
		}
		clear(gens)
		return m.x.ApplyIfFull(&b)
	}
	started := false
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != keyLen(3) {
			return fmt.Errorf("%w: page key %x", index.ErrCorrupt, k)
		}
		lin, pfn, gen := field(k, 0), field(k, 1), ^field(k, 2)
		g := group{lin, pfn >> BlockShift}
		if started && g != cur {
			if err := flush(); err != nil {
				return err
			}
		}
		cur, started = g, true
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		ref, err := decodePage(k, v)
		if err != nil {
			return err
		}
		gens[gen] = append(gens[gen], blockEntry{pfn: pfn, ref: ref})
		b.Delete(k, nil)
		b.Delete(binary.BigEndian.AppendUint64(pageByGenPrefix(lin, gen), pfn), nil)
	}
	if err := it.Error(); err != nil {
		return err
	}
	if started {
		if err := flush(); err != nil {
			return err
		}
	}
	it.Close()
	it = nil
	// Keys no entry accounted for. (Their reference keys are the
	// index's: its upgrade deletes them after this one.)
	b.DeleteRange([]byte{prefixPage}, []byte{prefixPage + 1}, nil)
	b.DeleteRange([]byte{prefixPageByGen}, []byte{prefixPageByGen + 1}, nil)
	return b.Commit(pebble.Sync)
}
