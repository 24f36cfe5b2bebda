package chunkstore

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	lru "github.com/hashicorp/golang-lru/v2"
)

// FormatVersion is the version of the on-disk format described in doc.go.
// Bump it on any incompatible change of any key or value encoding.
const FormatVersion = 4

// UpgradableFormat is the oldest format version Open accepts: package index
// upgrades a store of that version on its first read-write open (see its
// docs), and reads it as is when read-only.
const UpgradableFormat = 1

// MaxChunkSize bounds a chunk's plain size; decoders refuse larger values.
const MaxChunkSize = 16 << 20

// Key prefixes. Part of the on-disk format: never change or reuse one.
const (
	PrefixMeta  = 0x00 // store-wide metadata, e.g. the format version
	PrefixChunk = 'c'  // chunk values inline (format 1 and 2; moved to segments by the upgrade)
	PrefixLoc   = 'C'  // chunk locators (format 3), owned by this package
	// 'B', 'd', 'e', 'g', 'G', 'i', 'l', 'L', 'm', 'o', 'P', 'Q', 'r', 's', 'x', 'y' are owned by
	// package index; see its docs.
)

var (
	formatKey   = []byte("\x00format")
	formatMagic = "ckptfs"
)

// Errors. ErrCorrupt marks data that failed verification; it is never
// returned together with data.
var (
	ErrNotFound = errors.New("chunk not found")
	ErrCorrupt  = errors.New("corrupt chunk")
	ErrFormat   = errors.New("unsupported store format")
	ErrLocked   = errors.New("store is in use by another process")
	ErrNotStore = errors.New("not a ckptfs store")
	// ErrDamaged: a file of the store's database (a WAL, table, blob or
	// manifest) fails its checks, so the store cannot be opened.
	ErrDamaged = errors.New("the store's files are damaged")
)

// damaged reports whether err from Pebble says a file of the database is
// damaged (rather than, say, missing permissions).
func damaged(err error) bool {
	if errors.Is(err, pebble.ErrCorruption) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"replaying WAL", "corrupt", "checksum", "unexpected EOF", "invalid", "unknown", "mismatch"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func hasManifest(fsys vfs.FS, dir string) bool {
	names, _ := fsys.List(dir)
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") {
			return true
		}
	}
	return false
}

// Options configures Open.
type Options struct {
	// FS is the filesystem Pebble runs on; nil means the real disk.
	FS vfs.FS
	// Codec compresses new chunks. Existing chunks keep theirs.
	Codec Codec
	// ValueSeparation stores chunk values in Pebble blob files so that
	// compactions move keys, not chunk bytes.
	ValueSeparation bool
	// ReadOnly opens the store read-only.
	ReadOnly bool
	// CacheBytes is Pebble's block cache size; MemTableBytes its memtable size.
	CacheBytes, MemTableBytes int64
	// TableBytes, if set, is the target size of Pebble's tables at every
	// level (Pebble's defaults otherwise; tests make many small tables).
	TableBytes int64
	// Logger receives Pebble's messages; nil discards informational ones.
	Logger pebble.Logger
	// AllowLost opens a writable store that lost durable writes (see
	// DurableFile) instead of failing with *LostWrites: for fsck, which
	// reports it and, repairing, accepts the loss. A read-only open always
	// succeeds and reports it through Lost.
	AllowLost bool
	// NoKnownFilter turns off the in-memory filter of stored chunk ids
	// (see known): every dedup check of a new chunk asks Pebble. For
	// benchmarks that measure the filter.
	NoKnownFilter bool
}

// DefaultOptions are the options ckptfs mounts with. See the README for the
// measurements behind them.
func DefaultOptions() Options {
	return Options{Codec: CodecS2, ValueSeparation: true, CacheBytes: 32 << 20, MemTableBytes: 32 << 20}
}

