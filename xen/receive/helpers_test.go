package receive

import (
	"path/filepath"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// pageModeStore returns an in-memory store and an engine over it that
// reads back what a publisher wrote.
func pageModeStore(t *testing.T) (*content.Store, *index.Index, *chunkstore.Store) {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := content.DefaultConfig()
	cfg.Runs = lineage.Of(x)
	s := content.New(cs, cs, x, cfg)
	t.Cleanup(s.Close)
	return s, x, cs
}

// benchStore returns a new on-disk store, closed when tb ends.
func benchStore(tb testing.TB) (*chunkstore.Store, *index.Index) {
	tb.Helper()
	cs, err := chunkstore.Open(filepath.Join(tb.TempDir(), "s"), chunkstore.DefaultOptions())
	if err != nil {
		tb.Fatal(err)
	}
	x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cs.Close() })
	return cs, x
}

// firstDiff is the first offset where a and b differ (or the shorter's
// length).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
