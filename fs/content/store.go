package content

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// Chunks is what content needs of the chunk store.
type Chunks interface {
	PutID(b *chunkstore.Batch, id chunkstore.ID, data []byte) (int, error)
	Prepare(owner chunkstore.Owner, dst []byte, id chunkstore.ID, data []byte) ([]byte, error)
	NewOwner() chunkstore.Owner
	SetPrepared(b *chunkstore.Batch, id chunkstore.ID, value []byte) error
	Get(dst []byte, id chunkstore.ID) ([]byte, error)
	GetManyEncoded(ids []chunkstore.ID, hints []chunkstore.Hint, fn func(i int, value []byte, err error))
	Unpin(ids ...chunkstore.ID)
	TagKey() []byte
}

// Extents is what content needs of the index.
type Extents interface {
	AddExtent(b *pebble.Batch, ino, ver uint64, e index.Extent) error
	Overlay(b *pebble.Batch, ino, ver uint64, e index.Extent) error
	Punch(b *pebble.Batch, ino, ver uint64, from, to int64) error
	TruncateExtents(b *pebble.Batch, ino, ver uint64, size int64) error
	Extents(ino, ver uint64, off int64, n int) ([]index.Extent, error)
	Stage(b *pebble.Batch, ino, copyFrom uint64, limit int64) (uint64, error)
	Commit(ino, ver uint64, size, mtime int64) (index.Inode, error)
}

// Runs resolves the pages of page runs (xen/lineage.Maps keeps the maps).
type Runs interface {
	ResolveRun(run *index.PageRun, from, to int64) ([]index.PageRef, error)
}

// Batcher makes batches for the database that holds chunks and extents.
type Batcher interface {
	NewBatch(opts ...pebble.BatchOption) *chunkstore.Batch
}

// Config sizes the engine.
type Config struct {
	Params Params
	// Window is how far ahead of the stream's end a write may land and still
	// be held in memory for reassembly (the reorder window).
	Window int
	// BatchBytes is how many bytes of cut chunks a writer collects before it
	// applies its batch.
	BatchBytes int
	// CacheChunks is the number of decoded chunks the read LRU holds.
	CacheChunks int
	// ReadAhead is how many bytes past a sequential read are prefetched.
	ReadAhead int64
	// Pages makes the page hook of a file written from offset 0 (nil:
	// every file is cut by content only). xen/lineage.Pages stores xl
	// save images page by page, every page payload a chunk of its own.
	Pages func(ino uint64) Pages
	// Runs resolves the page runs that Pages put into files (nil: a
	// read of a page run fails).
	Runs Runs
	// WriterMemory bounds the memory of all open writers together: each
	// streaming writer holds WriterMemoryBound of it; a writer that finds
	// none left writes through (flushes every write) until some frees.
	// 0 takes DefaultWriterMemory.
	WriterMemory int64
}

// DefaultWriterMemory is the writers' memory of a mount: 512 MiB, about
// twenty files streaming at once (a host's hourly checkpoints of many
// guests), the rest writing through.
const DefaultWriterMemory = 512 << 20

// DefaultConfig is what ckptfs mounts with.
func DefaultConfig() Config {
	return Config{Params: DefaultParams, Window: 8 << 20, BatchBytes: 4 << 20, CacheChunks: 512, ReadAhead: 8 << 20, WriterMemory: DefaultWriterMemory}
}

