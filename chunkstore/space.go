package chunkstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Space keeps the store's disk from filling up. Pebble cannot live with a
// full disk: a failed WAL write panics, a failed flush stalls every commit
// for good (writers hang in close, in D state). So writes are admitted only
// while the disk keeps a margin free beyond what the memtables will need
// when flushed, and the store holds a reserve file that gc releases to get
// room for its work (deletions and compactions write before they free).
//
//	ReserveFile   a file of reserve bytes (min(64 MiB, disk/16)), released
//	              by gc, a remount or a close on a nearly full disk and
//	              written again once there is room
//	margin        the same size again: Admit refuses new data (ENOSPC)
//	              once free space, less unflushed memtables and what was
//	              admitted since the last statfs, would drop below it
//
// Deletions (unlink, rmdir, gc) are never refused.
const ReserveFile = "CKPTFS-RESERVE"

// ErrNoSpace is what Admit refuses with; it wraps ENOSPC.
var ErrNoSpace = fmt.Errorf("the store's disk is full (ckptfs keeps a margin free so that deletion and gc still work): %w", syscall.ENOSPC)

type space struct {
	dir     string // "" on an in-memory store: no checks
	reserve int64

	mu       sync.Mutex
	checked  time.Time
	free     int64 // at checked
	admitted int64 // since checked
	held     int64 // see Hold
	unflush  func() int64
	pending  int64 // unflushed memtable bytes at checked
}

// spaceCheckEvery bounds how stale the free-space figure Admit uses is.
const spaceCheckEvery = 50 * time.Millisecond

// newSpace watches the disk of dir ("": none); the store sets unflush
// once its database is open.
func newSpace(dir string) *space {
	sp := &space{dir: dir}
	var st syscall.Statfs_t
	if dir == "" || syscall.Statfs(dir, &st) != nil {
		sp.dir = ""
		return sp
	}
	total := int64(st.Blocks) * st.Bsize
	if total == 0 { // ramfs: no size, nothing to keep free
		sp.dir = ""
		return sp
	}
	sp.reserve = min(64<<20, total/16)
	return sp
}

func (sp *space) freeNow() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(sp.dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// Admit reserves n bytes of new data, or refuses with ErrNoSpace.
func (s *Store) Admit(n int) error { return s.take(n, false) }

// Hold reserves room for n bytes of data that will be taken later and
// must not be refused then, or refuses with ErrNoSpace: write-behind holds
// what it spools, so that storing it after close(2) returned finds room.
// Until UseHeld or Unhold, held bytes count against every Admit and Hold.
func (s *Store) Hold(n int) error { return s.take(n, true) }

func (s *Store) take(n int, hold bool) error {
	sp := s.space
	if sp.dir == "" || s.readOnly {
		return nil
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if time.Since(sp.checked) > spaceCheckEvery {
		free, err := sp.freeNow()
		if err != nil {
			return nil // cannot tell; Pebble's own errors will
		}
		sp.free, sp.admitted, sp.checked = free, 0, time.Now()
		sp.pending = sp.unflush()
	}
	// Data admitted costs its WAL bytes now and about as much again when
	// its memtable is flushed; held data is still to come.
	need := 2*(sp.admitted+sp.held+int64(n)) + sp.pending
	if sp.free-need < sp.reserve {
		sp.checked = time.Time{} // look again next time: gc may free space
		return ErrNoSpace
	}
	if hold {
		sp.held += int64(n)
	} else {
		sp.admitted += int64(n)
	}
	return nil
}

// UseHeld takes n held bytes as admitted, without a check: the data Hold
// made room for is being stored.
func (s *Store) UseHeld(n int) {
	sp := s.space
	sp.mu.Lock()
	sp.held = max(sp.held-int64(n), 0)
	sp.admitted += int64(n)
	sp.mu.Unlock()
}

// Unhold gives back n held bytes that will not be stored.
func (s *Store) Unhold(n int) {
	sp := s.space
	sp.mu.Lock()
	sp.held = max(sp.held-int64(n), 0)
	sp.mu.Unlock()
}

// ReleaseReserve deletes the reserve file if the disk is nearly full,
// giving its bytes to whatever runs next (gc, the flush of an open or a
// close).
func (s *Store) ReleaseReserve() { s.space.release() }

func (sp *space) release() {
	if sp.low() {
		sp.drop()
	}
}

// drop removes the reserve file whatever the free space (a clean close).
func (sp *space) drop() {
	if sp.dir != "" {
		os.Remove(filepath.Join(sp.dir, ReserveFile))
	}
}

// dropRecycledLogs removes, after a clean close (every memtable flushed),
// the WAL files but the newest: Pebble keeps up to five for recycling,
// about a memtable each, and none holds anything the tables lack. With
// truncateNewest (Pebble reported no live WAL bytes) the newest goes
// empty too: recycled, it holds an older log's stale bytes.
//
// A journaled store (keep set) keeps every log that holds anything in its
// journal instead, the newest too: with the journal Pebble recycles no log,
// so each holds only its own records.
func (sp *space) dropRecycledLogs(truncateNewest bool, keep func(string) error) error {
	if sp.dir == "" {
		return nil
	}
	logs, err := filepath.Glob(filepath.Join(sp.dir, "*.log"))
	if err != nil || len(logs) == 0 {
		return err
	}
	num := func(p string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(filepath.Base(p), ".log"), 10, 64)
		return n
	}
	sort.Slice(logs, func(i, j int) bool { return num(logs[i]) < num(logs[j]) }) // the newest last
	if keep != nil {
		for _, l := range logs {
			if err := keep(l); err != nil {
				// Left where it is (a full disk): the next writable
				// open finds it obsolete and keeps it then.
				logLimited(fmt.Sprintf("journal: keeping %s: %v (kept at the next open)", filepath.Base(l), err))
			}
		}
		return nil
	}
	for _, l := range logs[:len(logs)-1] {
		if err := os.Remove(l); err != nil {
			return err
		}
	}
	if truncateNewest {
		return os.Truncate(logs[len(logs)-1], 0)
	}
	return nil
}

// RestoreReserve writes the reserve file again if it is missing and the
// disk has room for it and the margin.
func (s *Store) RestoreReserve() error {
	sp := s.space
	if sp.dir == "" || s.readOnly {
		return nil
	}
	p := filepath.Join(sp.dir, ReserveFile)
	if st, err := os.Stat(p); err == nil && st.Size() >= sp.reserve {
		return nil
	}
	free, err := sp.freeNow()
	if err != nil {
		return err
	}
	sp.mu.Lock()
	held := sp.held // room promised to data still to come (Hold)
	sp.mu.Unlock()
	if free-2*held < 3*sp.reserve {
		return ErrNoSpace
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, sp.reserve); err != nil {
		if !errors.Is(err, syscall.EOPNOTSUPP) {
			os.Remove(p)
			return err
		}
		// No fallocate here: write the bytes.
		buf := make([]byte, 1<<20)
		for off := int64(0); off < sp.reserve; off += int64(len(buf)) {
			if _, err := f.WriteAt(buf, off); err != nil {
				os.Remove(p)
				return err
			}
		}
	}
	return f.Sync()
}

// low reports whether the disk has less than twice the reserve free.
func (sp *space) low() bool {
	if sp.dir == "" {
		return false
	}
	free, err := sp.freeNow()
	return err == nil && free < 2*sp.reserve
}
