package chunkstore

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
)

// Get returns the chunk's plain content appended to dst. A missing chunk
// is ErrNotFound, one that fails its checks is ErrCorrupt; both errors name
// the chunk. A chunk in a segment is checked by its record's CRC-32C and
// id (the bytes are the ones written for that chunk); an inline chunk (a
// format 2 store read as it is) and every chunk that Verify reads are
// re-hashed. See doc.go.
func (s *Store) Get(dst []byte, id ID) ([]byte, error) {
	v, inline, err := s.value(id)
	if err != nil {
		return nil, err
	}
	if inline {
		return verify(dst, id, v)
	}
	return decodeChecked(dst, id, v)
}

// decodeChecked decodes a value whose record passed its checks.
func decodeChecked(dst []byte, id ID, v []byte) ([]byte, error) {
	out, err := decodeValue(dst, v)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %v", id, ErrCorrupt, err)
	}
	return out, nil
}

// value returns chunk id's encoded value, and whether it was inline.
func (s *Store) value(id ID) ([]byte, bool, error) {
	for try := 0; ; try++ {
		l, inline, ok, err := s.where(id)
		if err != nil {
			if damaged(err) {
				return nil, false, fmt.Errorf("chunk %s: %w: %s", id, ErrCorrupt, OneLine(err.Error()))
			}
			return nil, false, fmt.Errorf("chunk %s: %w", id, err)
		}
		if !ok {
			return nil, false, fmt.Errorf("chunk %s: %w", id, ErrNotFound)
		}
		if inline != nil {
			return inline, true, nil
		}
		v, err := s.readRecord(id, l)
		if err != nil && try == 0 {
			// Compact may have moved the chunk and removed the segment
			// since the lookup: look again.
			if l2, _, ok, _ := s.where(id); ok && l2 != l {
				continue
			}
		}
		return v, false, err
	}
}

// readRecord reads the record at l and returns its value, checking that
// it is chunk id's.
func (s *Store) readRecord(id ID, l locator) ([]byte, error) {
	rec, err := s.seg.read(nil, l)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	rid, v, n, err := parseRecord(rec)
	if err != nil || n != l.n || rid != id {
		return nil, fmt.Errorf("chunk %s: %w: segment %d at %d holds no record of it", id, ErrCorrupt, l.seg, l.off)
	}
	return v, nil
}

func verify(dst []byte, id ID, v []byte) ([]byte, error) {
	start := len(dst)
	out, err := decodeValue(dst, v)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %v", id, ErrCorrupt, err)
	}
	if Sum(out[start:]) != id {
		return nil, fmt.Errorf("chunk %s: %w: content hashes to %s", id, ErrCorrupt, Sum(out[start:]))
	}
	return out, nil
}

// GetMany calls fn with each chunk of ids (by its index in ids), read and
// verified as Get does, in no particular order. Chunks whose records lie
// close together in a segment are read with one read: a run of pages
// written together (a generation's new pages) is one sequential read.
//
// hints, if not nil, holds a Hint for each id (the zero Hint for none): a
// chunk found at its hint (its record's id and CRC match) needs no locator
// lookup.
func (s *Store) GetMany(ids []ID, hints []Hint, fn func(i int, data []byte, err error)) {
	s.getMany(ids, hints, false, fn)
}

// GetManyEncoded is GetMany handing fn each chunk's encoded value instead
// of its plain bytes, checked as GetMany checks them: DecodeInto decodes
// it where the bytes are wanted (a read reply), with no buffer of its own
// in between. A value is valid only until fn returns (it lies in a read
// buffer that is reused): fn copies what it keeps.
func (s *Store) GetManyEncoded(ids []ID, hints []Hint, fn func(i int, value []byte, err error)) {
	s.getMany(ids, hints, true, fn)
}

// getOne is Get, or with encoded the chunk's value as GetManyEncoded
// gives it (an inline chunk, re-hashed, comes back encoded raw).
func (s *Store) getOne(id ID, encoded bool) ([]byte, error) {
	if !encoded {
		return s.Get(nil, id)
	}
	v, inline, err := s.value(id)
	if err != nil {
		return nil, err
	}
	if inline {
		data, err := verify(nil, id, v)
		if err != nil {
			return nil, err
		}
		return encodeValue(nil, CodecRaw, data), nil
	}
	if _, err := DecodedLen(v); err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	return v, nil
}