// EnsureDefaults returns c with each zero field set to DefaultConfig's
// (Pages stays as it is: nil is a choice), so that setting one field
// never drops the others' defaults.
func (c Config) EnsureDefaults() Config {
	d := DefaultConfig()
	if c.Params == (Params{}) {
		c.Params = d.Params
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.CacheChunks <= 0 {
		c.CacheChunks = d.CacheChunks
	}
	if c.ReadAhead <= 0 {
		c.ReadAhead = d.ReadAhead
	}
	if c.WriterMemory <= 0 {
		c.WriterMemory = d.WriterMemory
	}
	return c
}

// WriterMemoryBound is the most memory one open file's write state holds:
// the batch and cut bytes not yet applied, a chunk in progress, one write,
// and the reorder window.
func (c Config) WriterMemoryBound() int {
	return 2*(c.BatchBytes+int(c.Params.Max)+(1<<20)) + c.Window
}

// prefetchers is how many read-ahead jobs run at once: each reads a run of
// chunks (prefetchJob of them at most) with few large reads and decodes and
// verifies them; several keep both cores and the disk's queue busy.
const prefetchers = 4

// prefetchJobs is one read-ahead job: chunks and their hints.
type prefetchJobs struct {
	ids   []chunkstore.ID
	hints []chunkstore.Hint
}

// prefetchJob is the most chunks one read-ahead job reads.
const prefetchJob = 256

// smallChunk is the largest chunk the page cache holds (encoded: a read
// decodes it into its reply); pages are 4 KiB, CDC chunks 32 KiB and
// more, cached decoded.
const smallChunk = 4096

// cachePages is how many small chunks the page cache holds, encoded: a
// read-ahead window of pages and then some (32 MiB of pages, less as
// they are stored compressed).
const cachePages = 8192

// Store reads and writes file content.
type Store struct {
	db        Batcher
	chunks    Chunks
	ext       Extents
	cfg       Config
	cache     *lru.Cache[chunkstore.ID, []byte] // CDC chunks
	pages     *lru.Cache[chunkstore.ID, []byte] // chunks up to smallChunk bytes, encoded
	flight    singleflight.Group
	prefetch  chan prefetchJobs
	pmu       sync.Mutex
	pending   map[chunkstore.ID]chan struct{} // being read by a prefetcher
	wg        sync.WaitGroup                  // prefetchers
	bg        sync.WaitGroup                  // span fillers and next-window resolvers
	stats     Stats
	closeOnce sync.Once
	epoch     atomic.Uint64
	admit     func(n int) error // see SetAdmit
	holds     holder            // see Hold
	writerMem *semaphore.Weighted
	spanMem   *semaphore.Weighted // span buffers (span.go)
}

// admitter is a chunk store with a disk-full guard (chunkstore.Store).
type admitter interface{ Admit(n int) error }

// holder is a chunk store that can hold room for data it will take later
// without refusing it (chunkstore.Store's Hold).
type holder interface {
	Hold(n int) error
	UseHeld(n int)
	Unhold(n int)
}

// Hold reserves room for n bytes that a writer will take later with
// WriteAtHeld, or refuses with the store's disk-full error: write-behind
// holds what it spools before close(2) returns, so that storing it after
// finds room. A store without a guard holds nothing and never refuses.
func (s *Store) Hold(n int) error {
	if s.holds == nil {
		return nil
	}
	return s.holds.Hold(n)
}

// Unhold gives back n held bytes that no writer will take.
func (s *Store) Unhold(n int) {
	if s.holds != nil {
		s.holds.Unhold(n)
	}
}

// SetAdmit replaces the check that new data must pass before it is
// taken. New takes the chunk store's own (chunkstore's Admit, which keeps
// the disk from filling up), so every path that writes through the engine
// is guarded. A refused write fails its writer: close returns the error
// and the file keeps its committed content.
func (s *Store) SetAdmit(admit func(n int) error) { s.admit = admit }

// NewEpoch returns a number never returned before. Readers pass one with a
// version; a cursor's cached extents are reused only for the same pair.
func (s *Store) NewEpoch() uint64 { return s.epoch.Add(1) }

// Stats counts what the engine did since it started.
type Stats struct {
	BytesWritten, ChunksNew, ChunksDup, ChunksZero, StoredBytes atomic.Int64
	CacheHits, CacheMisses                                      atomic.Int64
	Images                                                      atomic.Int64 // whole xl save images committed
	// PagesByTag counts pages a keyed tag proved equal to their base
	// generation's page (not hashed with BLAKE3).
	PagesByTag atomic.Int64
	// WritersStreaming counts writers holding a memory grant now;
	// WritesDirect the writes done without one (written through).
	WritersStreaming, WritesDirect atomic.Int64
	// SpanReads counts reads served from spans read ahead (span.go).
	SpanReads atomic.Int64
}

// Counters returns the engine's counters.
func (s *Store) Counters() *Stats { return &s.stats }

// New returns an engine over db, chunks and ext.
func New(db Batcher, chunks Chunks, ext Extents, cfg Config) *Store {
	c, _ := lru.New[chunkstore.ID, []byte](max(cfg.CacheChunks, 1))
	p, _ := lru.New[chunkstore.ID, []byte](max(cfg.CacheChunks, cachePages))
	if cfg.WriterMemory <= 0 {
		cfg.WriterMemory = DefaultWriterMemory
	}
	s := &Store{db: db, chunks: chunks, ext: ext, cfg: cfg, cache: c, pages: p, prefetch: make(chan prefetchJobs, 64), pending: map[chunkstore.ID]chan struct{}{},
		writerMem: semaphore.NewWeighted(cfg.WriterMemory), spanMem: semaphore.NewWeighted(spanMemory)}
	if a, ok := chunks.(admitter); ok {
		// Every writer of this store, whichever command opened it,
		// passes the store's disk-full guard.
		s.admit = a.Admit
	}
	if h, ok := chunks.(holder); ok {
		s.holds = h
	}
	for range prefetchers {
		s.wg.Add(1)
		go s.prefetcher()
	}
	return s
}

// Config is the engine's configuration, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// Close stops the prefetchers.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.bg.Wait() // spans and next windows: they read the store and queue prefetches
		close(s.prefetch)
		s.wg.Wait()
	})
}

