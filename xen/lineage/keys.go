package lineage

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/index"
)

// Key prefixes of this package in the index's database (they are
// index.ExtensionPrefixes). Part of the on-disk format.
const (
	prefixXen = 'x' // 'x' | ino -> guest record
	// Format version 2.
	prefixLineage   = 'l' // 'l' | uuid -> lineage number
	prefixGen       = 'L' // 'L' | lin | gen -> generation record
	prefixPage      = 'P' // 'P' | lin | pfn | ^gen -> page entry (formats 2 and 3)
	prefixPageByGen = 'Q' // 'Q' | lin | gen | pfn -> empty (formats 2 and 3)
	prefixInoGen    = 'y' // 'y' | ino | lin | gen -> empty
	// Format version 4: page maps as blocks.
	prefixBlock      = 'B' // 'B' | lin | blk | ^gen -> page block
	prefixBlockByGen = 'G' // 'G' | lin | gen | blk -> empty
)

// keyLen is the length of a key of a prefix byte and n integer fields.
func keyLen(n int) int { return 1 + 8*n }

// field reads integer field i of a key.
func field(k []byte, i int) uint64 { return binary.BigEndian.Uint64(k[1+8*i:]) }

// Maps are the lineages of a store: its guests' generations, their page
// maps and the guest records of its xl save images, kept in the index's
// database beside the namespace. Of makes one; it holds no state of its
// own, so any number may be used at once.
type Maps struct {
	x  *index.Index
	db *pebble.DB
	// legacy: the page maps are format 2 or 3 keys (a read-only open of
	// an old store; a writable open upgrades them first).
	legacy bool
}

// Of returns the lineages kept in x. x must have been opened with Keys (a
// writable open), or read-only.
func Of(x *index.Index) *Maps {
	return &Maps{x: x, db: x.DB(), legacy: x.Format() < 4}
}

// Keys is the index extension of this package (index.Open's ext): it
// upgrades the page maps of formats 2 and 3, ends the generations no
// writer survived at Open, and marks an image's generation dead (and its
// guest record gone) in the batch that purges the image.
var Keys index.Extension = keys{}

type keys struct{}

func (keys) Upgrade(x *index.Index, _ int) error { return Of(x).upgradePages() }

func (keys) Recover(x *index.Index) error {
	m := Of(x)
	b := m.db.NewBatch()
	defer b.Close()
	if err := m.abortGens(b); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func (keys) Purge(x *index.Index, b *pebble.Batch, ino uint64) error {
	if err := Of(x).dropInoGen(b, ino); err != nil {
		return err
	}
	return b.Delete(xenKey(ino), nil)
}

// ReclaimedSpans are the key ranges where gc deletes keys of this package
// (page map blocks and their by-generation keys); gc compacts them with
// the index's (index.ReclaimedSpans) so that the space comes back.
func ReclaimedSpans() [][2][]byte {
	return [][2][]byte{{{prefixBlock}, {prefixBlock + 1}}, {{prefixBlockByGen}, {prefixBlockByGen + 1}}}
}