// Store keeps chunks in a Pebble database. It is safe for concurrent use.
// The same database holds the index (package index) under other prefixes; the
// store owns the database and its format version.
type Store struct {
	db    *pebble.DB
	codec Codec
	// recent remembers chunks put in batches that may not be applied yet, so
	// a chunk that repeats within a stream is encoded only once, and where
	// recently written or looked-up chunks are (for Batch.SetHinted).
	// a chunk that repeats within a stream is encoded only once.
	recent *lru.Cache[ID, locator]
	// known answers "not stored" for new chunks without a Pebble Get.
	known known

	// pins counts, per chunk, the writers that decided to reference it
	// (Prepare) and have not applied that reference yet (Unpin). Sweep
	// never deletes a pinned chunk; mu orders pinning against sweeping.
	mu     sync.Mutex
	pins   map[ID]int
	tagKey []byte // see TagKey
	// degraded: opened read-only past tables the MANIFEST lists that are
	// damaged (see DamagedRanges).
	degraded bool
	// touched holds the chunks pinned since BeginMark (nil: no mark).
	touched map[ID]struct{}

	dmu      sync.Mutex // orders durable commits and marker writes
	dur      *durable
	readOnly bool
	damage   *damage
	space    *space
	seg      *segments
	// inline is set while the store may hold chunk values inline (format 1
	// or 2, read-only or not yet upgraded): lookups then try them too.
	inline bool
	// gcMu orders Sweep against Compact: a segment is rewritten from
	// locators no sweep is deleting meanwhile.
	gcMu sync.Mutex
}

// damage collects the database files Pebble found damaged while reading.
type damage struct {
	mu    sync.Mutex
	files map[string]string // path -> what was wrong
}

func (d *damage) add(path, detail string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.files[path]; !ok {
		d.files[path] = detail
	}
}

// DamagedFiles returns the database files found damaged since Open, with
// what was wrong with each. Reads of what they hold fail with ErrCorrupt.
func (s *Store) DamagedFiles() map[string]string {
	s.damage.mu.Lock()
	defer s.damage.mu.Unlock()
	out := make(map[string]string, len(s.damage.files))
	for k, v := range s.damage.files {
		out[k] = v
	}
	return out
}

// badTable matches a line of Pebble's consistency check at open: a table
// the MANIFEST lists that is missing or not the size it says.
var badTable = regexp.MustCompile(`^L\d+: (\d+): .*(object size mismatch|unknown to the objstorage provider)`)

// badTables returns, by file number, the tables err (from pebble.Open)
// says are missing or the wrong size.
func badTables(err error) map[string]string {
	if err == nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(err.Error(), "\n") {
		if m := badTable.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			out[m[1]] = line
		}
	}
	return out
}

// Degraded reports whether the store was opened (read-only) past damaged
// tables: what they held is unreadable, the rest is served.
func (s *Store) Degraded() bool { return s.degraded }

// KeyRange is a range of keys, both ends included.
type KeyRange struct{ Smallest, Largest []byte }

// DamagedRanges returns the key ranges of the database's tables found
// damaged (at open, or by a read since): reads of keys in them may fail,
// and a scan may skip them to read the rest.
func (s *Store) DamagedRanges() []KeyRange {
	files := s.DamagedFiles()
	if len(files) == 0 {
		return nil
	}
	bad := map[string]bool{}
	for f := range files {
		bad[filepath.Base(f)] = true
	}
	levels, err := s.db.SSTables()
	if err != nil {
		return nil
	}
	var out []KeyRange
	for _, level := range levels {
		for _, t := range level {
			if bad[fmt.Sprintf("%s.sst", t.FileNum)] {
				out = append(out, KeyRange{Smallest: append([]byte(nil), t.Smallest.UserKey...), Largest: append([]byte(nil), t.Largest.UserKey...)})
			}
		}
	}
	return out
}

// quietLogger drops Pebble's informational messages and sends errors to the
// process's standard logger, which the daemon configures: one line each
// (Pebble's errors carry multi-line stack traces), and a message repeated
// within a minute is counted, not printed again (a full disk makes Pebble
// retry the same failing flush over and over).
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Errorf(f string, a ...any) { logLimited("pebble: " + OneLine(fmt.Sprintf(f, a...))) }
func (quietLogger) Fatalf(f string, a ...any) {
	msg := "pebble: " + OneLine(fmt.Sprintf(f, a...))
	log.Print(msg)
	if h := FatalHook; h != nil {
		h(msg)
	}
	os.Exit(exitFatal)
}

// FatalHook, if set, runs when the database meets an error it cannot go on
// from, just before the process exits (the daemon unmounts there).
var FatalHook func(msg string)

const exitFatal = 1

// OneLine keeps the first line of a message (Pebble's errors carry stack
// traces and detail lines after it).
func OneLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " (...)"
	}
	return s
}

// Limiter drops a log message that repeats the previous one within a
// minute, numbers aside (Pebble retries a failing flush into new files; a
// reader retries the same damaged chunk at other offsets), and says how
// many it dropped when the next different message comes.
type Limiter struct {
	mu       sync.Mutex
	last     string
	at       time.Time
	repeated int
}