func (s *Store) prefetcher() {
	defer s.wg.Done()
	for job := range s.prefetch {
		ids := job.ids
		// Errors surface when the reader gets there.
		s.chunks.GetManyEncoded(ids, job.hints, func(i int, v []byte, err error) {
			if err == nil {
				s.cacheValue(ids[i], bytes.Clone(v)) // the value is the call's
			}
		})
		s.pmu.Lock()
		for _, id := range ids {
			if ch := s.pending[id]; ch != nil {
				close(ch)
				delete(s.pending, id)
			}
		}
		s.pmu.Unlock()
	}
}

// cachedChunk is a chunk as the caches hold it: a small one (a page) still
// encoded, decoded by the read that copies it out (into the reply, with
// no buffer of its own in between); a larger one (CDC) plain.
type cachedChunk struct {
	v     []byte // encoded value (small chunks)
	plain []byte // plain bytes (larger chunks)
	n     int    // plain length
}

func (s *Store) cacheGet(id chunkstore.ID) (cachedChunk, bool) {
	if v, ok := s.pages.Get(id); ok {
		n, _ := chunkstore.DecodedLen(v) // checked when it was cached
		return cachedChunk{v: v, n: n}, true
	}
	b, ok := s.cache.Get(id)
	return cachedChunk{plain: b, n: len(b)}, ok
}

func (s *Store) cached(id chunkstore.ID) bool { return s.pages.Contains(id) || s.cache.Contains(id) }

// cacheValue caches chunk id from its encoded value v (which it keeps): a
// small chunk as it is, a larger one decoded.
func (s *Store) cacheValue(id chunkstore.ID, v []byte) (cachedChunk, error) {
	n, err := chunkstore.DecodedLen(v)
	if err != nil {
		return cachedChunk{}, fmt.Errorf("chunk %s: %w", id, err)
	}
	if n <= smallChunk {
		s.pages.Add(id, v)
		return cachedChunk{v: v, n: n}, nil
	}
	b := make([]byte, n)
	if err := chunkstore.DecodeInto(b, v); err != nil {
		return cachedChunk{}, fmt.Errorf("chunk %s: %w", id, err)
	}
	s.cache.Add(id, b)
	return cachedChunk{plain: b, n: n}, nil
}