func (s *Store) getMany(ids []ID, hints []Hint, encoded bool, fn func(i int, data []byte, err error)) {
	type loc struct {
		i int
		l locator
	}
	locs := make([]loc, 0, len(ids))
	for i, id := range ids {
		if hints != nil && hints[i].l.seg != 0 {
			locs = append(locs, loc{i, hints[i].l})
			continue
		}
		l, inline, ok, err := s.where(id)
		if err != nil || !ok || inline != nil {
			data, err := s.getOne(id, encoded)
			fn(i, data, err)
			continue
		}
		locs = append(locs, loc{i, l})
	}
	slices.SortFunc(locs, func(a, b loc) int {
		if a.l.seg != b.l.seg {
			return cmp.Compare(a.l.seg, b.l.seg)
		}
		return cmp.Compare(a.l.off, b.l.off)
	})
	// Runs of records close together in one segment: one read each. The
	// read-ahead of the runs after it is started before this one is read
	// and decoded, so the disk works while the CPU decodes.
	const gap, span = 64 << 10, 8 << 20
	type run struct {
		locs     []loc
		from, to int64
	}
	var runs []run
	for len(locs) > 0 {
		n, end := 1, locs[0].l.off+int64(locs[0].l.n)
		for n < len(locs) && locs[n].l.seg == locs[0].l.seg && locs[n].l.off <= end+gap && locs[n].l.off+int64(locs[n].l.n)-locs[0].l.off <= span {
			end = max(end, locs[n].l.off+int64(locs[n].l.n))
			n++
		}
		runs = append(runs, run{locs[:n], locs[0].l.off, end})
		locs = locs[n:]
	}
	// The read buffer (up to span bytes) comes from a pool: a fresh one
	// per call was zeroed before every read (15% of a cold restore's CPU).
	// Decoded chunks never alias it; encoded values do, for the length of
	// fn's call.
	pooled := readBufs.Get().(*[]byte)
	buf := *pooled
	defer func() {
		if cap(buf) <= 2*span {
			*pooled = buf[:0]
			readBufs.Put(pooled)
		}
	}()
	// The disk gets the next runs at once (up to prefetchRuns of them),
	// not one after the other: a restore of a long lineage's newest image
	// reads each span's pages from many generations' segments.
	const prefetchRuns = 64
	for k := 1; k < len(runs) && k <= prefetchRuns; k++ {
		s.seg.prefetch(runs[k].locs[0].l.seg, runs[k].from, runs[k].to-runs[k].from)
	}
	for k, rn := range runs {
		if k+prefetchRuns < len(runs) {
			next := runs[k+prefetchRuns]
			s.seg.prefetch(next.locs[0].l.seg, next.from, next.to-next.from)
		}
		got, err := s.seg.read(buf, locator{seg: rn.locs[0].l.seg, off: rn.from, n: int(rn.to - rn.from)})
		if err == nil {
			buf = got
		}
		for _, r := range rn.locs {
			id := ids[r.i]
			if err != nil {
				// The segment may have been rewritten since: one by one.
				data, err := s.getOne(id, encoded)
				fn(r.i, data, err)
				continue
			}
			rec := got[r.l.off-rn.from : r.l.off-rn.from+int64(r.l.n)]
			rid, v, n, perr := parseRecord(rec)
			if perr != nil || n != r.l.n || rid != id {
				data, err := s.getOne(id, encoded)
				fn(r.i, data, err)
				continue
			}
			if encoded {
				if _, derr := DecodedLen(v); derr != nil {
					fn(r.i, nil, fmt.Errorf("chunk %s: %w", id, derr))
					continue
				}
				fn(r.i, v[:len(v):len(v)], nil)
				continue
			}
			data, derr := decodeChecked(nil, id, v)
			fn(r.i, data, derr)
		}
	}
}

// readBufs recycles GetMany's read buffers.
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

// Hint is where a chunk's record was when something referenced it: a read
// that finds the chunk's record there (its id and CRC match) skips the
// lookup of its locator. Hints are never updated: a stale one (gc moved
// the chunk) costs that lookup, never wrong data.
type Hint struct{ l locator }

// IsZero reports whether h says nothing.
func (h Hint) IsZero() bool { return h.l.seg == 0 }

// AppendHint appends h's encoding (nothing for the zero Hint).
func AppendHint(dst []byte, h Hint) []byte {
	if h.IsZero() {
		return dst
	}
	return append(dst, encodeLocator(h.l)...)
}

// ParseHint decodes what AppendHint appended.
func ParseHint(b []byte) (Hint, error) {
	if len(b) == 0 {
		return Hint{}, nil
	}
	l, err := decodeLocator(b)
	return Hint{l}, err
}
