package chunkstore

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"
	"github.com/klauspost/compress/zstd"
)

// RebuildReport says what Rebuild read and where the old database went.
type RebuildReport struct {
	// Dump is the dump the rebuild started from, with the keys it set.
	Dump     string `json:"dump"`
	DumpKeys int64  `json:"dump_keys"`
	// Logs are the logs applied after it, in order, with their batches
	// and the bytes of those batches.
	Logs    []string `json:"logs"`
	Batches int64    `json:"batches"`
	Bytes   int64    `json:"bytes"`
	// Damaged names each journal file read only in part, and why: what
	// it held past the damage is not in the rebuilt database.
	Damaged []string `json:"damaged,omitempty"`
	// Aside is the directory the old database's files and the journal
	// used were moved into (nothing is deleted).
	Aside string        `json:"aside"`
	Took  time.Duration `json:"took_ns"`
}

// ErrNoJournal: the store has no complete dump in its journal (a store of
// format 4 or older never opened for writing by format 5, or a journal
// removed), so its database cannot be rebuilt.
var ErrNoJournal = errors.New("the store has no journal to rebuild from")

// DatabaseFile reports whether name is one of the database's (Pebble's)
// files in a store's directory: what Rebuild moves aside and replaces.
// The lock file is not (Rebuild holds it).
func DatabaseFile(name string) bool {
	for _, p := range []string{"MANIFEST-", "OPTIONS-", "marker.", "CURRENT", "archive"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	for _, s := range []string{".sst", ".blob", ".log", ".dbtmp"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Rebuild makes the database of the store in dir again from its journal
// (JournalDir): the newest complete dump, then every log from the dump's
// number on, archived or still in the store's directory, in order. It is
// built in dir/rebuild.tmp; then the old database's files and the journal
// files it used are moved into dir/damaged-TIME/ (nothing is deleted) and
// the new database takes their place, with a durable marker that matches
// it; then a writable open writes the rebuilt database's first dump.
// The store must not be open (ErrLocked).
func Rebuild(dir string) (RebuildReport, error) {
	start := time.Now()
	var rep RebuildReport
	fsys := vfs.Default
	if st, err := os.Stat(filepath.Join(dir, SegmentDir)); err != nil || !st.IsDir() {
		return rep, fmt.Errorf("%s: %w (no %s directory)", dir, ErrNotStore, SegmentDir)
	}
	lock, err := fsys.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		return rep, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	defer func() {
		if lock != nil {
			lock.Close()
		}
	}()
	jdir := filepath.Join(dir, JournalDir)
	dumps, err := listNums(fsys, jdir, dumpNum)
	if err != nil {
		return rep, err
	}
	tmp := filepath.Join(dir, "rebuild.tmp")
	db, err := openEmpty(tmp)
	if err != nil {
		return rep, err
	}
	defer func() {
		if db != nil {
			db.Close()
			os.RemoveAll(tmp)
		}
	}()
	// The newest dump that reads whole; an older one (the dump before a
	// crash during a new dump's removal of it) with the logs after it
	// does as well.
	var from uint64
	found := false
	var dumpErrs []string
	for i := len(dumps) - 1; i >= 0 && !found; i-- {
		name := dumpName(dumps[i])
		keys, err := applyDump(db, filepath.Join(jdir, name), dumps[i])
		if err != nil {
			dumpErrs = append(dumpErrs, fmt.Sprintf("%s: %v", name, err))
			// Start again from an empty database.
			db.Close()
			if db, err = openEmpty(tmp); err != nil {
				return rep, err
			}
			continue
		}
		found, from = true, dumps[i]
		rep.Dump, rep.DumpKeys = filepath.Join(JournalDir, name), keys
	}
	rep.Damaged = append(rep.Damaged, dumpErrs...)
	if !found {
		if len(dumpErrs) > 0 {
			return rep, fmt.Errorf("%s: %w: every dump is damaged (%s)", dir, ErrNoJournal, strings.Join(dumpErrs, "; "))
		}
		return rep, fmt.Errorf("%s: %w", dir, ErrNoJournal)
	}
	type logFile struct {
		num  uint64
		path string
		kept bool // compressed in the journal
	}
	var logs []logFile
	kept, err := listNums(fsys, jdir, keptNum)
	if err != nil {
		return rep, err
	}
	for _, n := range kept {
		logs = append(logs, logFile{n, filepath.Join(jdir, keptName(n)), true})
	}
	// The live logs: linked into the journal when Pebble made them, and
	// in the store's directory if they are still there.
	linked, err := listNums(fsys, jdir, logNum)
	if err != nil {
		return rep, err
	}
	for _, n := range linked {
		logs = append(logs, logFile{n, filepath.Join(jdir, logName(n)), false})
	}
	live, _ := listNums(fsys, dir, logNum) // a damaged directory may hold none
	for _, n := range live {
		logs = append(logs, logFile{n, filepath.Join(dir, logName(n)), false})
	}
	slices.SortStableFunc(logs, func(a, b logFile) int { return cmp.Compare(a.num, b.num) })
	// A log kept in the journal and still in the directory (a crash
	// before its removal there) is read once.
	logs = slices.CompactFunc(logs, func(a, b logFile) bool { return a.num == b.num })
	logs = slices.DeleteFunc(logs, func(l logFile) bool { return l.num < from })
	unpacked := filepath.Join(dir, "rebuild.logs")
	defer os.RemoveAll(unpacked)
	for i, l := range logs {
		rel, _ := filepath.Rel(dir, l.path)
		rep.Logs = append(rep.Logs, rel)
		ldir := filepath.Dir(l.path)
		if l.kept {
			if err := unpackLog(l.path, filepath.Join(unpacked, logName(l.num))); err != nil {
				rep.Damaged = append(rep.Damaged, fmt.Sprintf("%s: %s", rel, OneLine(err.Error())))
				continue
			}
			ldir = unpacked
		}
		batches, n, err := applyLog(db, ldir, l.num)
		rep.Batches += batches
		rep.Bytes += n
		// A torn tail of the newest log is what a crash leaves; anywhere
		// else it is damage, said, and the rest goes on.
		if err != nil && (i < len(logs)-1 || !record.IsInvalidRecord(err) && !errors.Is(err, io.ErrUnexpectedEOF)) {
			rep.Damaged = append(rep.Damaged, fmt.Sprintf("%s: %s", rel, OneLine(err.Error())))
		}
		os.RemoveAll(unpacked)
	}
	// The durable marker says how many durable commits the database has
	// seen: set it to what the rebuilt one holds.
	durableN, err := dbDurable(db)
	if err != nil {
		return rep, fmt.Errorf("rebuild: %w", err)
	}
	if _, err := StoredFormat(db); err != nil {
		return rep, fmt.Errorf("rebuild: the journal does not hold a store: %w", err)
	}
	if err := db.Flush(); err != nil {
		return rep, err
	}
	err = db.Close()
	db = nil
	if err != nil {
		os.RemoveAll(tmp)
		return rep, err
	}

	// Swap: the old database's files and the journal used go aside.
	aside := filepath.Join(dir, "damaged-"+start.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(filepath.Join(aside, "journal"), 0o700); err != nil {
		return rep, err
	}
	rep.Aside = aside
	names, err := os.ReadDir(dir)
	if err != nil {
		return rep, err
	}
	for _, e := range names {
		if DatabaseFile(e.Name()) {
			if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(aside, e.Name())); err != nil {
				return rep, err
			}
		}
	}
	jnames, _ := os.ReadDir(jdir)
	for _, e := range jnames {
		if err := os.Rename(filepath.Join(jdir, e.Name()), filepath.Join(aside, "journal", e.Name())); err != nil {
			return rep, err
		}
	}
	tnames, err := os.ReadDir(tmp)
	if err != nil {
		return rep, err
	}
	for _, e := range tnames {
		if e.Name() == "LOCK" {
			continue
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return rep, err
		}
	}
	if err := os.RemoveAll(tmp); err != nil {
		return rep, err
	}
	if err := os.WriteFile(filepath.Join(dir, DurableFile), encodeMarker(durableN), 0o600); err != nil {
		return rep, err
	}
	for _, d := range []string{dir, aside, jdir} {
		if err := syncDir(fsys, d); err != nil {
			return rep, err
		}
	}
	// A writable open gives the rebuilt store its first dump.
	lock.Close()
	lock = nil
	s, err := Open(dir, DefaultOptions())
	if err != nil {
		return rep, fmt.Errorf("open after rebuild: %w", err)
	}
	if err := s.Close(); err != nil {
		return rep, err
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// openEmpty opens a new, empty database at dir (removing what is there).
func openEmpty(dir string) (*pebble.DB, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	return db, nil
}

// unpackLog decompresses the kept log at src into dst.
func unpackLog(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := zstd.NewReader(in, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, io.LimitReader(zr, maxLogBytes+1))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > maxLogBytes {
		err = fmt.Errorf("unpacks to more than %d bytes: no log ckptfs keeps is that large", maxLogBytes)
	}
	return err
}

// maxLogBytes and maxLogRecord bound what a rebuild takes from one log:
// a kept log is unpacked to disk, a committed batch read into memory. A
// store writes logs of a memtable's size and batches of a few MiB (a
// writer's or gc's 4 MiB at most), so a log or record past these is
// damage, or crafted, and is named as such rather than filling the disk
// or the memory.
var (
	maxLogBytes  int64 = 4 << 30
	maxLogRecord int64 = 256 << 20
)

// applyLog commits, in order, every batch of log num in ldir to db and
// returns how many and their bytes.
func applyLog(db *pebble.DB, ldir string, num uint64) (int64, int64, error) {
	logs, err := wal.Scan(wal.Dir{FS: vfs.Default, Dirname: ldir})
	if err != nil {
		return 0, 0, err
	}
	ll, ok := logs.Get(wal.NumWAL(num))
	if !ok {
		return 0, 0, fmt.Errorf("log %06d not found", num)
	}
	r := ll.OpenForRead()
	defer r.Close()
	var batches, bytes int64
	for {
		rec, _, err := r.NextRecord()
		if err == io.EOF {
			return batches, bytes, nil
		}
		if err != nil {
			return batches, bytes, err
		}
		data, err := io.ReadAll(io.LimitReader(rec, maxLogRecord+1))
		if err != nil {
			return batches, bytes, err
		}
		if int64(len(data)) > maxLogRecord {
			return batches, bytes, fmt.Errorf("batch %d: a record of more than %d bytes, larger than any the store commits", batches+1, maxLogRecord)
		}
		if err := applyRepr(db, data); err != nil {
			return batches, bytes, err
		}
		batches++
		bytes += int64(len(data))
	}
}

// applyDump sets every key of the dump at p into db and returns how many.
func applyDump(db *pebble.DB, p string, from uint64) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	defer zr.Close()
	return readDump(zr, from, func(repr []byte) error { return applyRepr(db, repr) })
}

// applyRepr commits a batch's encoding (a log's or a dump's record) into
// db. The log's sequence number is cleared first: Pebble numbers the batch
// itself, and a batch past half a memtable (gc's are up to 4 MiB), which
// Pebble commits as a flushable batch, must come without one (Pebble
// panics on a flushable batch whose number is already set).
func applyRepr(db *pebble.DB, repr []byte) error {
	if len(repr) < batchHeaderLen {
		return fmt.Errorf("a batch of %d bytes: shorter than its header", len(repr))
	}
	binary.LittleEndian.PutUint64(repr[:8], 0)
	b := db.NewBatch()
	defer b.Close()
	if err := b.SetRepr(repr); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// batchHeaderLen is a Pebble batch encoding's header: sequence number (8,
// little-endian) and count (4).
const batchHeaderLen = 12

// readDump decodes the records of a dump (decompressed) taken at log
// from, checks that each middle record is a batch of sets that decodes
// whole, passes it to apply, and returns the keys set.
func readDump(zr io.Reader, from uint64, apply func(repr []byte) error) (int64, error) {
	r := record.NewReader(zr, 0)
	next := func() ([]byte, error) {
		rec, err := r.Next()
		if err != nil {
			return nil, err
		}
		return io.ReadAll(io.LimitReader(rec, 4*dumpBatch))
	}
	head, err := next()
	if err != nil {
		return 0, err
	}
	if want := fmt.Sprintf("%s %d", dumpMagic, from); string(head) != want {
		return 0, fmt.Errorf("header %q, want %q", head, want)
	}
	var keys int64
	for {
		data, err := next()
		if err == io.EOF {
			return keys, errors.New("cut short (no end record)")
		}
		if err != nil {
			return keys, err
		}
		if end, ok := bytes.CutPrefix(data, []byte(dumpEnd+" ")); ok {
			if want := fmt.Sprint(keys); string(end) != want {
				return keys, fmt.Errorf("end record says %s keys, read %s", end, want)
			}
			return keys, nil
		}
		var b pebble.Batch
		if err := b.SetRepr(data); err != nil {
			return keys, err
		}
		br := b.Reader()
		n := 0
		for {
			kind, _, _, ok, err := br.Next()
			if err != nil {
				return keys, fmt.Errorf("batch %d: %w", keys, err)
			}
			if !ok {
				break
			}
			if kind != pebble.InternalKeyKindSet {
				return keys, fmt.Errorf("batch holds a %v, a dump only sets", kind)
			}
			n++
		}
		if n != int(b.Count()) {
			return keys, fmt.Errorf("batch says %d keys, holds %d", b.Count(), n)
		}
		if err := apply(data); err != nil {
			return keys, err
		}
		keys += int64(n)
	}
}
