package content

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// Writer is the write state of one file while it has writers. It is not safe
// for concurrent use: the caller (one per inode) serializes calls.
//
// Bytes move through three places:
//
//	file offset:  streamOff        cutOff                  streamOff+len(buf)   ahead pieces
//	              |  cut, in batch  |  not yet cut          |   ...gap...        [ ]  [  ]
//	              |<----------------- buf ----------------->|
//
// Sequential writes append to buf; whole chunks are cut from its front as
// soon as at least Params.Max bytes are uncut, stored into the pending batch
// and recorded as extents. When the batch holds BatchBytes it is committed
// in the background (committing) while the next writes arrive, and the cut
// bytes leave buf for that commit's own array until it is done. Writes
// slightly ahead of the stream wait in ahead (the reorder window) until
// the gap fills. Anything else (a write behind the cut point, a write far
// ahead, a truncate) flushes everything and restarts the stream at the new
// offset; extents then overlay older ones.
//
// Overlap: the kernel sends a file's next WRITE only after the reply to the
// previous one. So a streaming write appends its bytes to buf, hands the
// uncut bytes to background jobs of at most jobBytes each (cut; then hash,
// compare with the base generation, dedup check and compress, on every
// core: see process) and returns; later calls reap the jobs' results in
// order. Up to jobDepth jobs are in flight, so one job's serial steps and
// the reaping of another overlap a third's parallel ones: a pipeline.
// Jobs only read buf; while any runs, buf is only appended to (or, at
// applyAsync, its uncut tail copied to a new array: the jobs keep reading
// the old one, which becomes spare only once they are reaped).
//
// Crash safety: while a write touches bytes below the committed size, the
// writer works on a staged copy of the extent list (index.Stage), which
// Commit swaps in atomically; appends past the committed size go to the
// committed version in place, invisible until Commit raises the size.
type Writer struct {
	s   *Store
	ino uint64

	image bool // a Commit recorded a whole memory image (CommittedImage)

	ver           uint64 // version being written
	staged        bool   // ver is a staged version, not the committed one
	committedSize int64
	cleaned       bool // extents past committedSize of an in-place version are dropped
	dirty         bool

	size  int64
	mtime int64

	streamOff, cutOff int64
	buf               []byte
	ahead             []piece // sorted by offset, disjoint, all past the stream's end
	aheadBytes        int
	stagedEnd         int64 // no extent of ver ends past this
	b                 *chunkstore.Batch
	cut               *Cutter
	epoch             uint64           // bumped whenever ver's extents change
	jobs              []*job           // in flight, in stream order, the first from cutOff
	committing        *committing      // the batch before b, being committed
	spare             []byte           // the array buf gets at the next applyAsync
	newBytes          int64            // chunk bytes this writer added to the store
	pinned            []chunkstore.ID  // chunks the pending batch references
	pages             Pages            // the page hook, once the file streams from offset 0 (nil: none)
	owner             chunkstore.Owner // of the chunks it prepares: its batches commit in order
	err               error
	granted           bool // holds WriterMemoryBound of the store's writer memory
}

// pageStarts returns the known page starts (nil when no page hook
// follows the stream).
func (w *Writer) pageStarts() []int64 {
	if w.pages == nil {
		return nil
	}
	return w.pages.Starts(w.cutOff)
}

// feed passes streamed bytes to the page hook, if one follows.
func (w *Writer) feed(p []byte) {
	if w.pages != nil {
		w.pages.Write(p)
	}
}

// stopPages stops the page hook's following of the stream (a rewrite, or
// a gap it never saw): later pages are stored as plain extents.
func (w *Writer) stopPages() {
	if w.pages != nil {
		w.pages.Stop()
	}
}

// flushPages adds the page hook's pending page run to the batch.
func (w *Writer) flushPages() error {
	if w.pages == nil {
		return nil
	}
	return w.pages.Flush(w.b, w.ver)
}

// job cuts and prepares chunks of a region of the stream in the background.
type job struct {
	off   int64
	data  []byte
	pages []int64 // page starts in or past data, ascending
	// base looks up the i-th page's page in the base image (nil: no
	// base to compare with).
	base func(i int) (index.PageRef, bool, error)
	// prev is the job before it while that one may still run: it
	// prepares only once prev is done, so a chunk repeated in both is
	// prepared (becomes new) in the first, whose batch commits no later.
	prev     *job
	cut      chan struct{} // closed once res and consumed are final
	done     chan struct{}
	res      []cutResult
	consumed int
	err      error
}