// Print logs msg to l (the standard logger if nil) unless it repeats.
func (lim *Limiter) Print(l *log.Logger, msg string) {
	if l == nil {
		l = log.Default()
	}
	lim.mu.Lock()
	defer lim.mu.Unlock()
	now := time.Now()
	key := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, msg)
	if key == lim.last && now.Sub(lim.at) < time.Minute {
		lim.repeated++
		return
	}
	if lim.repeated > 0 {
		l.Printf("(the previous message repeated %d times)", lim.repeated)
	}
	lim.last, lim.at, lim.repeated = key, now, 0
	l.Print(msg)
}

var pebbleLog Limiter

func logLimited(msg string) { pebbleLog.Print(nil, msg) }

// Open opens or creates the store in dir.
//
// A writable open of an existing store opens it read-only first and checks
// its durable marker (see DurableFile): Pebble's writable open replays the
// write-ahead log into tables and deletes it, which would make a loss
// permanent before anyone could see it.
func Open(dir string, o Options) (*Store, error) {
	fsys := o.FS
	if fsys == nil {
		fsys = vfs.Default
		if err := checkDir(dir, o.ReadOnly); err != nil {
			return nil, err
		}
	}
	if !o.ReadOnly && !o.AllowLost && hasManifest(fsys, dir) {
		ro := o
		ro.ReadOnly = true
		s, err := Open(dir, ro)
		if err != nil {
			return nil, err
		}
		lost := s.Lost()
		if err := s.Close(); err != nil {
			return nil, err
		}
		if lost != nil {
			return nil, fmt.Errorf("%s: %w", dir, lost)
		}
	}
	if o.FS == nil {
		// Each memtable costs its size in WAL (preallocated) and again when
		// flushed: on a small disk they must be small (see Space).
		var st syscall.Statfs_t
		if syscall.Statfs(dir, &st) == nil && st.Blocks > 0 { // ramfs reports no size
			if limit := max(4<<20, int64(st.Blocks)*st.Bsize/64); o.MemTableBytes > limit {
				o.MemTableBytes = limit
			}
		}
	}
	pfs := fsys
	if o.ReadOnly && o.FS == nil {
		pfs = sharedLockFS{fsys}
	}
	po := &pebble.Options{
		FS:                          pfs,
		ReadOnly:                    o.ReadOnly,
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                uint64(o.MemTableBytes),
		MemTableStopWritesThreshold: 4,
		Logger:                      o.Logger,
	}
	if po.Logger == nil {
		po.Logger = quietLogger{}
	}
	dmg := &damage{files: map[string]string{}}
	// Pebble's default for a damaged file is Fatalf: the read that found it
	// fails with a corruption error anyway, which is what the caller gets
	// (EIO through the mount); the daemon stays up.
	po.EventListener = &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
		detail := OneLine(fmt.Sprint(info.Details))
		dmg.add(info.Path, detail)
		logLimited(fmt.Sprintf("pebble: damaged file %s: %s", info.Path, detail))
	}}
	if o.CacheBytes > 0 {
		c := pebble.NewCache(o.CacheBytes)
		defer c.Unref()
		po.Cache = c
	}
	if o.ValueSeparation {
		po.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{
				Enabled:     true,
				MinimumSize: 1024,
				// Chunk keys are hashes: every table overlaps every blob
				// file, so a small depth makes compactions rewrite chunk
				// bytes. 1000 measured write-amp 3.0 vs 4.0 at 10 (README).
				MaxBlobReferenceDepth: 1000,
				RewriteMinimumAge:     0,
				TargetGarbageRatio:    0.01, // garbage is what gc deleted: give it back soon
			}
		}
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if o.TableBytes > 0 {
		for i := range po.TargetFileSizes {
			po.TargetFileSizes[i] = o.TableBytes
		}
	}
	// Pebble holds metadata only (chunk bytes are in segments). Its own
	// compression: "Balanced" (zstd for the bottom levels) wrote exactly as
	// many bytes as "Fastest" on BenchmarkLayout's 512 MiB series.
	po.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	po.EnsureDefaults()
	realDir := ""
	if o.FS == nil {
		realDir = dir
	}
	sp := newSpace(realDir)
	if !o.ReadOnly {
		// Opening flushes what the WAL holds: on a full disk it needs the
		// reserve.
		sp.release()
	}
	db, err := pebble.Open(dir, po)
	degraded := false
	if tables := badTables(err); o.ReadOnly && len(tables) > 0 {
		// Tables the MANIFEST lists are missing or the wrong size (cut
		// short): open without that check, so that everything else is
		// served; reads of what they held fail (DamagedRanges).
		missing := map[string]bool{}
		for num, line := range tables {
			dmg.add(filepath.Join(dir, num+".sst"), line)
			if strings.Contains(line, "unknown to the objstorage provider") {
				missing[num+".sst"] = true
			}
		}
		if len(missing) > 0 {
			po.FS = missingTablesFS{FS: po.FS, missing: missing}
		}
		po.DisableConsistencyCheck = true
		db, err = pebble.Open(dir, po)
		degraded = err == nil
	}
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		if damaged(err) {
			return nil, fmt.Errorf("open store %s: %w: %s", dir, ErrDamaged, OneLine(err.Error()))
		}
		return nil, fmt.Errorf("open store %s: %s", dir, OneLine(err.Error()))
	}
	if err := checkFormat(db, o.ReadOnly); err != nil {
		closeDB(db)
		if damaged(err) {
			return nil, fmt.Errorf("%s: %w: %s", dir, ErrDamaged, OneLine(err.Error()))
		}
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	dur, err := openDurable(fsys, dir, db, o.ReadOnly)
	if err != nil {
		closeDB(db)
		if damaged(err) {
			return nil, fmt.Errorf("%s: %w: %s", dir, ErrDamaged, OneLine(err.Error()))
		}
		return nil, fmt.Errorf("%s: durable marker: %w", dir, err)
	}
	if dur.lost != nil && !o.ReadOnly && !o.AllowLost {
		dur.close()
		db.Close()
		return nil, fmt.Errorf("%s: %w", dir, dur.lost)
	}
	seg, err := openSegments(fsys, dir, o.ReadOnly)
	if err != nil {
		dur.close()
		closeDB(db)
		return nil, fmt.Errorf("%s: segments: %w", dir, err)
	}
	recent, _ := lru.New[ID, locator](1 << 16)
	sp.unflush = func() int64 { return int64(db.Metrics().MemTable.Size) }
	s := &Store{db: db, codec: o.Codec, recent: recent, pins: map[ID]int{}, dur: dur, readOnly: o.ReadOnly, damage: dmg, space: sp, seg: seg, degraded: degraded}
	if ver, err := StoredFormat(db); err != nil || ver < 3 {
		s.inline = true
	}
	if s.tagKey, err = loadTagKey(db, o.ReadOnly); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: tag key: %w", dir, err)
	}
	if !o.ReadOnly {
		if err := s.upgradeInline(); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: format upgrade: %w", dir, err)
		}
		s.RestoreReserve() // ErrNoSpace: not now; gc tries again
		if !o.NoKnownFilter {
			s.known.start(s)
		}
	}
	return s, nil
}

