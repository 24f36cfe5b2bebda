package chunkstore

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestDurableMarker: durable commits advance the marker; a crash that keeps
// only what was synced loses nothing the marker counts; a database behind
// its marker (its log lost acknowledged writes) is refused read-write
// with *LostWrites, opens read-only reporting it, and AllowLost plus
// AcceptLoss takes it as it is.
func TestDurableMarker(t *testing.T) {
	mem := vfs.NewCrashableMem()
	o := DefaultOptions()
	o.FS = mem
	s, err := Open("store", o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b := s.DB().NewBatch()
		b.Set([]byte{'z', byte(i)}, []byte("v"), nil)
		if err := s.CommitDurable(b); err != nil {
			t.Fatal(err)
		}
	}
	// An unsynced write after the last durable commit, then a crash that
	// keeps only what was synced.
	s.DB().Set([]byte("zz"), []byte("unsynced"), pebble.NoSync)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	s.Close()

	o.FS = crashed
	s, err = Open("store", o)
	if err != nil {
		t.Fatalf("reopen after a crash that lost only unsynced writes: %v", err)
	}
	for i := 0; i < 5; i++ {
		if _, c, err := s.DB().Get([]byte{'z', byte(i)}); err != nil {
			t.Fatalf("durable write %d lost: %v", i, err)
		} else {
			c.Close()
		}
	}
	if s.Lost() != nil {
		t.Fatalf("loss reported after a clean crash: %v", s.Lost())
	}
	s.Close()

	// The marker ahead of the database: acknowledged writes were lost.
	f, err := crashed.OpenReadWrite(crashed.PathJoin("store", DurableFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := decodeMarker(encodeMarker(0))
	f.WriteAt(encodeMarker(n+1000), 0)
	f.Close()
	_, err = Open("store", o)
	var lost *LostWrites
	if !errors.As(err, &lost) || !errors.Is(err, ErrLostWrites) || lost.Marker != 1000 {
		t.Fatalf("writable open of a store behind its marker: %v, want *LostWrites", err)
	}
	ro := o
	ro.ReadOnly = true
	s, err = Open("store", ro)
	if err != nil || s.Lost() == nil {
		t.Fatalf("read-only open: %v, lost %v", err, s.Lost())
	}
	s.Close()
	al := o
	al.AllowLost = true
	s, err = Open("store", al)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AcceptLoss(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open("store", o)
	if err != nil {
		t.Fatalf("open after AcceptLoss: %v", err)
	}
	s.Close()
}

// FuzzDecodeMarker: the marker decoder never panics, and accepts exactly
// what encodeMarker writes.
func FuzzDecodeMarker(f *testing.F) {
	f.Add(encodeMarker(7))
	f.Add([]byte("ckptfs-durable\x00\x00short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeMarker(b)
		if err == nil && string(encodeMarker(n)[:28]) != string(b[:28]) {
			t.Fatalf("accepted %x as %d", b, n)
		}
	})
}
