package chunkstore

import (
	"fmt"
	"os"
	"path/filepath"
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

// DamageForTest changes bytes of chunk id's record in its segment, as a
// disk that returns wrong data would: reads then fail.
func (s *Store) DamageForTest(id ID) error {
	l, _, ok, err := s.where(id)
	if err != nil || !ok {
		return fmt.Errorf("damage %s: %v (found %v)", id, err, ok)
	}
	f, err := s.seg.file(l.seg)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte("garbage!"), l.off+int64(l.n)/2); err != nil {
		return err
	}
	return f.Sync()
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

// RemoveDatabaseForTest removes the database's files (DatabaseFile, and
// the lock file) of the closed store in dir, as an operator who deleted
// the wrong files would: segments/ (with the journal in it), the spool and
// the durable marker stay. It reports how many files went.
func RemoveDatabaseForTest(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if DatabaseFile(e.Name()) || e.Name() == "LOCK" {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