// checkDir refuses a non-empty directory that holds no Pebble database, so a
// typo cannot scatter a store over someone's files.
func checkDir(dir string, readOnly bool) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		if readOnly {
			return fmt.Errorf("%s: %w (no such directory)", dir, ErrNotStore)
		}
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		if readOnly {
			return fmt.Errorf("%s: %w (empty directory)", dir, ErrNotStore)
		}
		return nil
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "OPTIONS-") || strings.HasPrefix(e.Name(), "MANIFEST-") {
			return nil
		}
	}
	return fmt.Errorf("%s: %w (directory is not empty and holds no store)", filepath.Clean(dir), ErrNotStore)
}

func checkFormat(db *pebble.DB, readOnly bool) error {
	v, closer, err := db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		empty := !it.First()
		it.Close()
		if !empty {
			return fmt.Errorf("%w: no format version key", ErrNotStore)
		}
		if readOnly {
			return fmt.Errorf("%w: empty database", ErrNotStore)
		}
		return db.Set(formatKey, fmt.Appendf(nil, "%s %d", formatMagic, FormatVersion), pebble.Sync)
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	var magic string
	var ver int
	if _, err := fmt.Sscanf(string(v), "%s %d", &magic, &ver); err != nil || magic != formatMagic {
		return fmt.Errorf("%w: format key holds %q", ErrNotStore, v)
	}
	if ver < UpgradableFormat || ver > FormatVersion {
		return fmt.Errorf("%w: store has format version %d, this ckptfs reads version %d", ErrFormat, ver, FormatVersion)
	}
	return nil
}

