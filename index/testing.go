package index

import (
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// TestIndex returns an index on a fresh in-memory store, with extension
// ext (nil: none; xen/lineage.Keys for stores with xl save images).
func TestIndex(t testing.TB, ext Extension) (*Index, *chunkstore.Store) {
	t.Helper()
	cs := chunkstore.TestStore(t)
	x, err := Open(cs.DB(), 1, 0, 0, ext)
	if err != nil {
		t.Fatal(err)
	}
	x.SetDurable(cs.CommitDurable)
	return x, cs
}