// jobDepth is how many jobs a writer has in flight, jobBytes the most
// bytes one job takes: a 4 MiB write of xl save becomes a pipeline of
// four jobs instead of one job the next write waits for.
const (
	jobDepth = 3
	jobBytes = 1 << 20
)

type cutResult struct {
	off    int64
	n      int
	id     chunkstore.ID
	zero   bool
	base   pageCmp // a page compared with the base image's page (the page hook's lookup)
	tag    chunkstore.Tag
	tagged bool   // tag is the page's (a 4 KiB chunk, a store with a tag key)
	byTag  bool   // the tag proved it the base's page (it was not hashed)
	pinned bool   // Prepare pinned id
	value  []byte // encoded chunk, nil for a duplicate
}

// pageCmp is what comparing a page with the base image's page in its
// place (Pages.Base) found.
type pageCmp uint8

const (
	cmpUnknown pageCmp = iota // not compared (yet)
	cmpSame                   // equal: the generation inherits it, no entry
	cmpChanged                // different, or the base has no such page
)

type piece struct {
	off  int64
	data []byte
}

// NewWriter starts the write state of inode in, whose committed content is
// in.Ver with in.Size bytes.
func (s *Store) NewWriter(in index.Inode) *Writer {
	return &Writer{s: s, ino: in.Ino, ver: in.Ver, committedSize: in.Size, size: in.Size, mtime: in.Mtime,
		streamOff: in.Size, cutOff: in.Size, stagedEnd: in.Size, cut: NewCutter(s.cfg.Params), epoch: s.NewEpoch(), owner: s.chunks.NewOwner()}
}

func (w *Writer) touch() { w.epoch = w.s.NewEpoch() }

// newBatch returns a batch of the writer's: its chunks are the writer's
// (chunkstore.Owner), so later batches may reference them before they
// are committed.
func (w *Writer) newBatch() *chunkstore.Batch {
	b := w.s.db.NewBatch()
	b.Owner = w.owner
	return b
}

// Size is the file's current size, mtime its modification time.
func (w *Writer) Size() int64  { return w.size }
func (w *Writer) Mtime() int64 { return w.mtime }

// SetMtime records a modification time set explicitly (utimens).
func (w *Writer) SetMtime(t int64) { w.mtime = t; w.dirty = true }

// Dirty reports whether there is anything to commit.
func (w *Writer) Dirty() bool { return w.dirty }

// beforeMutate is called before a mutation that touches bytes at and past from
// and keeps at most keep bytes of the current content.
//
// It does not wait for the job in flight: appends may overlap it, and every
// path below that restructures state (flushAll) reaps it first.
func (w *Writer) beforeMutate(from, keep int64) error {
	w.dirty = true
	if w.b == nil {
		w.b = w.newBatch()
	}
	if w.staged {
		return nil
	}
	if from < w.committedSize {
		// Copy-on-write of the extent list: the committed content stays
		// readable until Commit.
		if err := w.flushAll(); err != nil {
			return err
		}
		b := w.newBatch()
		keep = min(keep, w.size)
		ver, err := w.s.ext.Stage(b.Batch, w.ino, w.ver, keep)
		if err == nil {
			err = b.Commit(pebble.NoSync)
		}
		if err != nil {
			return err
		}
		w.ver, w.staged, w.cleaned = ver, true, true
		w.stagedEnd = keep
		w.touch()
		return nil
	}
	if !w.cleaned {
		// A crash may have left extents past the committed size.
		if err := w.s.ext.TruncateExtents(w.b.Batch, w.ino, w.ver, w.committedSize); err != nil {
			return err
		}
		w.cleaned = true
	}
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil && err != nil {
		w.err = err
	}
	return err
}

// WriteAt writes p at off. Once it returns, reads see the bytes.
//
// A writer streams (buffers up to Config.WriterMemoryBound between calls)
// only while it holds a grant of that much from the store's writer memory
// (Config.WriterMemory); without one it flushes what it was given before
// returning and holds no buffers between calls: slower, and page-mode
// dedup may lose the page a write boundary splits, but the daemon's
// memory for writers stays bounded however many files are open.
func (w *Writer) WriteAt(p []byte, off int64, now int64) error {
	return w.write(p, off, now, false)
}