// StoredFormat returns the format version recorded in db.
func StoredFormat(db *pebble.DB) (int, error) {
	v, closer, err := db.Get(formatKey)
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	var magic string
	var ver int
	if _, err := fmt.Sscanf(string(v), "%s %d", &magic, &ver); err != nil || magic != formatMagic {
		return 0, fmt.Errorf("%w: format key holds %q", ErrNotStore, v)
	}
	return ver, nil
}

// SetCurrentFormat records, in b, that the store is in FormatVersion.
func SetCurrentFormat(b *pebble.Batch) error { return setFormat(b, FormatVersion) }

// setFormat records, in b, that the store is in format version v.
func setFormat(b *pebble.Batch, v int) error {
	return b.Set(formatKey, fmt.Appendf(nil, "%s %d", formatMagic, v), nil)
}

// DB returns the underlying database, shared with package index.
func (s *Store) DB() *pebble.DB { return s.db }

// Close closes the database. A writable store first flushes its memtables
// into tables and makes that durable, so that after a clean close nothing
// committed depends on replaying the write-ahead log.
//
// A clean close also removes what only a mounted store needs on disk: the
// reserve file (written again at the next open) and the WAL files Pebble
// keeps for recycling, which every table now makes obsolete. After it the
// store's directory holds its data, not its overheads.
func (s *Store) Close() error {
	s.known.stop()
	var err error
	if !s.readOnly {
		s.space.drop() // the flush below needs room on a full disk
		if err = s.db.Flush(); err == nil {
			err = s.CommitDurable(s.db.NewBatch())
		}
		if err == nil {
			err = s.db.Flush()
		}
	}
	// Nothing live left in the WAL: its newest file (a recycled one, with
	// an older log's stale bytes) can go empty once the database is closed.
	emptyWAL := err == nil && !s.readOnly && s.db.Metrics().WAL.Size == 0
	if cerr := s.seg.close(); err == nil {
		err = cerr
	}
	if cerr := s.dur.close(); err == nil {
		err = cerr
	}
	if cerr := closeDB(s.db); err == nil {
		err = cerr
	}
	if err == nil && !s.readOnly {
		err = s.space.dropRecycledLogs(emptyWAL)
	}
	return err
}

func chunkKey(id ID) []byte {
	k := make([]byte, 1+IDSize)
	k[0] = PrefixChunk
	copy(k[1:], id[:])
	return k
}

func locKey(id ID) []byte {
	k := make([]byte, 1+IDSize)
	k[0] = PrefixLoc
	copy(k[1:], id[:])
	return k
}

// where finds chunk id: its locator, or (a store not yet upgraded from
// format 2) its inline value, copied. found is false if it is absent.
func (s *Store) where(id ID) (l locator, inline []byte, found bool, err error) {
	defer guard(&err)
	v, closer, err := s.db.Get(locKey(id))
	if err == nil {
		l, err = decodeLocator(v)
		closer.Close()
		return l, nil, err == nil, err
	}
	if !errors.Is(err, pebble.ErrNotFound) || !s.inline {
		return l, nil, false, notFoundNil(err)
	}
	v, closer, err = s.db.Get(chunkKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return l, nil, false, nil
	}
	if err != nil {
		return l, nil, false, err
	}
	defer closer.Close()
	return l, bytes.Clone(v), true, nil
}

// notFoundNil is err, or nil for ErrNotFound.
func notFoundNil(err error) error {
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	}
	return err
}

// Has reports whether the chunk is stored. A point lookup: the bloom
// filters answer for absent chunks without reading tables.
func (s *Store) Has(id ID) (bool, error) {
	_, _, ok, err := s.where(id)
	return ok, err
}

// Put adds data as a chunk to batch b unless it is already stored, and
// returns its ID and the number of value bytes added (0 for a duplicate).
// The chunk is durable once b is committed with sync, or a later synced
// batch is.
func (s *Store) Put(b *Batch, data []byte) (ID, int, error) {
	id := Sum(data)
	n, err := s.PutID(b, id, data)
	return id, n, err
}

// PutID is Put for a caller that already computed id = Sum(data).
func (s *Store) PutID(b *Batch, id ID, data []byte) (int, error) {
	v, err := s.Prepare(nil, id, data)
	if err != nil || v == nil {
		return 0, err
	}
	return len(v), s.SetPrepared(b, id, v)
}

