package chunkstore

import (
	"github.com/cockroachdb/pebble/v2"
)

// Batch is the one write transaction of a store: a Pebble batch (which
// package index adds its keys to) plus the chunk records it adds. Commit
// appends the records to the active segment in one write, in the order
// they were added, then adds their locators to the Pebble batch and
// commits it: a locator is never visible before the bytes it names are
// written. A synced commit syncs the segments first.
type Batch struct {
	*pebble.Batch
	s    *Store
	buf  []byte
	recs []pendingRecord
}

type pendingRecord struct {
	id     ID
	off, n int
}

// NewBatch returns an empty batch of the store.
func (s *Store) NewBatch(opts ...pebble.BatchOption) *Batch {
	return &Batch{Batch: s.db.NewBatch(opts...), s: s}
}

// addRecord adds chunk id with its encoded value.
func (b *Batch) addRecord(id ID, value []byte) {
	off := len(b.buf)
	b.buf = appendRecord(b.buf, id, value)
	b.recs = append(b.recs, pendingRecord{id: id, off: off, n: len(b.buf) - off})
}

// Len is the batch's size in bytes, chunk records included.
func (b *Batch) Len() int { return b.Batch.Len() + len(b.buf) }

// Empty reports whether the batch holds nothing.
func (b *Batch) Empty() bool { return b.Batch.Empty() && len(b.recs) == 0 }

// Commit writes the batch's chunk records, then commits the rest; with
// pebble.Sync everything written to the store before is durable when it
// returns.
func (b *Batch) Commit(o *pebble.WriteOptions) error {
	if len(b.recs) > 0 {
		seg, base, err := b.s.seg.append(b.buf)
		if err != nil {
			return err
		}
		for _, r := range b.recs {
			if err := b.Batch.Set(locKey(r.id), encodeLocator(locator{seg: seg, off: base + int64(r.off), n: r.n}), nil); err != nil {
				return err
			}
		}
		b.buf, b.recs = b.buf[:0], b.recs[:0]
	}
	if o == pebble.Sync {
		if err := b.s.seg.sync(); err != nil {
			return err
		}
	}
	return b.Batch.Commit(o)
}

// Close releases the batch; records not committed are dropped.
func (b *Batch) Close() error {
	b.buf, b.recs = nil, nil
	return b.Batch.Close()
}
