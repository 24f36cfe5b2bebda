package chunkstore

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	lru "github.com/hashicorp/golang-lru/v2"
)

func hasManifest(fsys vfs.FS, dir string) bool {
	names, _ := fsys.List(dir)
	for _, n := range names {
		if strings.HasPrefix(n, "MANIFEST-") {
			return true
		}
	}
	return false
}

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
	var jr *journal
	if !o.ReadOnly && !o.NoJournal {
		// Logs Pebble is done with go into the journal (journalFS).
		jr = newJournal(fsys, dir)
		pfs = journalFS{FS: pfs, archive: fsys.PathJoin(dir, "archive"), j: jr}
	}
	po := &pebble.Options{
		FS:                          pfs,
		ReadOnly:                    o.ReadOnly,
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                uint64(o.MemTableBytes),
		MemTableStopWritesThreshold: 4,
		Logger:                      o.Logger,
	}
	if jr != nil {
		po.Cleaner = pebble.ArchiveCleaner{}
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
	if jr != nil {
		po.EventListener.WALCreated = func(info pebble.WALCreateInfo) {
			if info.Err == nil {
				jr.link(info.Path)
			}
		}
	}
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
	recent, _ := lru.New[ID, recentEntry](1 << 16)
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
		if jr != nil {
			if err := jr.start(db); err != nil {
				s.Close()
				return nil, fmt.Errorf("%s: journal: %w", dir, err)
			}
			s.jr = jr
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
	if _, err := os.Stat(filepath.Join(dir, JournalDir)); err == nil {
		return fmt.Errorf("%s: %w: its database is gone, its segments and journal are there ('ckptfs fsck --rebuild' makes the database again from them)", filepath.Clean(dir), ErrDamaged)
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
	if s.jr != nil {
		s.jr.close()
	}
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
		var keep func(string) error
		if s.jr != nil {
			keep = s.jr.keep
		}
		err = s.space.dropRecycledLogs(emptyWAL, keep)
	}
	return err
}

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
