package chunkstore

import (
	"encoding/binary"
	"slices"
	"sync"

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
	// Owner is the writer whose chunks the batch stores (PutID): a new
	// one per batch unless the caller sets its own (see Store.Prepare).
	Owner  Owner
	s      *Store
	buf    []byte
	pooled *[]byte // buf's pool entry
	recs   []pendingRecord
	// onCommit are called by Commit once the records' places are known.
	onCommit []func(b *pebble.Batch, hint func(ID) Hint) error
}

// OnCommit registers fn, which Commit calls after it has appended the
// batch's records and before it commits the Pebble batch: fn adds its keys
// to b, and hint says where a chunk's record is (the zero Hint if not
// known: a chunk neither of this batch nor written or looked up
// recently). Package index writes page map blocks this way.
func (b *Batch) OnCommit(fn func(b *pebble.Batch, hint func(ID) Hint) error) {
	b.onCommit = append(b.onCommit, fn)
}

// hint is where chunk id's record is, if the store knows it offhand.
func (s *Store) hint(id ID) Hint {
	if e, ok := s.recent.Peek(id); ok && e.l.seg != 0 {
		return Hint{e.l}
	}
	return Hint{}
}

type pendingRecord struct {
	id     ID
	off, n int
	// prepared: a new chunk from Prepare, dropped at commit if another
	// batch stored it meanwhile (not a rewrite by Compact, which moves a
	// stored chunk on purpose).
	prepared bool
}

// NewBatch returns an empty batch of the store.
func (s *Store) NewBatch(opts ...pebble.BatchOption) *Batch {
	return &Batch{Batch: s.db.NewBatch(opts...), s: s, Owner: s.NewOwner()}
}

// recordBufs recycles batches' record buffers: a writer's batch fills
// about 4 MiB, and growing a fresh one each time copied it twice over.
var recordBufs = sync.Pool{New: func() any { return new([]byte) }}

// addRecord adds chunk id with its encoded value.
func (b *Batch) addRecord(id ID, value []byte) {
	if b.buf == nil {
		b.pooled = recordBufs.Get().(*[]byte)
		b.buf = (*b.pooled)[:0]
	}
	off := len(b.buf)
	if need := off + IDSize + binary.MaxVarintLen64 + len(value) + 4; need > cap(b.buf) {
		// Double: append's growth of large slices (1.25x) copied a
		// writer's 4 MiB of records several times over.
		b.buf = slices.Grow(b.buf, max(need, 2*cap(b.buf), 1<<20)-off)
	}
	b.buf = appendRecord(b.buf, id, value)
	b.recs = append(b.recs, pendingRecord{id: id, off: off, n: len(b.buf) - off})
}

// addPrepared is addRecord for a value from Prepare.
func (b *Batch) addPrepared(id ID, value []byte) {
	b.addRecord(id, value)
	b.recs[len(b.recs)-1].prepared = true
}

// Len is the batch's size in bytes, chunk records included.
func (b *Batch) Len() int { return b.Batch.Len() + len(b.buf) }

// Empty reports whether the batch holds nothing.
func (b *Batch) Empty() bool {
	return b.Batch.Empty() && len(b.recs) == 0 && len(b.onCommit) == 0
}

// Commit writes the batch's chunk records, then commits the rest; with
// pebble.Sync everything written to the store before is durable when it
// returns.
func (b *Batch) Commit(o *pebble.WriteOptions) error {
	var stored []ID
	var locs map[ID]locator
	b.dropStored()
	if len(b.recs) > 0 {
		seg, base, err := b.s.seg.append(b.buf)
		if err != nil {
			return err
		}
		stored = make([]ID, 0, len(b.recs))
		locs = make(map[ID]locator, len(b.recs))
		for _, r := range b.recs {
			l := locator{seg: seg, off: base + int64(r.off), n: r.n}
			if err := b.Batch.Set(locKey(r.id), encodeLocator(l), nil); err != nil {
				return err
			}
			locs[r.id] = l
			stored = append(stored, r.id)
		}
		b.buf, b.recs = b.buf[:0], b.recs[:0]
	}
	hint := func(id ID) Hint {
		if l, ok := locs[id]; ok {
			return Hint{l}
		}
		return b.s.hint(id)
	}
	for _, fn := range b.onCommit {
		if err := fn(b.Batch, hint); err != nil {
			return err
		}
	}
	b.onCommit = nil
	if o == pebble.Sync {
		if err := b.s.seg.sync(); err != nil {
			return err
		}
	}
	if err := b.Batch.Commit(o); err != nil {
		return err
	}
	// Committed: other owners may reference these chunks now.
	for id, l := range locs {
		b.s.recent.Add(id, recentEntry{l: l, stored: true})
	}
	// Committed: the filter of stored chunks may say so now (never
	// before: a filter built meanwhile scans what is committed).
	b.s.known.add(b.s, stored)
	return nil
}

// Close releases the batch; records not committed are dropped.
func (b *Batch) Close() error {
	if b.pooled != nil && cap(b.buf) <= 16<<20 {
		*b.pooled = b.buf[:0]
		recordBufs.Put(b.pooled)
	}
	b.buf, b.pooled, b.recs, b.onCommit = nil, nil, nil, nil
	return b.Batch.Close()
}

// dropStored drops the records of chunks another batch has committed
// since they were prepared (two owners preparing one chunk: see
// Store.Prepare): the first commit stores it, the other's record would be
// dead space nobody accounts for.
func (b *Batch) dropStored() {
	keep, at := b.recs[:0], 0
	for _, r := range b.recs {
		if e, ok := b.s.recent.Peek(r.id); ok && e.stored && r.prepared {
			continue
		}
		copy(b.buf[at:], b.buf[r.off:r.off+r.n]) // at <= r.off: moves records down
		r.off, at = at, at+r.n
		keep = append(keep, r)
	}
	b.buf, b.recs = b.buf[:at], keep
}
