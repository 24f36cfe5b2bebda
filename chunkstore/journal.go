package chunkstore

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/klauspost/compress/zstd"
)

// JournalDir is the directory, inside the store's, that holds the journal
// of a format 5 store: its database's write-ahead logs, kept once Pebble
// is done with them, and dumps of the whole database (doc.go, "The
// journal"). Rebuild makes the database again from it alone.
const JournalDir = SegmentDir + "/journal"

// JournalDumpBytes: a new dump is written once the logs kept since the
// last one exceed this or the last dump's size, whichever is larger, so
// the journal holds at most about twice the database and the logs of one
// period, and writing dumps costs at most what the logs cost. A variable
// for tests.
var JournalDumpBytes int64 = 64 << 20

const (
	dumpPrefix = "dump-"
	dumpSuffix = ".ckd"
	dumpMagic  = "ckptfs journal dump 1"
	dumpEnd    = "ckptfs journal dump end"
	// dumpBatch bounds a dump record (one batch of key/values).
	dumpBatch = 1 << 20
)

// journal keeps the database's logs and dumps in JournalDir.
type journal struct {
	fs       vfs.FS
	storeDir string
	dir      string
	// since: log bytes kept since the last dump; last: that dump's size.
	since, last atomic.Int64
	kick        chan struct{}
	stop        chan struct{}
	wg          sync.WaitGroup
	mu          sync.Mutex // one dump at a time
	err         atomic.Pointer[error]
}

func newJournal(fsys vfs.FS, storeDir string) *journal {
	return &journal{fs: fsys, storeDir: storeDir, dir: fsys.PathJoin(storeDir, JournalDir), kick: make(chan struct{}, 1)}
}

// journalFS is the store's filesystem as Pebble sees it on a writable
// open. Pebble's ArchiveCleaner moves each obsolete log and manifest into
// DIR/archive (and, unlike the default cleaner, keeps Pebble from
// recycling a log, which would overwrite it); journalFS turns that move of
// a log into a move into the journal and of anything else into a removal.
// Tables and blob files are removed by Pebble directly, never archived.
type journalFS struct {
	vfs.FS
	archive string // storeDir/archive, which never exists
	j       *journal
}

func (f journalFS) MkdirAll(dir string, perm os.FileMode) error {
	if dir == f.archive {
		return nil
	}
	return f.FS.MkdirAll(dir, perm)
}

func (f journalFS) Rename(oldname, newname string) error {
	if f.FS.PathDir(newname) != f.archive {
		return f.FS.Rename(oldname, newname)
	}
	if !strings.HasSuffix(newname, ".log") {
		return f.FS.Remove(oldname)
	}
	return f.j.keep(oldname)
}

// keep moves the log at p into the journal.
func (j *journal) keep(p string) error {
	st, err := j.fs.Stat(p)
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return j.fs.Remove(p)
	}
	if err := j.fs.MkdirAll(j.dir, 0o755); err != nil {
		return err
	}
	n, err := j.compress(p, j.fs.PathJoin(j.dir, j.fs.PathBase(p)+zstSuffix))
	if err != nil {
		return err
	}
	if err := j.fs.Remove(p); err != nil {
		return err
	}
	if err := j.fs.Remove(j.fs.PathJoin(j.dir, j.fs.PathBase(p))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := syncDir(j.fs, j.storeDir); err != nil {
		return err
	}
	if j.since.Add(n) > max(JournalDumpBytes, j.last.Load()) {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// compress writes the zstd stream of the file at src to dst (through a
// temporary name, synced) and returns the bytes written. A log holds chunk
// ids twice (locator keys, page entries) and page map blocks rewritten as
// they grow: zstd keeps about a fifth of it.
func (j *journal) compress(src, dst string) (int64, error) {
	in, err := j.fs.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	return j.writeFile(dst, func(w io.Writer) error {
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		if _, err := io.Copy(zw, in); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	})
}

// writeFile writes the journal file dst with write, through a temporary
// name, synced, and returns its size: dst exists whole or not at all.
func (j *journal) writeFile(dst string, write func(io.Writer) error) (int64, error) {
	tmp := dst + ".tmp"
	out, err := j.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: out}
	err = write(cw)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = j.fs.Rename(tmp, dst)
	}
	if err == nil {
		err = syncDir(j.fs, j.dir)
	}
	if err != nil {
		j.fs.Remove(tmp)
		return 0, err
	}
	return cw.n, nil
}

