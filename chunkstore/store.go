package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	lru "github.com/hashicorp/golang-lru/v2"
)

// FormatVersion is the version of the on-disk format described in doc.go.
// Bump it on any incompatible change of any key or value encoding.
const FormatVersion = 5

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

// Store keeps chunks in a Pebble database. It is safe for concurrent use.
// The same database holds the index (package index) under other prefixes; the
// store owns the database and its format version.
type Store struct {
	db    *pebble.DB
	codec Codec
	// recent remembers chunks put in batches that may not be applied yet
	// (and by whom), so that a chunk that repeats within a stream is
	// encoded only once, and where recently written or looked-up chunks
	// are (for the hints of Batch.OnCommit).
	recent *lru.Cache[ID, recentEntry]
	owners atomic.Uint64 // the last Owner handed out
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
	jr       *journal // nil when read-only
	// inline is set while the store may hold chunk values inline (format 1
	// or 2, read-only or not yet upgraded): lookups then try them too.
	inline bool
	// gcMu orders Sweep against Compact: a segment is rewritten from
	// locators no sweep is deleting meanwhile.
	gcMu sync.Mutex
}

// DB returns the underlying database, shared with package index.
func (s *Store) DB() *pebble.DB { return s.db }

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
	v, err := s.Prepare(b.Owner, nil, id, data)
	if err != nil || v == nil {
		return 0, err
	}
	return len(v), s.SetPrepared(b, id, v)
}

// Owner names a writer of chunks: the batches of one owner are committed
// in the order their chunks were prepared, so a chunk an owner prepared
// (and has not committed yet) may be referenced by its later batches.
type Owner uint64

// NewOwner returns an Owner never returned before.
func (s *Store) NewOwner() Owner { return Owner(s.owners.Add(1)) }

// recentEntry is what recent knows of a chunk: where its record is, or
// that owner prepared it for a batch not committed yet.
type recentEntry struct {
	l      locator
	stored bool  // committed (l is zero for an inline chunk)
	owner  Owner // when not stored: who will store it
}

// Prepare is the part of PutID that needs no batch, so that it can run
// concurrently with other work: it returns the encoded value of data
// (appended to dst) or nil if the chunk is stored already or owner
// prepared it before. The caller passes a non-nil value to SetPrepared.
//
// A chunk another owner prepared and has not committed is prepared again:
// that owner's batch may commit after this one's, or never (a crash, a
// failed writer), and a committed file must not name a chunk the store
// does not have. The second record is dead space once both commit.
//
// Prepare (and so Put and PutID) pins id: Sweep will not delete the chunk
// until the caller calls Unpin, which it does once the batch that records
// its reference to the chunk is applied (or dropped).
func (s *Store) Prepare(owner Owner, dst []byte, id ID, data []byte) ([]byte, error) {
	if len(data) > MaxChunkSize {
		return nil, fmt.Errorf("chunk of %d bytes exceeds the maximum %d", len(data), MaxChunkSize)
	}
	s.Pin(id)
	if e, ok := s.recent.Get(id); ok {
		if e.stored || e.owner == owner {
			return nil, nil
		}
		return encodeValue(dst, s.codec, data), nil // another owner's, not committed
	}
	if !s.known.mayHold(id) {
		s.recent.Add(id, recentEntry{owner: owner})
		return encodeValue(dst, s.codec, data), nil
	}
	l, _, ok, err := s.where(id)
	if err != nil {
		return nil, err
	}
	if ok {
		s.recent.Add(id, recentEntry{l: l, stored: true})
		return nil, nil
	}
	s.recent.Add(id, recentEntry{owner: owner})
	return encodeValue(dst, s.codec, data), nil
}

// SetPrepared adds a value from Prepare to batch b.
func (s *Store) SetPrepared(b *Batch, id ID, value []byte) error {
	b.addPrepared(id, value)
	return nil
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

// DiskUsage returns the bytes the store's files take: Pebble's and the
// segments.
func (s *Store) DiskUsage() uint64 {
	if dir := s.space.dir; dir != "" {
		// A store on disk: every file of its directory (Pebble's tables,
		// WAL and manifest, the segments, the reserve file), as du counts
		// them, so that stats and du agree while it is mounted too.
		// A file with two names (the live log and its link in the
		// journal) counts once, as du counts it.
		var n uint64
		seen := map[uint64]bool{}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
						if seen[st.Ino] {
							return nil
						}
						seen[st.Ino] = true
					}
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
