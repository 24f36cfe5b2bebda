package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ckptfs/ckptfs/test/memimage"
)

func smallSegments(t *testing.T, n int64) {
	old := SegmentBytes
	SegmentBytes = n
	t.Cleanup(func() { SegmentBytes = old })
}

// putChunks stores n random 4 KiB chunks, per batches of per, and returns
// their ids in write order.
func putChunks(t *testing.T, s *Store, seed uint64, n, per int) []ID {
	t.Helper()
	var ids []ID
	b := s.NewBatch()
	for i := 0; i < n; i++ {
		id, _, err := s.Put(b, memimage.Random(4096, seed+uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if (i+1)%per == 0 || i == n-1 {
			if err := b.Commit(pebble.NoSync); err != nil {
				t.Fatal(err)
			}
			b.Close()
			b = s.NewBatch()
		}
	}
	b.Close()
	s.Unpin(ids...)
	return ids
}

func segBytes(t *testing.T, s *Store) (n int64, segs int) {
	ids, err := s.seg.list()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		n += s.seg.sizeOf(id)
	}
	return n, len(ids)
}

func sweepAll(t *testing.T, s *Store, ids []ID) int64 {
	t.Helper()
	n, freed, err := s.Sweep(ids, func(*pebble.Batch, ID, bool) (bool, error) { return true, nil })
	if err != nil || n != len(ids) {
		t.Fatalf("sweep: %d of %d, %v", n, len(ids), err)
	}
	return freed
}

// TestCompact: records are appended in write order; a segment whose chunks
// are all deleted is removed whole, one mostly dead is rewritten, one
// little dead stays, and every live chunk reads back, before and after a
// reopen, while deleted ones are gone.
func TestCompact(t *testing.T) {
	smallSegments(t, 64<<10)
	o := DefaultOptions()
	o.FS = vfs.NewMem()
	s, err := Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	ids := putChunks(t, s, 1, 120, 4) // 4 records (16 KiB) a batch: 4 batches a segment
	_, segs := segBytes(t, s)
	if segs < 7 {
		t.Fatalf("%d segments for 120 chunks of 4 KiB in 64 KiB segments", segs)
	}
	// Locators follow write order.
	var prev locator
	for i, id := range ids {
		l, _, ok, err := s.where(id)
		if !ok || err != nil {
			t.Fatal(id, err)
		}
		if i > 0 && (l.seg < prev.seg || (l.seg == prev.seg && l.off <= prev.off)) {
			t.Fatalf("chunk %d at %v, after %v", i, l, prev)
		}
		prev = l
	}
	loc := func(id ID) locator { l, _, _, _ := s.where(id); return l }
	first, second := loc(ids[0]).seg, loc(ids[0]).seg+1
	var dead, live []ID
	for _, id := range ids {
		if l := loc(id); l.seg == first || l.seg == second {
			dead = append(dead, id) // all of the first and second segments
		} else {
			live = append(live, id)
		}
	}
	// Keep one chunk of the second segment alive.
	live = append(live, dead[len(dead)-1])
	dead = dead[:len(dead)-1]
	// And kill one chunk of the third: too little to rewrite it.
	third := live[0]
	dead, live = append(dead, third), live[1:]
	sweepAll(t, s, dead)
	before, _ := segBytes(t, s)
	st, err := s.Compact(0.5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Removed != 1 || st.Rewritten != 1 || st.Moved == 0 {
		t.Fatalf("compact: %+v", st)
	}
	after, _ := segBytes(t, s)
	if after >= before-64<<10 {
		t.Fatalf("segments took %d bytes before compact, %d after", before, after)
	}
	check := func(s *Store) {
		t.Helper()
		for _, id := range live {
			if _, err := s.Get(nil, id); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range dead {
			if _, err := s.Get(nil, id); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted chunk: %v", err)
			}
		}
		n := 0
		s.Verify(func(i Info, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			n++
			return nil
		})
		if n != len(live) {
			t.Fatalf("verify saw %d chunks, want %d", n, len(live))
		}
	}
	check(s)
	// A second compact finds nothing to do.
	if st, err := s.Compact(0.5); err != nil || st.Removed+st.Rewritten != 0 {
		t.Fatalf("second compact: %+v %v", st, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}

// TestSegmentCrash: a crash that keeps only what was synced keeps every
// chunk of a durable commit, and the store opens and takes new chunks
// after the torn tail.
func TestSegmentCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	o := DefaultOptions()
	o.FS = mem
	s, err := Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	durableIDs := putChunks(t, s, 1, 30, 7)
	if err := s.CommitDurable(s.db.NewBatch()); err != nil {
		t.Fatal(err)
	}
	putChunks(t, s, 100, 30, 7) // not durable
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()
	o.FS = crashed
	s, err = Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range durableIDs {
		if _, err := s.Get(nil, id); err != nil {
			t.Fatalf("durable chunk after a crash: %v", err)
		}
	}
	more := putChunks(t, s, 200, 10, 3)
	for _, id := range more {
		if _, err := s.Get(nil, id); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
}

// TestUpgradeInline: a format 2 store's inline chunk values move to
// segments on the first read-write open (a read-only open reads them where
// they are), and the store records format 3.
func TestUpgradeInline(t *testing.T) {
	o := DefaultOptions()
	o.FS = vfs.NewMem()
	s, err := Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	var ids []ID
	var data [][]byte
	for i := range 50 {
		d := memimage.Random(4096+i, uint64(i))
		id := Sum(d)
		s.db.Set(chunkKey(id), encodeValue(nil, CodecS2, d), nil)
		ids, data = append(ids, id), append(data, d)
	}
	s.db.Set(formatKey, []byte("ckptfs 2"), pebble.Sync)
	s.Close()

	ro := o
	ro.ReadOnly = true
	s, err = Open("st", ro)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if got, err := s.Get(nil, id); err != nil || string(got) != string(data[i]) {
			t.Fatalf("read-only v2: %v", err)
		}
	}
	s.Close()

	s, err = Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := StoredFormat(s.db); v != 3 { // package index takes it on from 3
		t.Fatalf("format %d after upgrade", v)
	}
	inline := 0
	s.each(func(id ID, l locator, it *pebble.Iterator) error {
		if it != nil {
			inline++
		}
		return nil
	})
	if n, segs := segBytes(t, s); inline != 0 || segs == 0 || n < 50*4096 {
		t.Fatalf("after upgrade: %d inline, %d segments, %d bytes", inline, segs, n)
	}
	for i, id := range ids {
		if got, err := s.Get(nil, id); err != nil || string(got) != string(data[i]) {
			t.Fatalf("upgraded: %v", err)
		}
	}
}

// TestGetMany reads chunks of several segments, some missing, in one call.
func TestGetMany(t *testing.T) {
	smallSegments(t, 64<<10)
	s := TestStore(t)
	ids := putChunks(t, s, 1, 50, 5)
	var bogus ID
	bogus[0] = 1
	want := append(append([]ID{}, ids...), bogus)
	// GetManyEncoded hands out values that DecodeInto makes the same
	// chunks of.
	for _, encoded := range []bool{false, true} {
		got := make([]error, len(want))
		seen := 0
		fn := func(i int, data []byte, err error) {
			seen++
			if err == nil && encoded {
				v := data
				n, lerr := DecodedLen(v)
				data = make([]byte, n)
				if err = lerr; err == nil {
					err = DecodeInto(data, v)
				}
			}
			if err == nil && Sum(data) != want[i] {
				err = fmt.Errorf("chunk %d: wrong data", i)
			}
			got[i] = err
		}
		if encoded {
			s.GetManyEncoded(want, nil, fn)
		} else {
			s.GetMany(want, nil, fn)
		}
		if seen != len(want) {
			t.Fatalf("encoded %v: %d callbacks for %d chunks", encoded, seen, len(want))
		}
		for i, err := range got[:len(ids)] {
			if err != nil {
				t.Fatal(encoded, i, err)
			}
		}
		if !errors.Is(got[len(ids)], ErrNotFound) || !strings.Contains(got[len(ids)].Error(), bogus.String()) {
			t.Fatalf("encoded %v: missing chunk: %v", encoded, got[len(ids)])
		}
	}
}

// TestVerifyRehashes: a record whose CRC is right but whose content is not
// the chunk its id names (only a bug could write one) passes a read's
// checks, and Verify (fsck) finds it by re-hashing.
func TestVerifyRehashes(t *testing.T) {
	s := TestStore(t)
	ids := putChunks(t, s, 1, 3, 3)
	b := s.NewBatch()
	b.addRecord(ids[1], encodeValue(nil, CodecRaw, []byte("not the original")))
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	var bad []ID
	s.Verify(func(i Info, err error) error {
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatal(err)
			}
			bad = append(bad, i.ID)
		}
		return nil
	})
	if len(bad) != 1 || bad[0] != ids[1] {
		t.Fatalf("verify found %v, want %v", bad, ids[1])
	}
}

// FuzzDecodeRecord: the record and locator decoders never panic, accept
// only what the encoders could have written, and round-trip it.
func FuzzDecodeRecord(f *testing.F) {
	var id ID
	id[0] = 7
	f.Add(appendRecord(nil, id, encodeValue(nil, CodecS2, memimage.Random(100, 1))), encodeLocator(locator{seg: 3, off: 12345, n: 139}))
	f.Add(appendRecord(nil, id, nil), encodeLocator(locator{seg: 1, off: 0, n: 40}))
	f.Add([]byte("short"), []byte{0})
	f.Fuzz(func(t *testing.T, rec, loc []byte) {
		if rid, v, n, err := parseRecord(rec); err == nil {
			if n > len(rec) {
				t.Fatalf("record of %d bytes in %d", n, len(rec))
			}
			if back := appendRecord(nil, rid, v); string(back) != string(rec[:n]) {
				t.Fatal("record does not round-trip")
			}
		}
		if l, err := decodeLocator(loc); err == nil {
			if back := encodeLocator(l); string(back) != string(loc) {
				// uvarints have one canonical form only if minimal
				if l2, err := decodeLocator(back); err != nil || l2 != l {
					t.Fatalf("locator %v does not round-trip", l)
				}
			}
			if h, err := ParseHint(loc); err != nil || h.l != l {
				t.Fatalf("hint of a valid locator: %v %v", h, err)
			}
		}
	})
}

// TestPrepareOtherOwner: a chunk one writer prepared for a batch it has
// not committed is prepared again for another writer (whose batch may
// commit first, and the first writer's never: a crash, a failed
// writer), but not for the same writer, whose batches commit in order;
// once committed it is a duplicate for everyone.
func TestPrepareOtherOwner(t *testing.T) {
	s := TestStore(t)
	data := bytes.Repeat([]byte("other owner "), 300)
	id := Sum(data)
	a, b := s.NewOwner(), s.NewOwner()
	va, err := s.Prepare(a, nil, id, data)
	if err != nil || va == nil {
		t.Fatalf("first Prepare: %v, %v; want a value", va, err)
	}
	if v, err := s.Prepare(a, nil, id, data); err != nil || v != nil {
		t.Fatalf("same owner again: %d bytes, %v; want a duplicate", len(v), err)
	}
	vb, err := s.Prepare(b, nil, id, data)
	if err != nil || vb == nil {
		t.Fatalf("another owner while a's batch is pending: %v; want a value of its own", err)
	}
	// b's batch commits, a's never does (a crash, a failed writer). Had
	// a's committed after b's, it would drop its record (no dead copy).
	ab := s.NewBatch()
	ab.Owner = a
	other := bytes.Repeat([]byte("kept "), 500)
	vo, _ := s.Prepare(a, nil, Sum(other), other)
	if err := s.SetPrepared(ab, id, va); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPrepared(ab, Sum(other), vo); err != nil {
		t.Fatal(err)
	}
	defer ab.Close()
	bb := s.NewBatch()
	bb.Owner = b
	if err := s.SetPrepared(bb, id, vb); err != nil {
		t.Fatal(err)
	}
	if err := bb.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	bb.Close()
	s.Unpin(id, id, id)
	if got, err := s.Get(nil, id); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the chunk b committed: %v", err)
	}
	if v, err := s.Prepare(s.NewOwner(), nil, id, data); err != nil || v != nil {
		t.Fatalf("after the commit: %d bytes, %v; want a duplicate", len(v), err)
	}
	s.Unpin(id)
	// a's batch commits late: its copy of the chunk is dropped, the other
	// chunk kept, and b's record stays the one the store names.
	before := s.seg.size
	if err := ab.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	s.Unpin(Sum(other))
	if grew, want := s.seg.size-before, int64(len(appendRecord(nil, Sum(other), vo))); grew != want {
		t.Fatalf("a's commit appended %d bytes, want %d (the other chunk only)", grew, want)
	}
	for _, c := range [][]byte{data, other} {
		if got, err := s.Get(nil, Sum(c)); err != nil || !bytes.Equal(got, c) {
			t.Fatalf("after a's commit: %v", err)
		}
	}
}