// Prepare is the part of PutID that needs no batch, so that it can run
// concurrently with other work: it returns the encoded value of data
// (appended to dst) or nil if the chunk is stored already or was prepared
// before. The caller passes a non-nil value to SetPrepared.
//
// Prepare (and so Put and PutID) pins id: Sweep will not delete the chunk
// until the caller calls Unpin, which it does once the batch that records
// its reference to the chunk is applied (or dropped).
func (s *Store) Prepare(dst []byte, id ID, data []byte) ([]byte, error) {
	if len(data) > MaxChunkSize {
		return nil, fmt.Errorf("chunk of %d bytes exceeds the maximum %d", len(data), MaxChunkSize)
	}
	s.Pin(id)
	if s.recent.Contains(id) {
		return nil, nil
	}
	if !s.known.mayHold(id) {
		s.recent.Add(id, locator{}) // not known yet, as where would say
		return encodeValue(dst, s.codec, data), nil
	}
	l, _, ok, err := s.where(id)
	if err != nil {
		return nil, err
	}
	s.recent.Add(id, l) // the zero locator if absent (or inline): not known yet
	if ok {
		return nil, nil
	}
	return encodeValue(dst, s.codec, data), nil
}

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

// SetPrepared adds a value from Prepare to batch b.
func (s *Store) SetPrepared(b *Batch, id ID, value []byte) error {
	b.addRecord(id, value)
	return nil
}

// Get returns the chunk's plain content appended to dst. A missing chunk
// is ErrNotFound, one that fails its checks is ErrCorrupt; both errors name
// the chunk. A chunk in a segment is checked by its record's CRC-32C and
// id (the bytes are the ones written for that chunk); an inline chunk (a
// format 2 store read as it is) and every chunk that Verify reads are
// re-hashed. See doc.go.
func (s *Store) Get(dst []byte, id ID) ([]byte, error) {
	v, inline, err := s.value(id)
	if err != nil {
		return nil, err
	}
	if inline {
		return verify(dst, id, v)
	}
	return decodeChecked(dst, id, v)
}

// decodeChecked decodes a value whose record passed its checks.
func decodeChecked(dst []byte, id ID, v []byte) ([]byte, error) {
	out, err := decodeValue(dst, v)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %v", id, ErrCorrupt, err)
	}
	return out, nil
}

// value returns chunk id's encoded value, and whether it was inline.
func (s *Store) value(id ID) ([]byte, bool, error) {
	for try := 0; ; try++ {
		l, inline, ok, err := s.where(id)
		if err != nil {
			if damaged(err) {
				return nil, false, fmt.Errorf("chunk %s: %w: %s", id, ErrCorrupt, OneLine(err.Error()))
			}
			return nil, false, fmt.Errorf("chunk %s: %w", id, err)
		}
		if !ok {
			return nil, false, fmt.Errorf("chunk %s: %w", id, ErrNotFound)
		}
		if inline != nil {
			return inline, true, nil
		}
		v, err := s.readRecord(id, l)
		if err != nil && try == 0 {
			// Compact may have moved the chunk and removed the segment
			// since the lookup: look again.
			if l2, _, ok, _ := s.where(id); ok && l2 != l {
				continue
			}
		}
		return v, false, err
	}
}

// readRecord reads the record at l and returns its value, checking that
// it is chunk id's.
func (s *Store) readRecord(id ID, l locator) ([]byte, error) {
	rec, err := s.seg.read(nil, l)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	rid, v, n, err := parseRecord(rec)
	if err != nil || n != l.n || rid != id {
		return nil, fmt.Errorf("chunk %s: %w: segment %d at %d holds no record of it", id, ErrCorrupt, l.seg, l.off)
	}
	return v, nil
}

func verify(dst []byte, id ID, v []byte) ([]byte, error) {
	start := len(dst)
	out, err := decodeValue(dst, v)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w: %v", id, ErrCorrupt, err)
	}
	if Sum(out[start:]) != id {
		return nil, fmt.Errorf("chunk %s: %w: content hashes to %s", id, ErrCorrupt, Sum(out[start:]))
	}
	return out, nil
}

// Delete removes a chunk in batch b; its record's space comes back with
// Compact only if Sweep deletes it. Only repairs call it.
func (s *Store) Delete(b *pebble.Batch, id ID) error {
	s.recent.Remove(id)
	return s.deleteKeys(b, id)
}

// Info describes a stored chunk without its content.
type Info struct {
	ID     ID
	Stored int // bytes of the encoded value
	Plain  int // bytes of plain content; set by Verify only
}