// chunk returns the chunk, from the cache, a prefetcher already reading
// it, or the store.
func (s *Store) chunk(id chunkstore.ID, hint chunkstore.Hint) (cachedChunk, error) {
	if c, ok := s.cacheGet(id); ok {
		s.stats.CacheHits.Add(1)
		return c, nil
	}
	s.pmu.Lock()
	ch := s.pending[id]
	s.pmu.Unlock()
	if ch != nil {
		<-ch
		if c, ok := s.cacheGet(id); ok {
			s.stats.CacheHits.Add(1)
			return c, nil
		}
	}
	v, err, _ := s.flight.Do(string(id[:]), func() (any, error) {
		if c, ok := s.cacheGet(id); ok {
			return c, nil
		}
		s.stats.CacheMisses.Add(1)
		var v []byte
		var err error
		s.chunks.GetManyEncoded([]chunkstore.ID{id}, []chunkstore.Hint{hint}, func(_ int, data []byte, e error) { v, err = bytes.Clone(data), e }) // the value is the call's
		if err != nil {
			return nil, err
		}
		return s.cacheValue(id, v)
	})
	if err != nil {
		return cachedChunk{}, err
	}
	return v.(cachedChunk), nil
}

// copyTo writes the chunk's bytes [from, from+len(dst)) into dst (an
// encoded page is decoded as a span decodes its pieces).
func (c cachedChunk) copyTo(dst []byte, from int64, scratch *[]byte) error {
	if c.v == nil {
		copy(dst, c.plain[from:])
		return nil
	}
	return decodePieces(dst, c.v, c.n, []spanPiece{{n: len(dst), co: from}}, scratch)
}

// Cursor remembers, for one open handle, a window of a version's extents and
// where the last read ended, so that sequential reads find extents by binary
// search in memory and trigger read-ahead.
type Cursor struct {
	ino, ver uint64
	epoch    uint64
	from, to int64 // the window describes file bytes [from, to)
	ext      []index.Extent
	lastEnd  int64
	ahead    int64 // prefetch issued up to here
	next     *nextWindow
	sp       *spans // a sequential reader's spans read ahead (ReadCommitted)
}

// nextWindow is the window after a cursor's, resolved in the background
// while the reader is still in the current one (with read-ahead of its
// first chunks queued), so that crossing into it does not stall.
type nextWindow struct {
	off  int64
	done chan struct{}
	c    Cursor
	err  error
}

const cursorExtents = 512

func (c *Cursor) valid(ino, ver, epoch uint64, off int64) bool {
	return c.ext != nil && c.ino == ino && c.ver == ver && c.epoch == epoch && off >= c.from && off < c.to
}

// find returns the index in c.ext of the first extent ending after off.
func (c *Cursor) find(off int64) int {
	lo, hi := 0, len(c.ext)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.ext[m].End() <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (s *Store) load(c *Cursor, ino, ver, epoch uint64, off int64) error {
	return s.loadPages(c, ino, ver, epoch, off, cursorPages)
}

// loadPages is load resolving at most pages pages of page runs.
func (s *Store) loadPages(c *Cursor, ino, ver, epoch uint64, off int64, pages int64) error {
	ext, err := s.ext.Extents(ino, ver, off, cursorExtents)
	if err != nil {
		return err
	}
	to := int64(1<<63 - 1)
	if len(ext) == cursorExtents {
		to = ext[len(ext)-1].End()
	}
	ext, to, err = s.expandRuns(ext, off, to, pages)
	if err != nil {
		return err
	}
	*c = Cursor{ino: ino, ver: ver, epoch: epoch, from: off, to: to, ext: ext, lastEnd: c.lastEnd, ahead: c.ahead, sp: c.sp}
	return nil
}

// advance moves c to the window at off: the one resolved in the background
// if it is that one, else a fresh load.
func (s *Store) advance(c *Cursor, ino, ver, epoch uint64, off int64) error {
	if nw := c.next; nw != nil && nw.off == off {
		<-nw.done
		if nw.err == nil && nw.c.valid(ino, ver, epoch, off) {
			lastEnd, ahead, sp := c.lastEnd, max(c.ahead, nw.c.ahead), c.sp
			*c = nw.c
			c.lastEnd, c.ahead, c.sp = lastEnd, ahead, sp
			return nil
		}
	}
	return s.load(c, ino, ver, epoch, off)
}

// resolveNext starts resolving the window after c's, once.
func (s *Store) resolveNext(c *Cursor) {
	if c.to == 1<<63-1 || (c.next != nil && c.next.off == c.to) {
		return
	}
	nw := &nextWindow{off: c.to, done: make(chan struct{})}
	c.next = nw
	ino, ver, epoch := c.ino, c.ver, c.epoch
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(nw.done)
		nw.err = s.load(&nw.c, ino, ver, epoch, nw.off)
		if nw.err == nil {
			nw.c.ahead = nw.off
			s.readAhead(&nw.c, nw.off)
		}
	}()
}