// zstSuffix ends the name of a kept log: NNNNNN.log.zst.
const zstSuffix = ".zst"

// keptNum parses a kept log's name (NNNNNN.log.zst), or returns false.
func keptNum(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, zstSuffix)
	if !ok {
		return 0, false
	}
	return logNum(s)
}

// link gives the log Pebble just created at p a second name in the journal
// (a hard link, no copy): removing the database's files then leaves the
// live log's committed batches to a rebuild. Pebble never rewrites a log
// in place (the journal's cleaner turns recycling off), and keep removes
// the link once the log is kept.
func (j *journal) link(p string) {
	if err := j.fs.MkdirAll(j.dir, 0o755); err == nil {
		err = j.fs.Link(p, j.fs.PathJoin(j.dir, j.fs.PathBase(p)))
		if err == nil || errors.Is(err, os.ErrExist) {
			return
		}
		logLimited(fmt.Sprintf("journal: linking %s: %v (a rebuild after the database is lost would miss what it holds until it is kept)", j.fs.PathBase(p), err))
	}
}

// logNum parses a log's name (NNNNNN.log), or returns false.
func logNum(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// dumpNum parses a dump's name (dump-NNNNNN.ckd), or returns false.
func dumpNum(name string) (uint64, bool) {
	s, ok := strings.CutPrefix(name, dumpPrefix)
	if !ok {
		return 0, false
	}
	if s, ok = strings.CutSuffix(s, dumpSuffix); !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

func dumpName(n uint64) string { return fmt.Sprintf("%s%06d%s", dumpPrefix, n, dumpSuffix) }

// logName is Pebble's name of log n; keptName the journal's.
func logName(n uint64) string { return fmt.Sprintf("%06d.log", n) }

func keptName(n uint64) string { return logName(n) + zstSuffix }

// listNums returns the numbers of the names in dir that parse, ascending.
func listNums[N cmp.Ordered](fsys vfs.FS, dir string, parse func(string) (N, bool)) ([]N, error) {
	names, err := fsys.List(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file") {
			return nil, nil
		}
		return nil, err
	}
	var nums []N
	for _, n := range names {
		if k, ok := parse(n); ok {
			nums = append(nums, k)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// start writes the first dump if the journal has none (a new store, one
// of format 4 or older, a rebuilt one) and starts writing the next ones
// in the background.
func (j *journal) start(db *pebble.DB) error {
	// What a crash during a compression or a dump left, and links to
	// logs kept since.
	if names, err := j.fs.List(j.dir); err == nil {
		for _, n := range names {
			_, linked := logNum(n)
			if strings.HasSuffix(n, ".tmp") || linked && slices.Contains(names, n+zstSuffix) {
				j.fs.Remove(j.fs.PathJoin(j.dir, n))
			}
		}
	}
	dumps, err := listNums(j.fs, j.dir, dumpNum)
	if err != nil {
		return err
	}
	if len(dumps) == 0 {
		if err := j.dump(db); err != nil {
			return err
		}
	} else {
		// The logs kept since the newest dump (a store that is mostly
		// closed keeps its logs at each close, when no dump runs).
		newest := dumps[len(dumps)-1]
		if st, err := j.fs.Stat(j.fs.PathJoin(j.dir, dumpName(newest))); err == nil {
			j.last.Store(st.Size())
		}
		kept, err := listNums(j.fs, j.dir, keptNum)
		if err != nil {
			return err
		}
		var since int64
		for _, n := range kept {
			if st, err := j.fs.Stat(j.fs.PathJoin(j.dir, keptName(n))); err == nil && n >= newest {
				since += st.Size()
			}
		}
		j.since.Add(since)
		if j.since.Load() > max(JournalDumpBytes, j.last.Load()) {
			select { // the loop below dumps
			case j.kick <- struct{}{}:
			default:
			}
		}
	}
	j.stop = make(chan struct{})
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		for {
			select {
			case <-j.stop:
				return
			case <-j.kick:
				if err := j.dump(db); err != nil {
					j.err.Store(&err)
					logLimited(fmt.Sprintf("journal: dump: %v (the logs are kept; tried again after the next log)", err))
				}
			}
		}
	}()
	return nil
}

// close stops the dumps; one in progress is finished first.
func (j *journal) close() {
	if j.stop != nil {
		close(j.stop)
		j.wg.Wait()
		j.stop = nil
	}
}

// dump writes every key of db, as of a snapshot, to a new dump named after
// the newest log of the database, whose records (and those of every later
// log) a rebuild applies after it; then it removes the older dumps and the
// logs before it. A rebuild may apply a log's batches that the dump
// already holds: each sets or deletes keys, so applying them again in
// order ends in the same state.
func (j *journal) dump(db *pebble.DB) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	live, err := listNums(j.fs, j.storeDir, logNum)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return errors.New("the database has no log")
	}
	from := live[len(live)-1] // the newest: every later commit is in it or after it
	since := j.since.Load()
	snap := db.NewSnapshot()
	defer snap.Close()
	if err := j.fs.MkdirAll(j.dir, 0o755); err != nil {
		return err
	}
	size, err := j.writeFile(j.fs.PathJoin(j.dir, dumpName(from)), func(w io.Writer) error {
		return writeDump(w, snap, from)
	})
	if err != nil {
		return err
	}
	j.last.Store(size)
	j.since.Add(-since)
	// The new dump and the logs from `from` on rebuild the database:
	// what came before is superseded.
	if dumps, err := listNums(j.fs, j.dir, dumpNum); err == nil {
		for _, n := range dumps {
			if n < from {
				j.fs.Remove(j.fs.PathJoin(j.dir, dumpName(n)))
			}
		}
	}
	if logs, err := listNums(j.fs, j.dir, keptNum); err == nil {
		for _, n := range logs {
			if n < from {
				j.fs.Remove(j.fs.PathJoin(j.dir, keptName(n)))
			}
		}
	}
	return syncDir(j.fs, j.dir)
}

// writeDump writes a dump: a zstd stream of records in Pebble's log
// format (package record), the first the header "ckptfs journal dump 1 <from>", then
// batches of at most 1 MiB that set every key, then "ckptfs journal dump
// end <keys>".
func writeDump(f io.Writer, snap *pebble.Snapshot, from uint64) error {
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(zw, 1<<20)
	w := record.NewWriter(bw)
	if _, err := w.WriteRecord(fmt.Appendf(nil, "%s %d", dumpMagic, from)); err != nil {
		return err
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		return err
	}
	var b pebble.Batch
	var keys int64
	flush := func() error {
		if b.Empty() {
			return nil
		}
		_, err := w.WriteRecord(b.Repr())
		b.Reset()
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			it.Close()
			return err
		}
		keys++
		if b.Len() >= dumpBatch {
			if err := flush(); err != nil {
				it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := w.WriteRecord(fmt.Appendf(nil, "%s %d", dumpEnd, keys)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// JournalUsage returns the bytes the journal's kept logs and dumps take
// (0 for a store without a journal).
func (s *Store) JournalUsage() uint64 {
	fsys, dir := s.seg.fs, s.seg.fs.PathJoin(s.seg.dir, "journal")
	names, err := fsys.List(dir)
	if err != nil {
		return 0
	}
	var n uint64
	for _, name := range names {
		if _, live := logNum(name); live {
			continue // a second name of the live log, Pebble's
		}
		if st, err := fsys.Stat(fsys.PathJoin(dir, name)); err == nil {
			n += uint64(st.Size())
		}
	}
	return n
}