// WriteAtHeld is WriteAt of bytes the store holds room for (Store.Hold):
// they are not refused for a full disk. The hold of len(p) bytes is
// taken, whether the write succeeds or not.
func (w *Writer) WriteAtHeld(p []byte, off int64, now int64) error {
	if w.s.holds != nil {
		w.s.holds.UseHeld(len(p))
	}
	return w.write(p, off, now, true)
}

// write is WriteAt; held: the bytes' room is held, not to be admitted.
func (w *Writer) write(p []byte, off int64, now int64, held bool) error {
	if w.err != nil {
		return w.err
	}
	if !w.granted {
		w.granted = w.s.writerMem.TryAcquire(int64(w.s.cfg.WriterMemoryBound()))
		if w.granted {
			w.s.stats.WritersStreaming.Add(1)
		}
	}
	err := w.writeAt(p, off, now, held)
	if err == nil && !w.granted {
		w.s.stats.WritesDirect.Add(1)
		if err = w.flushAll(); err != nil {
			return w.fail(err)
		}
		w.settle()
		w.buf, w.spare = nil, nil
	}
	return err
}

// release gives the writer's memory grant back.
func (w *Writer) release() {
	if w.granted {
		w.granted = false
		w.s.writerMem.Release(int64(w.s.cfg.WriterMemoryBound()))
		w.s.stats.WritersStreaming.Add(-1)
	}
}

func (w *Writer) writeAt(p []byte, off int64, now int64, held bool) error {
	if off < 0 || off+int64(len(p)) < off {
		return fmt.Errorf("write at %d: %w", off, index.ErrInval)
	}
	if len(p) == 0 {
		return nil
	}
	if w.s.admit != nil && !held {
		if err := w.s.admit(len(p)); err != nil {
			return w.fail(err)
		}
	}
	if err := w.beforeMutate(off, w.size); err != nil {
		return w.fail(err)
	}
	w.mtime = now
	w.s.stats.BytesWritten.Add(int64(len(p)))
	end := off + int64(len(p))
	streamEnd := w.streamOff + int64(len(w.buf))
	if off != streamEnd || len(w.ahead) > 0 {
		if err := w.reap(); err != nil {
			return w.fail(err)
		}
	}
	if off == 0 && w.size == 0 && w.stagedEnd == 0 && w.s.cfg.Pages != nil && (w.pages == nil || !w.pages.Following()) {
		// A new file streaming from its first byte: perhaps a memory
		// image the page hook knows. It gives up at once on anything
		// else.
		if w.pages == nil {
			w.pages = w.s.cfg.Pages(w.ino)
		}
		w.pages.Follow()
	}
	switch {
	case off >= w.cutOff && off <= streamEnd && !w.overlapsAhead(off, end):
		// The stream's next bytes, or a rewrite of bytes not cut yet.
		n := copy(w.buf[off-w.streamOff:], p)
		if n > 0 {
			w.stopPages() // rewritten: the hook's view no longer holds
		}
		w.feed(p[n:])
		w.grow(len(p) - n)
		w.buf = append(w.buf, p[n:]...)
		w.drainAhead()
	case off > streamEnd && off-streamEnd <= int64(w.s.cfg.Window) &&
		w.aheadBytes+len(p) <= w.s.cfg.Window && !w.overlapsAhead(off, end):
		w.addAhead(off, p)
	default:
		if err := w.flushAll(); err != nil {
			return w.fail(err)
		}
		w.stopPages()
		w.streamOff, w.cutOff = off, off
		w.buf = append(w.buf[:0], p...)
	}
	w.size = max(w.size, end)
	if err := w.reapDone(); err != nil {
		return w.fail(err)
	}
	if w.cutOff < w.stagedEnd {
		if err := w.reap(); err != nil {
			return w.fail(err)
		}
		return w.fail(w.cutReady())
	}
	for {
		if w.cutOff-w.streamOff >= int64(w.s.cfg.BatchBytes) {
			if err := w.applyAsync(); err != nil {
				return w.fail(err)
			}
		}
		if err := w.startJobs(); err != nil {
			return w.fail(err)
		}
		// startJobs may have reaped: a batch may be full again.
		if w.cutOff-w.streamOff < int64(w.s.cfg.BatchBytes) {
			return nil
		}
	}
}

