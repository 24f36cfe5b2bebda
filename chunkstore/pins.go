package chunkstore

import (
	"github.com/cockroachdb/pebble/v2"
)

// Pin keeps Sweep from deleting chunk id until Unpin.
func (s *Store) Pin(id ID) {
	s.mu.Lock()
	s.pins[id]++
	if s.touched != nil {
		s.touched[id] = struct{}{}
	}
	s.mu.Unlock()
}

// BeginMark starts a mark: until EndMark, every chunk pinned (a writer
// about to reference it) counts as pinned for Sweep even after its Unpin.
// gc marks the chunks its candidates' references name from a snapshot of
// the index taken after BeginMark; a reference committed after that
// snapshot was pinned after BeginMark, so Sweep keeps its chunk.
func (s *Store) BeginMark() {
	s.mu.Lock()
	s.touched = map[ID]struct{}{}
	s.mu.Unlock()
}

// EndMark ends what BeginMark started.
func (s *Store) EndMark() {
	s.mu.Lock()
	s.touched = nil
	s.mu.Unlock()
}

// Unpin undoes one Pin of each id.
func (s *Store) Unpin(ids ...ID) {
	s.mu.Lock()
	for _, id := range ids {
		if s.pins[id] <= 1 {
			delete(s.pins, id)
		} else {
			s.pins[id]--
		}
	}
	s.mu.Unlock()
}

// Pinned returns how many chunks are pinned.
func (s *Store) Pinned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pins)
}

// Sweep deletes, in one synced batch, each chunk of ids that is not pinned
// and that unreferenced approves (it may add to the batch, e.g. to drop a
// gc candidate). Pins are held off meanwhile, so a writer that decides to
// reuse a chunk either pins it before Sweep looks (the chunk stays) or
// finds it gone and writes it again. It returns how many chunks it deleted
// and their stored bytes. The segments' records of deleted chunks are
// counted as dead; Compact gives their space back.
func (s *Store) Sweep(ids []ID, unreferenced func(b *pebble.Batch, id ID, pinned bool) (bool, error)) (int, int64, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	n, freed := 0, int64(0)
	dead := map[uint32]int64{}
	for _, id := range ids {
		_, touched := s.touched[id]
		pinned := s.pins[id] > 0 || touched
		del, err := unreferenced(b, id, pinned)
		if err != nil {
			return 0, 0, err
		}
		if !del || pinned {
			continue
		}
		l, inline, ok, err := s.where(id)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			continue // gone already
		}
		if inline != nil {
			freed += int64(len(inline))
		} else {
			freed += int64(l.n)
			dead[l.seg] += int64(l.n)
		}
		s.recent.Remove(id)
		if err := s.deleteKeys(b, id); err != nil {
			return 0, 0, err
		}
		n++
	}
	if err := s.addDead(b, dead); err != nil {
		return 0, 0, err
	}
	return n, freed, b.Commit(pebble.Sync)
}

func (s *Store) deleteKeys(b *pebble.Batch, id ID) error {
	if err := b.Delete(locKey(id), nil); err != nil {
		return err
	}
	return b.Delete(chunkKey(id), nil)
}
