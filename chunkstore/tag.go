package chunkstore

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/minio/highwayhash"
)

// Tag is a page's keyed 128-bit tag: HighwayHash-128 of its bytes under
// the store's secret tag key. Package index keeps it in page entries, and
// a writer that finds a page's tag equal to the tag of the same pfn's page
// in the base generation takes the page as unchanged without hashing it
// with BLAKE3 (about 5x the work). A guest picks its pages' bytes but not
// the key, which never leaves the store: to make a changed page pass as
// unchanged it must guess a 128-bit tag of a keyed PRF. Tags are compared
// only with the same pfn's entry of the same lineage; chunks stay named by
// BLAKE3-256, which dedup across guests needs (docs/measurements.md,
// "Proving a page unchanged").
type Tag [16]byte

// TagKeySize is the size of a store's tag key.
const TagKeySize = 32

var tagKeyKey = []byte("\x00tagkey")

// PageTag returns data's tag under key.
func PageTag(key []byte, data []byte) Tag { return highwayhash.Sum128(data, key) }

// TagKey returns the store's tag key (nil: the store has none, a read-only
// open of a store that never had a writable one since format 4).
func (s *Store) TagKey() []byte { return s.tagKey }

// loadTagKey reads the store's tag key, making one (32 random bytes) at a
// writable open of a store that has none.
func loadTagKey(db *pebble.DB, readOnly bool) ([]byte, error) {
	v, c, err := db.Get(tagKeyKey)
	if err == nil {
		defer c.Close()
		if len(v) != TagKeySize {
			return nil, fmt.Errorf("%w: tag key of %d bytes", ErrCorrupt, len(v))
		}
		return append([]byte(nil), v...), nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return nil, err
	}
	if readOnly {
		return nil, nil
	}
	key := make([]byte, TagKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, db.Set(tagKeyKey, key, pebble.Sync)
}