// startJobs hands the uncut bytes nobody has taken yet to background
// jobs, jobBytes at a time, while there is a whole chunk's worth; with
// jobDepth in flight it reaps the first. Only for appends past every
// staged extent: no overlay.
func (w *Writer) startJobs() error {
	for {
		from, seen := w.cutOff, w.cutOff
		var prev *job
		if n := len(w.jobs); n > 0 {
			prev = w.jobs[n-1]
			<-prev.cut
			from, seen = prev.off+int64(prev.consumed), prev.off+int64(len(prev.data))
		}
		end := w.streamOff + int64(len(w.buf))
		if end <= seen || end-from < int64(w.s.cfg.Params.Max) {
			return nil // nothing new, or less than a chunk
		}
		if len(w.jobs) >= jobDepth {
			if err := w.reapOne(); err != nil {
				return err
			}
			continue
		}
		data := w.buf[from-w.streamOff:]
		data = data[:min(len(data), jobBytes):min(len(data), jobBytes)]
		j := &job{off: from, data: data, prev: prev,
			cut: make(chan struct{}), done: make(chan struct{})}
		if w.pages != nil {
			j.pages, j.base = w.pages.Base(from)
		}
		w.jobs = append(w.jobs, j)
		go w.process(j)
	}
}

// process runs in the background: it reads only j.data, the base
// generation's page map (j.base, which the foreground leaves alone
// while a job runs) and the store. The cut is sequential (a rolling hash);
// the rest runs on every core, in three steps:
//
//  1. each chunk is checked for zeros and hashed (BLAKE3), in parallel;
//  2. each page is compared with the base image's page in its place (the
//     page hook's lookup, in order: for xen/lineage one forward pass of
//     the base generation's page map);
//  3. every chunk that is neither zero nor the base's page is checked
//     against the store (dedup, which pins it) and compressed if new, in
//     parallel; a chunk repeated within the job is prepared once.
//
// A page whose id equals the base's is stored as nothing at all: the new
// generation is a delta on the base and inherits the entry. The id is the
// proof of equality (a BLAKE3-256 collision would be needed to fool it, the
// same trust dedup already puts in ids), and the chunk it names stays
// stored while this generation is being written: gc reclaims no
// generation whose successor in the chain is still in flight, so every
// entry the base sees, and the chunk reference it holds, outlives the
// writer (lineage.Maps.ReclaimGen, "blocked").
func (w *Writer) process(j *job) {
	defer close(j.done)
	for {
		rest := j.data[j.consumed:]
		n := w.cut.next(j.off+int64(j.consumed), rest, j.pages, false)
		if n == 0 {
			break
		}
		j.res = append(j.res, cutResult{off: j.off + int64(j.consumed), n: n})
		j.consumed += n
	}
	close(j.cut) // the next job may start where this one stops
	chunk := func(r *cutResult) []byte { return j.data[r.off-j.off:][:r.n] }
	key := w.s.chunks.TagKey()
	parallel(len(j.res), func(i int) {
		r := &j.res[i]
		if c := chunk(r); chunkstore.IsZero(c) {
			r.zero = true
		} else if r.n == PageSize && key != nil {
			r.tag, r.tagged = chunkstore.PageTag(key, c), true
		}
	})
	// Pages whose tag equals their base page's are unchanged: no BLAKE3.
	if j.err = j.compareBases(true); j.err != nil {
		return
	}
	parallel(len(j.res), func(i int) {
		if r := &j.res[i]; !r.zero && r.base != cmpSame {
			r.id = chunkstore.Sum(chunk(r))
		}
	})
	// The rest (a base entry without a tag: written before format 4)
	// compare by id.
	if j.err = j.compareBases(false); j.err != nil {
		return
	}
	first := make(map[chunkstore.ID]struct{}, len(j.res))
	var todo []int
	for i := range j.res {
		r := &j.res[i]
		if r.zero || r.base == cmpSame {
			continue
		}
		if _, dup := first[r.id]; !dup {
			first[r.id] = struct{}{}
			todo = append(todo, i)
		}
	}
	if j.prev != nil {
		<-j.prev.done
		j.prev = nil
	}
	errs := make([]error, len(todo))
	parallel(len(todo), func(k int) {
		r := &j.res[todo[k]]
		r.value, errs[k] = w.s.chunks.Prepare(w.owner, nil, r.id, chunk(r))
		r.pinned = errs[k] == nil
	})
	j.err = errors.Join(errs...)
}

