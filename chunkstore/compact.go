package chunkstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// deadKey counts the bytes of a segment's records whose chunks Sweep
// deleted: "\x00segdead" | seg (4 bytes, big-endian) -> bytes (8, BE).
var deadPrefix = []byte("\x00segdead")

func deadKey(seg uint32) []byte { return binary.BigEndian.AppendUint32(bytes.Clone(deadPrefix), seg) }

// addDead adds, in b, to the dead bytes of each segment. The caller holds
// gcMu, so the counters it reads are the committed ones.
func (s *Store) addDead(b *pebble.Batch, dead map[uint32]int64) error {
	for seg, n := range dead {
		cur, err := s.deadBytes(seg)
		if err != nil {
			return err
		}
		if err := b.Set(deadKey(seg), binary.BigEndian.AppendUint64(nil, uint64(cur+n)), nil); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) deadBytes(seg uint32) (int64, error) {
	n, err := getCounter(s.db, deadKey(seg), fmt.Sprintf("dead-bytes counter of segment %d", seg))
	return int64(n), err
}

// CompactStats says what Compact did.
type CompactStats struct {
	Removed   int   // segments removed whole (every record dead)
	Rewritten int   // segments whose live records were copied, then removed
	Moved     int64 // bytes of live records copied
	Freed     int64 // bytes of segment files removed
	NoRoom    int   // rewrites put off: the disk had no room for the copy
	// Waiting is the dead bytes left in segments under the garbage
	// fraction (they come back once more of the segment dies, or with a
	// lower fraction), in WaitingSegments segments whose rewrite would copy
	// WaitingLive bytes.
	Waiting, WaitingLive int64
	WaitingSegments      int
}

// Compact gives back the space of dead records (what Sweep deleted): a
// segment whose records are all dead is removed, one with at least garbage
// (a fraction, 0 to 1) of its bytes dead has its live records copied to
// the active segment, committed and synced, and is then removed. It
// visits only segments Sweep counted dead bytes in, so its work is
// proportional to what was deleted (and what shares a segment with it).
// Online: writers and readers go on (a reader that looked a chunk up just
// before its segment went looks again).
func (s *Store) Compact(garbage float64) (CompactStats, error) {
	var st CompactStats
	if s.readOnly {
		return st, errors.New("compact of a read-only store")
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	type cand struct {
		seg  uint32
		dead int64
	}
	var cands []cand
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: deadPrefix, UpperBound: append(bytes.Clone(deadPrefix), 0xff, 0xff, 0xff, 0xff, 0xff)})
	if err != nil {
		return st, err
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[len(deadPrefix):]
		if len(k) != 4 || len(it.Value()) != 8 {
			continue
		}
		cands = append(cands, cand{binary.BigEndian.Uint32(k), int64(binary.BigEndian.Uint64(it.Value()))})
	}
	if err := it.Close(); err != nil {
		return st, err
	}
	// Segments that are all dead first: removing them needs no room, and
	// gives the rewrites room on a full disk.
	sizes := map[uint32]int64{}
	for _, c := range cands {
		sizes[c.seg] = s.seg.sizeOf(c.seg)
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		return cmp.Compare(b.dead-sizes[b.seg], a.dead-sizes[a.seg])
	})
	noRoom := false
	for _, c := range cands {
		size := sizes[c.seg]
		partial := size > 0 && c.dead < size // live records to copy first
		if size > 0 && float64(c.dead) < garbage*float64(size) || partial && noRoom {
			st.Waiting += c.dead
			st.WaitingLive += size - c.dead
			st.WaitingSegments++
			continue
		}
		if partial {
			// No room for the copy (Admit refuses, or the append fails):
			// the segment stays, its dead bytes counted, for a later gc;
			// what was copied already is garbage of the active segment.
			if s.Admit(int(size-c.dead)) != nil {
				st.NoRoom, noRoom = st.NoRoom+1, true
				st.Waiting += c.dead
				st.WaitingLive += size - c.dead
				st.WaitingSegments++
				continue
			}
			s.seg.sealIf(c.seg)
			moved, err := s.rewrite(c.seg)
			st.Moved += moved
			if errors.Is(err, syscall.ENOSPC) {
				st.NoRoom, noRoom = st.NoRoom+1, true
				st.Waiting += c.dead
				st.WaitingLive += size - c.dead
				st.WaitingSegments++
				continue
			}
			if err != nil {
				return st, fmt.Errorf("rewrite of segment %d: %w", c.seg, err)
			}
			st.Rewritten++
		} else if size > 0 {
			s.seg.sealIf(c.seg)
			st.Removed++
		}
		// Every locator that named the segment is gone or moved, durably
		// (Sweep's and rewrite's commits are synced): now it can go.
		if size > 0 {
			if err := s.seg.remove(c.seg); err != nil {
				return st, err
			}
			st.Freed += size
		}
		if err := s.db.Delete(deadKey(c.seg), pebble.Sync); err != nil {
			return st, err
		}
	}
	return st, nil
}