// cursorPages bounds the pages of page runs one cursor window resolves.
const cursorPages = 4096

// expandRuns replaces page runs in ext (a window of extents from off up to
// to) by one extent per non-zero page, resolving at most cursorPages pages;
// the window then ends where resolving stopped.
func (s *Store) expandRuns(ext []index.Extent, off, to int64, pages int64) ([]index.Extent, int64, error) {
	runs := false
	for _, e := range ext {
		runs = runs || e.Run != nil
	}
	if !runs {
		return ext, to, nil
	}
	out := make([]index.Extent, 0, len(ext))
	budget := pages
	for i, e := range ext {
		if e.Run == nil {
			out = append(out, e)
			continue
		}
		if budget <= 0 {
			return out, min(to, e.Off), nil
		}
		lo := e.ChunkOff
		if off > e.Off { // skip the run's pages before the read
			lo += (off - e.Off) / index.PageSize * index.PageSize
			lo = max(lo, e.ChunkOff)
		}
		first, last := lo/index.PageSize, (e.ChunkOff+e.Len+index.PageSize-1)/index.PageSize
		if last-first > budget {
			last = first + budget
		}
		if first >= last {
			continue
		}
		if s.cfg.Runs == nil {
			return nil, 0, fmt.Errorf("page run at %d: %w: no page maps to resolve it", e.Off, index.ErrCorrupt)
		}
		refs, err := s.cfg.Runs.ResolveRun(e.Run, first, last)
		if err != nil {
			return nil, 0, fmt.Errorf("page run at %d: %w", e.Off, err)
		}
		budget -= last - first
		for k, ref := range refs {
			p := (first + int64(k)) * index.PageSize
			a, b := max(p, e.ChunkOff), min(p+index.PageSize, e.ChunkOff+e.Len)
			if ref.Zero || a >= b {
				continue
			}
			out = append(out, index.Extent{Off: e.Off + a - e.ChunkOff, Len: b - a, ChunkOff: a - p, ID: ref.ID, Hint: ref.Hint})
		}
		if budget <= 0 && (i < len(ext)-1 || last*index.PageSize < e.ChunkOff+e.Len) {
			return out, min(to, e.Off+last*index.PageSize-e.ChunkOff), nil
		}
	}
	return out, to, nil
}

// readExtents fills dst with version ver's bytes at off (holes read as
// zero). epoch changes whenever the version's extents may have changed.
func (s *Store) readExtents(c *Cursor, ino, ver, epoch uint64, dst []byte, off int64) error {
	var scratch []byte // a page read in part
	end := off + int64(len(dst))
	err := s.walk(c, ino, ver, epoch, off, end, func(pos int64) error { return s.advance(c, ino, ver, epoch, pos) },
		func(pos, n int64, e *index.Extent) error {
			d := dst[pos-off:][:n]
			if e == nil {
				clear(d)
				return nil
			}
			ch, err := s.chunk(e.ID, e.Hint)
			if err != nil {
				return fmt.Errorf("offset %d: %w", pos, err)
			}
			if e.ChunkOff+e.Len > int64(ch.n) {
				return fmt.Errorf("offset %d: chunk %s: %w: extent wants %d bytes, chunk has %d",
					pos, e.ID, chunkstore.ErrCorrupt, e.ChunkOff+e.Len, ch.n)
			}
			if err := ch.copyTo(d, e.ChunkOff+(pos-e.Off), &scratch); err != nil {
				return fmt.Errorf("offset %d: chunk %s: %w", pos, e.ID, err)
			}
			return nil
		})
	if err != nil {
		return err
	}
	// Sequential, or nearly: the kernel's own read-ahead sends requests a
	// little out of order.
	if d := off - c.lastEnd; d > -(4<<20) && d < 4<<20 && s.cfg.ReadAhead > 0 {
		s.readAhead(c, max(end, c.lastEnd))
	}
	c.lastEnd = end
	return nil
}

