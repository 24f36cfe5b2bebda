package chunkstore

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func knownChunk(i int) []byte {
	b := make([]byte, 4096)
	binary.LittleEndian.PutUint64(b, uint64(i)+1)
	return b
}

func waitKnown(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.known.ready(); {
		if time.Now().After(deadline) {
			t.Fatal("the filter of stored chunks was not built in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func putKnown(t *testing.T, s *Store, from, to int) []ID {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	var ids []ID
	for i := from; i < to; i++ {
		id, _, err := s.Put(b, knownChunk(i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	s.Unpin(ids...)
	return ids
}

// TestKnownFilter: the filter of stored chunks has no false negatives,
// for chunks stored before the store opened, while its build ran and
// after it, across rebuilds as it fills; it answers "not stored" for most
// new chunks, and a chunk it says is new is stored by Prepare as before.
func TestKnownFilter(t *testing.T) {
	defer func(n uint) { knownMinIDs = n }(knownMinIDs)
	knownMinIDs = 256 // small filters: several rebuilds below
	fsys := vfs.NewMem()
	o := DefaultOptions()
	o.FS = fsys
	s, err := Open("store", o)
	if err != nil {
		t.Fatal(err)
	}
	before := putKnown(t, s, 0, 1000)
	s.Close()
	if s, err = Open("store", o); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Commits while the first build may run, from two writers.
	var during [2][]ID
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 20 {
				lo := 10000*(w+1) + 50*k
				during[w] = append(during[w], putKnown(t, s, lo, lo+50)...)
			}
		}()
	}
	wg.Wait()
	waitKnown(t, s)
	after := putKnown(t, s, 50000, 53000) // past what it was sized for: rebuilds
	waitKnown(t, s)
	for _, set := range [][]ID{before, during[0], during[1], after} {
		for _, id := range set {
			if !s.known.mayHold(id) {
				t.Fatalf("the filter says stored chunk %v is not stored", id)
			}
		}
	}
	surely := 0
	for i := 90000; i < 91000; i++ {
		if !s.known.mayHold(Sum(knownChunk(i))) {
			surely++
		}
	}
	t.Logf("%d of 1000 new chunks answered without a lookup", surely)
	if surely < 900 {
		t.Fatalf("only %d of 1000 new chunks answered by the filter", surely)
	}
	// Prepare: a stored chunk is a duplicate (nil), a new one is encoded.
	b := s.NewBatch()
	defer b.Close()
	if v, err := s.Prepare(s.NewOwner(), nil, before[3], knownChunk(3)); err != nil || v != nil {
		t.Fatalf("Prepare of a stored chunk: %d bytes, %v", len(v), err)
	}
	if v, err := s.Prepare(s.NewOwner(), nil, Sum(knownChunk(90000)), knownChunk(90000)); err != nil || v == nil {
		t.Fatalf("Prepare of a new chunk: %v", err)
	}
}