// compareBases compares the job's pages with the base generation's: by
// tag (byTag: a page whose tag equals the base entry's is the same, and
// gets the base's id), else by id, for the pages not decided yet.
func (j *job) compareBases(byTag bool) error {
	if j.base == nil {
		return nil
	}
	p := 0
	for i := range j.res {
		r := &j.res[i]
		if r.n != PageSize || r.base != cmpUnknown {
			continue
		}
		for p < len(j.pages) && j.pages[p] < r.off {
			p++
		}
		if p == len(j.pages) || j.pages[p] != r.off {
			continue
		}
		old, found, err := j.base(p)
		if err != nil {
			return err
		}
		switch {
		case !found:
			r.base = cmpChanged
		case byTag && r.zero:
			r.base = cmpChanged
			if old.Zero {
				r.base = cmpSame
			}
		case byTag && r.tagged && old.Tagged && !old.Zero:
			r.base = cmpChanged
			if old.Tag == r.tag {
				r.base, r.id, r.byTag = cmpSame, old.ID, true
			}
		case byTag:
			// No tag to compare: by id, once hashed.
		case found && old.Holds(r.id, r.zero):
			r.base = cmpSame
		default:
			r.base = cmpChanged
		}
	}
	return nil
}

// parallel calls fn(0..n-1) on up to GOMAXPROCS goroutines (this one
// included), each over a contiguous share, and returns when all are done.
func parallel(n int, fn func(i int)) {
	procs := min(runtime.GOMAXPROCS(0), n/parallelMin)
	if procs <= 1 {
		for i := 0; i < n; i++ {
			fn(i)
		}
		return
	}
	var wg sync.WaitGroup
	share := (n + procs - 1) / procs
	for lo := share; lo < n; lo += share {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				fn(i)
			}
		}(lo, min(n, lo+share))
	}
	for i := 0; i < share; i++ {
		fn(i)
	}
	wg.Wait()
}

// parallelMin is the least work items worth a goroutine of their own.
const parallelMin = 16

// reap waits for every job in flight and records their results, in
// order; it returns the first error.
func (w *Writer) reap() error {
	var err error
	for len(w.jobs) > 0 {
		if e := w.reapOne(); err == nil {
			err = e
		}
	}
	return err
}

// reapDone records the results of the jobs already done, in order,
// without waiting.
func (w *Writer) reapDone() error {
	for len(w.jobs) > 0 {
		select {
		case <-w.jobs[0].done:
		default:
			return nil
		}
		if err := w.reapOne(); err != nil {
			return err
		}
	}
	return nil
}

// reapOne waits for the first job in flight and records its chunks
// and extents.
func (w *Writer) reapOne() error {
	j := w.jobs[0]
	<-j.done
	w.jobs[0] = nil
	w.jobs = w.jobs[1:]
	for _, r := range j.res {
		if r.pinned {
			w.pinned = append(w.pinned, r.id)
		}
	}
	if j.err != nil {
		return j.err
	}
	if j.off != w.cutOff {
		return fmt.Errorf("content: job at %d reaped at %d", j.off, w.cutOff)
	}
	st := &w.s.stats
	for _, r := range j.res {
		w.touch()
		if r.byTag {
			st.PagesByTag.Add(1)
		}
		switch {
		case r.zero:
			st.ChunksZero.Add(1)
		case r.value != nil:
			st.ChunksNew.Add(1)
			st.StoredBytes.Add(int64(len(r.value)))
			w.newBytes += int64(len(r.value))
			if err := w.s.chunks.SetPrepared(w.b, r.id, r.value); err != nil {
				return err
			}
		default:
			st.ChunksDup.Add(1)
		}
		if err := w.putRef(r.off, r.n, index.PageRef{ID: r.id, Zero: r.zero, Tag: r.tag, Tagged: r.tagged}, false, r.base); err != nil {
			return err
		}
	}
	w.cutOff += int64(j.consumed)
	w.pageStarts() // drops the starts of pages wholly cut
	return nil
}

