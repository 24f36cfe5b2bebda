package chunkstore

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble/v2"
)

// known is an in-memory Bloom filter of the ids of the chunks the store
// holds, so that Prepare answers "new" for a chunk the store does not hold
// without a Pebble Get: only a probable hit pays the lookup (engine issue,
// item 2). It has no false negatives: an id is added once the batch that
// stores it is committed, and a filter is built from a snapshot of the
// locator keys taken after it starts collecting those adds. Deleted
// chunks stay in it (a false positive costs the Get it saves).
//
// It is built in the background when a writable store opens (until then
// every check says "maybe", as without a filter), and again, twice as
// large, once it holds as many ids as it was sized for; the old one serves
// meanwhile. It is sized for twice the chunks stored, at 8.1 bits per id
// it is sized for (2% false positives when full): 2 bytes per stored
// chunk when just built, 1 byte when full, so 272-545 MiB per TiB of
// unique 4 KiB pages, a twelfth of that for CDC chunks (48 KiB on average).
type known struct {
	mu       sync.RWMutex
	f        *bloom.BloomFilter // nil until the first build is done
	sizedFor uint               // ids f was sized for
	added    uint               // ids added to f since it was built
	building bool               // a build runs: adds are also kept in during
	during   []ID
	off      bool
	stopping atomic.Bool // a build's scan gives up
	wg       sync.WaitGroup
}

// knownFP is the false-positive rate of a full filter.
const knownFP = 0.02

// knownMinIDs is the fewest ids a filter is sized for (1 Mi ids, 1 MiB).
var knownMinIDs uint = 1 << 20

// ready reports whether a filter is built (tests).
func (k *known) ready() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.f != nil && !k.building
}

// mayHold reports whether the store may hold id (false: it surely does not).
func (k *known) mayHold(id ID) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.f == nil || k.f.Test(id[:])
}

// add records ids the store now holds (their batch is committed); it starts
// a rebuild when the filter is full.
func (k *known) add(s *Store, ids []ID) {
	if len(ids) == 0 {
		return
	}
	k.mu.Lock()
	if k.off {
		k.mu.Unlock()
		return
	}
	if k.building || k.f == nil {
		k.during = append(k.during, ids...)
	}
	if k.f != nil {
		for _, id := range ids {
			k.f.Add(id[:])
		}
		k.added += uint(len(ids))
	}
	rebuild := k.f != nil && !k.building && k.added > k.sizedFor
	if rebuild {
		k.building = true
	}
	k.mu.Unlock()
	if rebuild {
		k.wg.Add(1)
		go k.build(s)
	}
}

// start begins the first build (a writable open).
func (k *known) start(s *Store) {
	k.mu.Lock()
	k.building = true
	k.mu.Unlock()
	k.wg.Add(1)
	go k.build(s)
}

// build scans the locator keys (and a format 2 store's inline chunk keys)
// into a new filter, then adds what was committed meanwhile and swaps it
// in. Two passes (count, then fill), so that the build holds the filter
// and nothing in proportion to the store. A failed scan leaves the filter
// as it was (none: every check goes to Pebble).
func (k *known) build(s *Store) {
	defer k.wg.Done()
	count := uint(0)
	err := s.keysOnly(&k.stopping, func(ID) { count++ })
	var f *bloom.BloomFilter
	var n, filled uint
	if err == nil {
		n = max(count*2, knownMinIDs)
		f = bloom.NewWithEstimates(n, knownFP)
		err = s.keysOnly(&k.stopping, func(id ID) { f.Add(id[:]); filled++ })
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.building = false
	if err != nil || k.off {
		k.during = nil
		return
	}
	for _, id := range k.during {
		f.Add(id[:])
	}
	k.f, k.sizedFor, k.added, k.during = f, n, filled+uint(len(k.during)), nil
}

// stop turns the filter off and waits for a build (the store closes).
func (k *known) stop() {
	k.stopping.Store(true)
	k.wg.Wait()
	k.mu.Lock()
	k.off, k.f, k.during = true, nil, nil
	k.mu.Unlock()
}

// errStopped ends a scan the store's close interrupted.
var errStopped = errors.New("stopped")

// keysOnly calls fn with the id of every chunk key, reading no values,
// until stop is set.
func (s *Store) keysOnly(stop *atomic.Bool, fn func(ID)) error {
	for _, p := range []byte{PrefixLoc, PrefixChunk} {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if stop.Load() {
				it.Close()
				return errStopped
			}
			if k := it.Key(); len(k) == 1+IDSize {
				var id ID
				copy(id[:], k[1:])
				fn(id)
			}
		}
		err = it.Error()
		it.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
