package chunkstore

import (
	"testing"

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