// putRef maps file bytes [off, off+n) to chunk id (or zero): a page the
// page hook records is its own, anything else is an extent.
func (w *Writer) putRef(off int64, n int, ref index.PageRef, overlay bool, base pageCmp) error {
	end := off + int64(n)
	id, zero := ref.ID, ref.Zero
	if !overlay && n == PageSize && w.pages != nil {
		ok, err := w.pages.Record(w.b, w.ver, off, ref, base != cmpUnknown, base == cmpSame)
		if err != nil {
			return err
		}
		if ok {
			w.stagedEnd = max(w.stagedEnd, end)
			return nil
		}
	}
	switch {
	case zero && overlay:
		return w.s.ext.Punch(w.b.Batch, w.ino, w.ver, off, end)
	case zero:
		return nil
	}
	w.stagedEnd = max(w.stagedEnd, end)
	e := index.Extent{Off: off, Len: int64(n), ID: id}
	if overlay {
		return w.s.ext.Overlay(w.b.Batch, w.ino, w.ver, e)
	}
	return w.s.ext.AddExtent(w.b.Batch, w.ino, w.ver, e)
}

func (w *Writer) overlapsAhead(off, end int64) bool {
	for _, a := range w.ahead {
		if a.off < end && off < a.off+int64(len(a.data)) {
			return true
		}
	}
	return false
}

func (w *Writer) addAhead(off int64, p []byte) {
	i := sort.Search(len(w.ahead), func(i int) bool { return w.ahead[i].off > off })
	w.ahead = append(w.ahead, piece{})
	copy(w.ahead[i+1:], w.ahead[i:])
	w.ahead[i] = piece{off: off, data: append([]byte(nil), p...)}
	w.aheadBytes += len(p)
}

// drainAhead moves pieces that now continue the stream into buf.
func (w *Writer) drainAhead() {
	for len(w.ahead) > 0 && w.ahead[0].off == w.streamOff+int64(len(w.buf)) {
		w.feed(w.ahead[0].data)
		w.buf = append(w.buf, w.ahead[0].data...)
		w.aheadBytes -= len(w.ahead[0].data)
		w.ahead = w.ahead[1:]
	}
	if len(w.ahead) == 0 {
		w.ahead = nil
	}
}

// cutReady cuts every chunk whose boundary is certain.
func (w *Writer) cutReady() error {
	for {
		uncut := w.buf[w.cutOff-w.streamOff:]
		n := w.cut.next(w.cutOff, uncut, w.pageStarts(), false)
		if n == 0 {
			break
		}
		if err := w.emit(w.cutOff, uncut[:n]); err != nil {
			return err
		}
		w.cutOff += int64(n)
	}
	if w.cutOff-w.streamOff >= int64(w.s.cfg.BatchBytes) {
		return w.apply()
	}
	return nil
}

// emit stores one chunk at file offset off and records its extent.
func (w *Writer) emit(off int64, data []byte) error {
	overlay := off < w.stagedEnd
	if overlay {
		// The extent replaces older ones, which Overlay reads: apply first.
		if err := w.applyBatch(); err != nil {
			return err
		}
	}
	w.touch()
	st := &w.s.stats
	var id chunkstore.ID
	zero := chunkstore.IsZero(data)
	if zero {
		st.ChunksZero.Add(1)
	} else {
		id = chunkstore.Sum(data)
		n, err := w.s.chunks.PutID(w.b, id, data)
		w.pinned = append(w.pinned, id)
		if err != nil {
			return err
		}
		if n > 0 {
			st.ChunksNew.Add(1)
			st.StoredBytes.Add(int64(n))
			w.newBytes += int64(n)
		} else {
			st.ChunksDup.Add(1)
		}
	}
	ref := index.PageRef{ID: id, Zero: zero}
	if key := w.s.chunks.TagKey(); key != nil && !zero && len(data) == PageSize {
		ref.Tag, ref.Tagged = chunkstore.PageTag(key, data), true
	}
	return w.putRef(off, len(data), ref, overlay, cmpUnknown)
}

// applyBatch applies the pending batch (without sync), after the one being
// committed in the background, if any.
func (w *Writer) applyBatch() error {
	if err := w.settle(); err != nil {
		return err
	}
	if w.b == nil {
		return nil
	}
	if err := w.flushPages(); err != nil {
		return err
	}
	if w.b.Empty() {
		return nil
	}
	err := w.b.Commit(pebble.NoSync)
	w.b.Close()
	w.b = w.newBatch()
	w.unpin()
	return err
}

