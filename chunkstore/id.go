package chunkstore

import (
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// IDSize is the size of a chunk ID in bytes. Part of the on-disk format.
const IDSize = 32

// ID names a chunk: the BLAKE3-256 hash of its plain (uncompressed) content.
type ID [IDSize]byte

// Sum returns the ID of data.
func Sum(data []byte) ID { return ID(blake3.Sum256(data)) }

// String returns the ID in lower-case hex.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses the hex form returned by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDSize {
		return id, fmt.Errorf("chunk id %q: want %d hex digits", s, 2*IDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("chunk id %q: %w", s, err)
	}
	return id, nil
}

// IsZero reports whether every byte of data is zero. All-zero chunks are never
// stored: callers record a hole instead.
func IsZero(data []byte) bool {
	// Compare 8 bytes at a time through a fixed zero block; the compiler turns
	// bytes comparison into memcmp.
	for len(data) > 0 {
		n := min(len(data), len(zeroBlock))
		if string(data[:n]) != string(zeroBlock[:n]) {
			return false
		}
		data = data[n:]
	}
	return true
}

var zeroBlock [64 << 10]byte
