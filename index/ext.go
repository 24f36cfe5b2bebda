package index

import (
	"github.com/cockroachdb/pebble/v2"
)

// Extension is a package that keeps records of its own in the index's
// database, under key prefixes the index leaves to it (ExtensionPrefixes),
// and that must hear of what the namespace does: package xen/lineage (the
// guests' generations, their page maps and the guest records of xl save
// images). Open calls it; its methods get the index, whose exported
// helpers below (DB, Scan, Apply, ApplyIfFull, Txn) are the index's own
// batches, lock and number counter.
type Extension interface {
	// Upgrade converts the extension's keys of stored format ver (older
	// than chunkstore.FormatVersion) at a writable Open, before the
	// current format is recorded. An interrupted upgrade is redone by the
	// next Open, so each step must be redoable.
	Upgrade(x *Index, ver int) error
	// Recover runs at a writable Open, after the namespace's own recovery
	// (staged versions, orphans, staging names): no writer survived.
	Recover(x *Index) error
	// Purge adds to b what goes with inode ino, whose inode and content b
	// deletes for good (its last name and its last open file are gone).
	Purge(x *Index, b *pebble.Batch, ino uint64) error
}

// ExtensionPrefixes are the first bytes of the keys that belong to the
// extension (xen/lineage), not to the index. Part of the on-disk format:
// the index never writes keys under them.
var ExtensionPrefixes = []byte{'l', 'L', 'P', 'Q', 'y', 'B', 'G', 'x'}

// DB is the database the index keeps its keys in.
func (x *Index) DB() *pebble.DB { return x.db }

// Format is the store's format version as this open left it: the stored
// one for a read-only open, chunkstore.FormatVersion after a writable
// open's upgrade.
func (x *Index) Format() int { return x.format }

// Scan calls fn for every key with prefix, in order, skipping (and not
// failing on) the key ranges of damaged tables (SetDamaged).
func (x *Index) Scan(prefix []byte, fn func(k, v []byte) error) error {
	return x.scan(prefix, fn)
}

// Apply applies b without waiting for the disk, as the namespace's own
// batches are: Sync or the next durable commit makes it durable.
func (x *Index) Apply(b *pebble.Batch) error { return x.commit(b) }

// ApplyIfFull applies *b once it holds a long-running job's share of
// memory, and replaces it with an empty batch.
func (x *Index) ApplyIfFull(b **pebble.Batch) error { return x.commitIfFull(b) }

// Txn runs fn holding the namespace's lock, with a batch that is applied
// (as Apply does) if fn returns nil; alloc hands out numbers from the
// counter of inodes and versions, recorded in that batch. A change that
// must not interleave with a namespace mutation (a generation's state,
// which deleting its image changes) goes through Txn.
func (x *Index) Txn(fn func(b *pebble.Batch, alloc func() uint64) error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := x.db.NewBatch()
	defer b.Close()
	if err := fn(b, func() uint64 { return x.allocLocked(b) }); err != nil {
		return err
	}
	return x.commit(b)
}

// PrefixEnd is the smallest key above every key with prefix p (nil: none).
func PrefixEnd(p []byte) []byte { return prefixEnd(p) }
