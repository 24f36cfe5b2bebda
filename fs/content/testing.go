package content

import (
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// TestStore returns an engine over a fresh in-memory store, with small
// parameters so that tests cross chunk, batch and window boundaries often.
func TestStore(t testing.TB) (*Store, *index.Index, *chunkstore.Store) {
	t.Helper()
	x, cs := index.TestIndex(t, nil)
	cfg := Config{Params: Params{Min: 1024, Max: 8192, AvgBits: 11}, Window: 64 << 10, BatchBytes: 32 << 10, CacheChunks: 16, ReadAhead: 64 << 10}
	s := New(cs, cs, x, cfg)
	t.Cleanup(s.Close)
	return s, x, cs
}