// unpin releases the chunks of the batch just applied or dropped.
func (w *Writer) unpin() {
	if len(w.pinned) > 0 {
		w.s.chunks.Unpin(w.pinned...)
		w.pinned = w.pinned[:0]
	}
}

// apply applies the batch and drops the cut bytes from buf.
func (w *Writer) apply() error {
	if err := w.applyBatch(); err != nil {
		return err
	}
	w.dropCut(w.cutOff)
	return nil
}

// committing is a batch of a streaming writer being committed in the
// background, so that the write that filled it returns at once. Until it
// is, the bytes it makes readable are held here (data, from off): the
// writer's buf moves on to a second array with the uncut rest, and the two
// arrays take turns (spare), so a batch costs no copy of its bytes.
type committing struct {
	done   chan struct{}
	err    error
	b      *chunkstore.Batch
	pinned []chunkstore.ID
	off    int64
	data   []byte
	// seen is where the jobs in flight at the hand-over read up to: they
	// read data's array past k, so it is reused only once cutOff is there.
	seen int64
}

// applyAsync hands the batch and its cut bytes to a background commit,
// after the one before it is done. buf changes arrays: jobs in flight go
// on reading the old one.
func (w *Writer) applyAsync() error {
	if err := w.settle(); err != nil {
		return err
	}
	if err := w.flushPages(); err != nil {
		return err
	}
	// The uncut tail moves to the spare array; jobs in flight go on
	// reading old, past k.
	old, off, k, seen := w.buf, w.streamOff, w.cutOff-w.streamOff, w.cutOff
	if n := len(w.jobs); n > 0 {
		seen = w.jobs[n-1].off + int64(len(w.jobs[n-1].data))
	}
	w.buf = w.spare[:0]
	w.grow(len(old) - int(k))
	w.buf = append(w.buf, old[k:]...)
	w.spare, w.streamOff = nil, w.cutOff
	if w.b.Empty() {
		// Nothing to commit (the cut bytes were holes): old is spare
		// at once if no job reads it.
		if seen == w.cutOff {
			w.spare = old[:0]
		}
		return nil
	}
	c := &committing{done: make(chan struct{}), b: w.b, pinned: w.pinned, off: off, data: old[:k], seen: seen}
	w.b, w.pinned, w.committing = w.newBatch(), nil, c
	go func() {
		defer close(c.done)
		c.err = c.b.Commit(pebble.NoSync)
	}()
	return nil
}

// settle waits for the background commit, if any: its pins go, and its
// bytes, readable from the store now, are dropped (touch renews readers'
// cached extents).
func (w *Writer) settle() error {
	c := w.committing
	if c == nil {
		return nil
	}
	<-c.done
	w.committing = nil
	c.b.Close()
	w.s.chunks.Unpin(c.pinned...)
	if w.cutOff >= c.seen {
		w.spare = c.data[:0] // no job reads the array any more
	}
	w.touch()
	return c.err
}

// grow makes room for n more bytes in buf: at once for a whole batch and
// the write that completes it (append's growth of large slices, 1.25x at
// a time, copied the stream several times over), doubling past that.
func (w *Writer) grow(n int) {
	if len(w.buf)+n <= cap(w.buf) {
		return
	}
	need, batch := len(w.buf)+n, w.s.cfg.BatchBytes+int(w.s.cfg.Params.Max)+(1<<20)
	want := need
	switch {
	case !w.granted:
		// Written through: nothing is kept between writes.
	case need <= batch:
		want = batch
	default:
		want = max(need, 2*cap(w.buf))
	}
	w.buf = slices.Grow(w.buf, want-len(w.buf))
}

// dropCut drops the bytes before to, which are applied, from buf.
func (w *Writer) dropCut(to int64) {
	if k := int(to - w.streamOff); k > 0 {
		w.buf = w.buf[:copy(w.buf, w.buf[k:])]
		w.streamOff = to
	}
}

// flushAll cuts and stores everything held in memory, including the reorder
// window, and applies the batch. The stream is then empty.
func (w *Writer) flushAll() error {
	if err := w.reap(); err != nil {
		return err
	}
	if err := w.flushStream(); err != nil {
		return err
	}
	if len(w.ahead) > 0 {
		w.stopPages() // the stream continues past a gap the hook never saw
	}
	for len(w.ahead) > 0 {
		a := w.ahead[0]
		w.ahead = w.ahead[1:]
		w.aheadBytes -= len(a.data)
		w.streamOff, w.cutOff = a.off, a.off
		w.buf = append(w.buf[:0], a.data...)
		if err := w.flushStream(); err != nil {
			return err
		}
	}
	w.ahead = nil
	return nil
}

