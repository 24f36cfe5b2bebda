package chunkstore

import (
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestStore returns a store on in-memory Pebble, closed when t ends.
func TestStore(t testing.TB) *Store {
	t.Helper()
	o := DefaultOptions()
	o.FS = vfs.NewMem()
	s, err := Open("store", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// DamageForTest makes chunk id's stored value v (an encoded value, or
// garbage), as a disk that changed its bytes would: reads then fail.
func (s *Store) DamageForTest(id ID, v []byte) error {
	b := s.NewBatch()
	defer b.Close()
	b.addRecord(id, v)
	return b.Commit(pebble.Sync)
}

// DropForTest deletes chunk id as a lost write would.
func (s *Store) DropForTest(id ID) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.deleteKeys(b, id); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}