// rewrite copies the live records of segment seg (those a locator names)
// to the active segment and commits their new locators, synced.
func (s *Store) rewrite(seg uint32) (int64, error) {
	b := s.NewBatch()
	defer func() { b.Close() }()
	var moved int64
	buf := make([]byte, 0, 4<<20)
	var base int64 // segment offset of buf[0]
	for eof := false; ; {
		// Fill buf up to its capacity from the segment.
		if !eof && len(buf) < cap(buf) {
			var n int
			rerr := s.seg.withFile(seg, func(f vfs.File) (err error) {
				n, err = f.ReadAt(buf[len(buf):cap(buf)], base+int64(len(buf)))
				return err
			})
			buf = buf[:len(buf)+n]
			eof = rerr != nil
		}
		consumed := 0
		for consumed < len(buf) {
			id, v, n, perr := parseRecord(buf[consumed:])
			if perr != nil {
				break // a record past the buffer, or a torn tail
			}
			off := base + int64(consumed)
			l, inline, ok, err := s.where(id)
			if err != nil {
				return 0, err
			}
			if ok && inline == nil && l.seg == seg && l.off == off && l.n == n {
				b.addRecord(id, v)
				moved += int64(n)
			}
			consumed += n
		}
		if consumed == 0 {
			if eof || len(buf) < cap(buf) {
				break // the rest is a torn record no locator names
			}
			// One record larger than the buffer.
			buf = append(make([]byte, 0, 2*cap(buf)), buf...)
			continue
		}
		base += int64(consumed)
		buf = append(buf[:0], buf[consumed:]...)
		if b.Len() >= 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			b.Close()
			b = s.NewBatch()
		}
		if eof && len(buf) == 0 {
			break
		}
	}
	return moved, b.Commit(pebble.Sync)
}

// upgradeInline moves the chunk values a format 1 or 2 store keeps in
// Pebble into segments, in batches that each add the records and their
// locators and delete the inline values (an interrupted upgrade goes on at
// the next open; reads find either), then records format 3 (package index's upgrade then
// records the current format after its own).
func (s *Store) upgradeInline() error {
	ver, err := StoredFormat(s.db)
	if err != nil || ver >= 3 {
		s.inline = err != nil
		return err
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{PrefixChunk}, UpperBound: []byte{PrefixChunk + 1}})
	if err != nil {
		return err
	}
	b := s.NewBatch()
	defer func() { b.Close() }()
	moved := 0
	for it.First(); it.Valid(); it.Next() {
		var id ID
		copy(id[:], it.Key()[1:])
		v, err := iterValue(it)
		if err != nil {
			it.Close()
			return fmt.Errorf("chunk %s: %w", id, err)
		}
		b.addRecord(id, v)
		if err := b.Batch.Delete(it.Key(), nil); err != nil {
			it.Close()
			return err
		}
		moved++
		if b.Len() >= 4<<20 {
			if err := b.Commit(pebble.Sync); err != nil {
				it.Close()
				return err
			}
			b.Close()
			b = s.NewBatch()
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if ver == 2 {
		if err := setFormat(b.Batch, 3); err != nil { // package index takes it on to 4
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.inline = false
	if moved > 0 {
		// Give the inline values' space back now, not at some later
		// compaction.
		return s.db.Compact(context.Background(), []byte{PrefixChunk}, []byte{PrefixChunk + 1}, false)
	}
	return nil
}