// Walk calls fn for every stored chunk, without reading chunk bytes.
func (s *Store) Walk(fn func(Info) error) error {
	return s.each(func(id ID, l locator, it *pebble.Iterator) error {
		inf := Info{ID: id, Stored: l.n}
		if it != nil {
			lv := it.LazyValue()
			inf.Stored = lv.Len()
		}
		return fn(inf)
	})
}

// each calls fn for every chunk: with its locator, or with the iterator
// positioned at its inline value (a format 2 store opened read-only).
func (s *Store) each(fn func(id ID, l locator, inline *pebble.Iterator) error) error {
	for _, p := range []byte{PrefixLoc, PrefixChunk} {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			var id ID
			if len(it.Key()) != 1+IDSize {
				it.Close()
				return fmt.Errorf("%w: chunk key %x has wrong length", ErrCorrupt, it.Key())
			}
			copy(id[:], it.Key()[1:])
			var l locator
			var inline *pebble.Iterator
			if p == PrefixLoc {
				v, err := iterValue(it)
				if err == nil {
					l, err = decodeLocator(v)
				}
				if err != nil {
					it.Close()
					return fmt.Errorf("chunk %s: %w", id, err)
				}
			} else {
				inline = it
			}
			if err := fn(id, l, inline); err != nil {
				it.Close()
				return err
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

// Verify reads, decodes and re-hashes every chunk, calling fn for each with
// nil or the chunk's error (ErrCorrupt). It stops at the first error fn
// returns.
func (s *Store) Verify(fn func(Info, error) error) error {
	var buf []byte
	return s.each(func(id ID, l locator, it *pebble.Iterator) error {
		inf := Info{ID: id, Stored: l.n}
		var v []byte
		var err error
		if it != nil {
			v, err = iterValue(it)
			if err != nil && !errors.Is(err, ErrCorrupt) {
				// A value in a damaged blob file: this chunk is lost, the
				// walk goes on.
				err = fmt.Errorf("%w: %s", ErrCorrupt, OneLine(err.Error()))
			}
			inf.Stored = len(v)
		} else {
			v, err = s.readRecord(id, l)
		}
		if err != nil {
			if !strings.Contains(err.Error(), id.String()) {
				err = fmt.Errorf("chunk %s: %w", id, err)
			}
			return fn(inf, err)
		}
		plain, verr := verify(buf[:0], id, v)
		if verr == nil {
			inf.Plain, buf = len(plain), plain
		}
		return fn(inf, verr)
	})
}

// iterValue is it.ValueAndErr, with a panic inside Pebble turned into an
// error (see guard).
func iterValue(it *pebble.Iterator) (v []byte, err error) {
	defer guard(&err)
	return it.ValueAndErr()
}

// guard turns a panic inside Pebble while reading into an ErrCorrupt
// error: Pebble 2.1.7 panics ("unknown metadata type") instead of returning
// its corruption error when a blob file is damaged. The panic is raised
// after the failed read and changes no state, so reads can go on.
func guard(err *error) {
	if p := recover(); p != nil {
		readPanicked.Store(true)
		*err = fmt.Errorf("%w: pebble: %v (a blob file of the store is damaged)", ErrCorrupt, p)
	}
}

// readPanicked records that guard caught a panic: Pebble then leaks a file
// cache reference, and its Close panics about it.
var readPanicked atomic.Bool

// closeDB closes db; after a read panic (see guard) the leaked reference
// makes Pebble's Close panic once everything is closed, which is logged,
// not raised.
func closeDB(db *pebble.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if !readPanicked.Load() {
				panic(p)
			}
			log.Printf("pebble: closing after reads of a damaged blob file: %v (the store's files are closed)", p)
		}
	}()
	return db.Close()
}

// DiskUsage returns the bytes the store's files take: Pebble's and the
// segments.
func (s *Store) DiskUsage() uint64 {
	if dir := s.space.dir; dir != "" {
		// A store on disk: every file of its directory (Pebble's tables,
		// WAL and manifest, the segments, the reserve file), as du counts
		// them, so that stats and du agree while it is mounted too.
		var n uint64
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += uint64(info.Size())
				}
			}
			return nil
		})
		return n
	}
	n := s.db.Metrics().DiskSpaceUsage()
	ids, _ := s.seg.list()
	for _, id := range ids {
		n += uint64(s.seg.sizeOf(id))
	}
	return n
}

var _ io.Closer = (*Store)(nil)

// StoredSize returns the bytes chunk id takes (0 if absent).
func (s *Store) StoredSize(id ID) (int64, error) {
	l, inline, ok, err := s.where(id)
	if !ok || err != nil {
		return 0, err
	}
	if inline != nil {
		return int64(len(inline)), nil
	}
	return int64(l.n), nil
}