// walk visits bytes [off, end) of version ver through cursor c, calling
// load to move c to the window at pos when it does not hold pos: fn gets
// each piece [pos, pos+n) with its extent, or nil for a hole.
func (s *Store) walk(c *Cursor, ino, ver, epoch uint64, off, end int64, load func(pos int64) error, fn func(pos, n int64, e *index.Extent) error) error {
	for pos := off; pos < end; {
		if !c.valid(ino, ver, epoch, pos) {
			if err := load(pos); err != nil {
				return fmt.Errorf("offset %d: %w", pos, err)
			}
		}
		var e *index.Extent
		n := min(end, c.to) - pos // no extent left in the window: a hole to its end
		if i := c.find(pos); i < len(c.ext) {
			if x := &c.ext[i]; x.Off > pos {
				n = min(end, x.Off) - pos
			} else {
				e, n = x, min(end, x.End())-pos
			}
		}
		if err := fn(pos, n, e); err != nil {
			return err
		}
		pos += n
	}
	return nil
}

// readAhead queues the chunks of the window past end, up to ReadAhead
// bytes, in jobs of up to prefetchJob chunks.
func (s *Store) readAhead(c *Cursor, end int64) {
	limit := end + s.cfg.ReadAhead
	start := max(end, c.ahead)
	if start >= limit {
		return
	}
	var job []chunkstore.ID
	var hints []chunkstore.Hint
	send := func() bool {
		s.pmu.Lock()
		mine, mh := job[:0], hints[:0]
		for i, id := range job {
			if s.pending[id] == nil {
				s.pending[id] = make(chan struct{})
				mine, mh = append(mine, id), append(mh, hints[i])
			}
		}
		s.pmu.Unlock()
		if len(mine) == 0 {
			return true
		}
		select {
		case s.prefetch <- prefetchJobs{mine, mh}:
			job, hints = nil, nil
			return true
		default: // prefetchers are busy: the reader will load them itself
			s.pmu.Lock()
			for _, id := range mine {
				close(s.pending[id])
				delete(s.pending, id)
			}
			s.pmu.Unlock()
			return false
		}
	}
	i := c.find(start)
	for ; i < len(c.ext) && c.ext[i].Off < limit; i++ {
		id := c.ext[i].ID
		if s.cached(id) || (len(job) > 0 && job[len(job)-1] == id) {
			continue
		}
		job, hints = append(job, id), append(hints, c.ext[i].Hint)
		if len(job) == prefetchJob && !send() {
			c.ahead = c.ext[i].Off
			return
		}
	}
	if !send() {
		return
	}
	if i < len(c.ext) {
		c.ahead = limit
	} else {
		c.ahead = min(limit, c.to)
		if c.ahead < limit {
			s.resolveNext(c)
		}
	}
}

// ReadCommitted reads committed content (version ver, size bytes) at off.
func (s *Store) ReadCommitted(c *Cursor, ino, ver, epoch uint64, size int64, dst []byte, off int64) (int, error) {
	if off >= size {
		return 0, nil
	}
	dst = dst[:min(int64(len(dst)), size-off)]
	if s.readSpans(c, ino, ver, epoch, size, dst, off) {
		return len(dst), nil
	}
	seq := off == c.lastEnd && off > 0
	if err := s.readExtents(c, ino, ver, epoch, dst, off); err != nil {
		return 0, err
	}
	if seq && s.cfg.ReadAhead > 0 {
		// A sequential reader: what follows is read ahead in spans.
		s.startSpans(c, ino, ver, epoch, size, off+int64(len(dst)))
	}
	return len(dst), nil
}

// CacheForTest exposes the decoded-chunk LRU to tests that damage chunks.
func (s *Store) CacheForTest() interface{ Purge() } { return purger{s} }

type purger struct{ s *Store }

func (p purger) Purge() { p.s.cache.Purge(); p.s.pages.Purge() }