func (w *Writer) flushStream() error {
	for w.cutOff < w.streamOff+int64(len(w.buf)) {
		uncut := w.buf[w.cutOff-w.streamOff:]
		n := w.cut.next(w.cutOff, uncut, w.pageStarts(), true)
		if err := w.emit(w.cutOff, uncut[:n]); err != nil {
			return err
		}
		w.cutOff += int64(n)
	}
	return w.apply()
}

// Truncate sets the file's size.
func (w *Writer) Truncate(size int64, now int64) error {
	if w.err != nil {
		return w.err
	}
	if size < 0 {
		return index.ErrInval
	}
	if err := w.beforeMutate(size, size); err != nil {
		return w.fail(err)
	}
	w.stopPages()
	if err := w.flushAll(); err != nil {
		return w.fail(err)
	}
	if size < w.stagedEnd {
		if err := w.s.ext.TruncateExtents(w.b.Batch, w.ino, w.ver, size); err != nil {
			return w.fail(err)
		}
		if err := w.applyBatch(); err != nil {
			return w.fail(err)
		}
		w.stagedEnd = size
		w.touch()
	}
	w.size, w.mtime = size, now
	w.streamOff, w.cutOff = size, size
	return nil
}

// ReadAt reads the file as written so far: extents of ver, overlaid by the
// bytes held in memory. c caches extents between calls.
func (w *Writer) ReadAt(c *Cursor, dst []byte, off int64) (int, error) {
	if off >= w.size {
		return 0, nil
	}
	dst = dst[:min(int64(len(dst)), w.size-off)]
	end := off + int64(len(dst))
	if err := w.s.readExtents(c, w.ino, w.ver, w.epoch, dst, off); err != nil {
		return 0, err
	}
	overlay := func(p int64, data []byte) {
		lo, hi := max(off, p), min(end, p+int64(len(data)))
		if lo < hi {
			copy(dst[lo-off:hi-off], data[lo-p:hi-p])
		}
	}
	if c := w.committing; c != nil {
		overlay(c.off, c.data)
	}
	overlay(w.streamOff, w.buf)
	for _, a := range w.ahead {
		overlay(a.off, a.data)
	}
	return len(dst), nil
}

// CommittedImage reports whether the last Commit that had something to
// commit made the file's content a whole memory image (the page hook's
// Committed), and forgets it.
func (w *Writer) CommittedImage() bool {
	img := w.image
	w.image = false
	return img
}

// Commit makes everything written so far durable and the file's committed
// content. Later writes continue in place or stage a new version as needed.
func (w *Writer) Commit() (index.Inode, error) {
	if w.err != nil {
		return index.Inode{}, w.err
	}
	if !w.dirty {
		return index.Inode{}, nil
	}
	if err := w.flushAll(); err != nil {
		return index.Inode{}, w.fail(err)
	}
	in, err := w.s.ext.Commit(w.ino, w.ver, w.size, w.mtime)
	if err != nil {
		return in, w.fail(err)
	}
	if w.pages != nil {
		image, err := w.pages.Committed(w.size, w.newBytes)
		if err != nil {
			return in, w.fail(err)
		}
		if image {
			w.s.stats.Images.Add(1)
			w.image = true
		}
	}
	w.staged, w.committedSize, w.dirty = false, w.size, false
	w.streamOff, w.cutOff = w.size, w.size
	return in, nil
}

// Close releases the writer's batch and its memory grant. Uncommitted
// writes are dropped.
func (w *Writer) Close() {
	defer w.release()
	w.reap()
	w.settle()
	if w.b != nil {
		w.b.Close()
		w.b = nil
	}
	w.unpin()
	if w.err != nil && !w.staged && w.dirty {
		// A failed writer (a full disk) may have applied appends past the
		// committed size: drop them now, so their chunks go to gc.
		b := w.newBatch()
		if w.s.ext.TruncateExtents(b.Batch, w.ino, w.ver, w.committedSize) == nil {
			_ = b.Commit(pebble.NoSync) // best effort: the next writer drops them too
		}
		b.Close()
	}
	if w.pages != nil {
		w.pages.Close()
		w.pages = nil
	}
}