// GetMany calls fn with each chunk of ids (by its index in ids), read and
// verified as Get does, in no particular order. Chunks whose records lie
// close together in a segment are read with one read: a run of pages
// written together (a generation's new pages) is one sequential read.
//
// hints, if not nil, holds a Hint for each id (the zero Hint for none): a
// chunk found at its hint (its record's id and CRC match) needs no locator
// lookup.
func (s *Store) GetMany(ids []ID, hints []Hint, fn func(i int, data []byte, err error)) {
	type loc struct {
		i int
		l locator
	}
	locs := make([]loc, 0, len(ids))
	for i, id := range ids {
		if hints != nil && hints[i].l.seg != 0 {
			locs = append(locs, loc{i, hints[i].l})
			continue
		}
		l, inline, ok, err := s.where(id)
		if err != nil || !ok || inline != nil {
			data, err := s.Get(nil, id)
			fn(i, data, err)
			continue
		}
		locs = append(locs, loc{i, l})
	}
	slices.SortFunc(locs, func(a, b loc) int {
		if a.l.seg != b.l.seg {
			return cmp.Compare(a.l.seg, b.l.seg)
		}
		return cmp.Compare(a.l.off, b.l.off)
	})
	// Runs of records close together in one segment: one read each. The
	// next run's read-ahead is started before this one is read and
	// decoded, so the disk works while the CPU decodes.
	const gap, span = 64 << 10, 8 << 20
	type run struct {
		locs     []loc
		from, to int64
	}
	var runs []run
	for len(locs) > 0 {
		n, end := 1, locs[0].l.off+int64(locs[0].l.n)
		for n < len(locs) && locs[n].l.seg == locs[0].l.seg && locs[n].l.off <= end+gap && locs[n].l.off+int64(locs[n].l.n)-locs[0].l.off <= span {
			end = max(end, locs[n].l.off+int64(locs[n].l.n))
			n++
		}
		runs = append(runs, run{locs[:n], locs[0].l.off, end})
		locs = locs[n:]
	}
	// The read buffer (up to span bytes) comes from a pool: a fresh one
	// per call was zeroed before every read (15% of a cold restore's CPU).
	// Decoded chunks never alias it.
	pooled := readBufs.Get().(*[]byte)
	buf := *pooled
	defer func() {
		if cap(buf) <= 2*span {
			*pooled = buf[:0]
			readBufs.Put(pooled)
		}
	}()
	for k, rn := range runs {
		if k+1 < len(runs) {
			next := runs[k+1]
			s.seg.prefetch(next.locs[0].l.seg, next.from, next.to-next.from)
		}
		var err error
		buf, err = s.seg.read(buf, locator{seg: rn.locs[0].l.seg, off: rn.from, n: int(rn.to - rn.from)})
		for _, r := range rn.locs {
			id := ids[r.i]
			if err != nil {
				// The segment may have been rewritten since: one by one.
				data, err := s.Get(nil, id)
				fn(r.i, data, err)
				continue
			}
			rec := buf[r.l.off-rn.from : r.l.off-rn.from+int64(r.l.n)]
			rid, v, n, perr := parseRecord(rec)
			if perr != nil || n != r.l.n || rid != id {
				data, err := s.Get(nil, id)
				fn(r.i, data, err)
				continue
			}
			data, derr := decodeChecked(nil, id, v)
			fn(r.i, data, derr)
		}
	}
}

// readBufs recycles GetMany's read buffers.
var readBufs = sync.Pool{New: func() any { return new([]byte) }}

// Hint is where a chunk's record was when something referenced it: a read
// that finds the chunk's record there (its id and CRC match) skips the
// lookup of its locator. Hints are never updated: a stale one (gc moved
// the chunk) costs that lookup, never wrong data.
type Hint struct{ l locator }

// IsZero reports whether h says nothing.
func (h Hint) IsZero() bool { return h.l.seg == 0 }

// AppendHint appends h's encoding (nothing for the zero Hint).
func AppendHint(dst []byte, h Hint) []byte {
	if h.IsZero() {
		return dst
	}
	return append(dst, encodeLocator(h.l)...)
}

// ParseHint decodes what AppendHint appended.
func ParseHint(b []byte) (Hint, error) {
	if len(b) == 0 {
		return Hint{}, nil
	}
	l, err := decodeLocator(b)
	return Hint{l}, err
}
