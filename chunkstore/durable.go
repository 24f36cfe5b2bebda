package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The durable marker. Every commit that makes something reported done
// durable (a file's close, fsync of a directory, a published generation)
// goes through CommitDurable: it sets the key "\x00durable" to the next
// count n in the batch, commits it synced, then writes n to the file
// DurableFile beside Pebble's files and syncs that. The database can then
// be behind the file only if Pebble lost synced writes: a WAL that was
// truncated or damaged makes Pebble replay less than it acknowledged,
// silently. Open notices (ErrLostWrites) instead of serving a store rolled
// back to an older state.
//
// DurableFile, 32 bytes:
//
//	magic "ckptfs-durable\x00\x00" (16) | n u64 BE | crc32c of the 24 bytes before u32 BE | zero (4)
//
// It is rewritten in place at offset 0 (one sector: a torn write is not
// possible on the disks we run on; a bad checksum reads as ErrCorrupt).
const DurableFile = "CKPTFS-DURABLE"

var (
	durableKey   = []byte("\x00durable")
	durableMagic = "ckptfs-durable\x00\x00"
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// ErrLostWrites marks a store whose database is behind its durable marker.
var ErrLostWrites = errors.New("the store lost writes it had reported durable")

// LostWrites describes a store that lost durable writes.
type LostWrites struct {
	DB, Marker uint64   // durable commits the database has, and the marker
	Logs       []string // the WAL files in the store (the usual culprits)
}

func (e *LostWrites) Error() string {
	return fmt.Sprintf("%v: the database has %d durable commits, %s records %d; the write-ahead log (%v) was truncated or damaged after they were acknowledged",
		ErrLostWrites, e.DB, DurableFile, e.Marker, e.Logs)
}

func (e *LostWrites) Unwrap() error { return ErrLostWrites }

type durable struct {
	f    vfs.File // nil: read-only
	n    uint64   // durable commits so far
	lost *LostWrites
}

func encodeMarker(n uint64) []byte {
	b := make([]byte, 0, 32)
	b = append(b, durableMagic...)
	b = binary.BigEndian.AppendUint64(b, n)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return append(b, 0, 0, 0, 0)
}

func decodeMarker(b []byte) (uint64, error) {
	if len(b) < 28 || string(b[:16]) != durableMagic {
		return 0, fmt.Errorf("%s: %w: bad magic", DurableFile, ErrCorrupt)
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.BigEndian.Uint32(b[24:]) {
		return 0, fmt.Errorf("%s: %w: checksum mismatch", DurableFile, ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b[16:]), nil
}

func dbDurable(db *pebble.DB) (uint64, error) { return getCounter(db, durableKey, "durable counter") }

// getCounter reads an 8-byte big-endian counter (0 if the key is absent).
func getCounter(db *pebble.DB, key []byte, what string) (uint64, error) {
	v, c, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s of %d bytes", ErrCorrupt, what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// openDurable reads the marker of the store in dir and compares it with
// db's count. Writable, it opens the marker for updates.
func openDurable(fsys vfs.FS, dir string, db *pebble.DB, readOnly bool) (*durable, error) {
	n, err := dbDurable(db)
	if err != nil {
		return nil, err
	}
	d := &durable{n: n}
	p := fsys.PathJoin(dir, DurableFile)
	b, err := readAll(fsys, p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A new store, or one from before the marker: nothing to compare.
	case err != nil:
		return nil, err
	default:
		m, err := decodeMarker(b)
		if err != nil {
			return nil, err
		}
		if m > n {
			var logs []string
			names, _ := fsys.List(dir)
			for _, name := range names {
				if strings.HasSuffix(name, ".log") {
					logs = append(logs, name)
				}
			}
			d.lost = &LostWrites{DB: n, Marker: m, Logs: logs}
		}
	}
	if readOnly {
		return d, nil
	}
	if _, err := fsys.Stat(p); errors.Is(err, os.ErrNotExist) {
		d.f, err = fsys.Create(p, vfs.WriteCategoryUnspecified)
		if err == nil {
			err = syncDir(fsys, dir)
		}
		if err != nil {
			return nil, err
		}
	} else if d.f, err = fsys.OpenReadWrite(p, vfs.WriteCategoryUnspecified); err != nil {
		return nil, err
	}
	if d.lost == nil {
		if err := d.write(n); err != nil {
			d.f.Close()
			return nil, err
		}
	}
	return d, nil
}

func readAll(fsys vfs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func syncDir(fsys vfs.FS, dir string) error {
	d, err := fsys.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (d *durable) close() error {
	if d.f == nil {
		return nil
	}
	return d.f.Close()
}

func (d *durable) write(n uint64) error {
	if _, err := d.f.WriteAt(encodeMarker(n), 0); err != nil {
		return err
	}
	return d.f.Sync()
}

// CommitDurable commits b synced as the next durable commit (see
// DurableFile); an empty batch makes every commit before it durable.
func (s *Store) CommitDurable(b *pebble.Batch) error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	// What the commit makes durable may name chunk records not synced yet.
	if err := s.seg.sync(); err != nil {
		return err
	}
	n := s.dur.n + 1
	if err := b.Set(durableKey, binary.BigEndian.AppendUint64(nil, n), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	s.dur.n = n
	if s.dur.f == nil {
		return errors.New("durable commit on a read-only store")
	}
	return s.dur.write(n)
}

// Lost returns how the store lost durable writes, or nil.
func (s *Store) Lost() *LostWrites { return s.dur.lost }

// AcceptLoss records that the operator accepts the store as it is now
// (after a LostWrites): the marker is set back to the database's count.
func (s *Store) AcceptLoss() error {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.dur.f == nil {
		return errors.New("accepting lost writes needs a writable store")
	}
	if err := s.dur.write(s.dur.n); err != nil {
		return err
	}
	s.dur.lost = nil
	return nil
}
