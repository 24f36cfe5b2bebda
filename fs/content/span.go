package content

import (
	"sync"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// A sequential reader of committed content (xl restore, cp, rsync) is
// served from spans: consecutive 4 MiB ranges of the file that background
// goroutines resolve, read and decode ahead of it, each into a buffer of
// its own, so that a read is one copy out of a span. Every page is decoded
// straight into its place in the span (no buffer per page, no cache entry
// per page), the spans in flight decode on every core, and a span's pages
// come from one page-map resolve and one GetManyEncoded call (its records,
// sorted, in as few reads as they lie in). Anything else (a seek, a read
// behind the spans, a changed version) reads through the cursor as before.

// spanSize is how many bytes one span holds: a page-map block's worth of
// pages, so that a span resolves each block about once.
const spanSize = 4 << 20

// spanLag is how far behind a reader a span stays.
const spanLag = 2 << 20

// spanPages bounds the pages of page runs a span resolves.
const spanPages = spanSize/PageSize + 2

// spanMemory bounds the span buffers of all readers together (16 readers
// reading 8 MiB ahead); a reader that finds none free reads through its
// cursor.
const spanMemory = 16 * (8<<20 + spanSize)

var spanBufs = sync.Pool{New: func() any { b := make([]byte, spanSize); return &b }}

// span is file bytes [off, off+n) of one version, read ahead.
type span struct {
	off  int64
	n    int
	buf  *[]byte
	done chan struct{}
	err  error
}

// spans are one reader's spans: contiguous, in file order, ahead of it.
type spans struct {
	ino, ver, epoch uint64
	size            int64
	list            []*span
	next            int64 // where the next span starts
}

// release gives x's buffer back once its filler is done (if it is not yet,
// the buffer goes to the garbage collector instead) and its memory grant.
func (s *Store) releaseSpan(x *span) {
	select {
	case <-x.done:
		spanBufs.Put(x.buf)
	default:
		go func() { <-x.done; spanBufs.Put(x.buf) }()
	}
	s.spanMem.Release(spanSize)
}

// CloseCursor releases what c holds beyond its memory: the spans a
// sequential reader read ahead. Call it when the reader is done (a
// handle's release).
func (s *Store) CloseCursor(c *Cursor) { s.dropSpans(c) }

func (s *Store) dropSpans(c *Cursor) {
	if c.sp == nil {
		return
	}
	for _, x := range c.sp.list {
		s.releaseSpan(x)
	}
	c.sp = nil
}

// startSpans starts reading ahead in spans from off, for a reader that
// reads in sequence.
func (s *Store) startSpans(c *Cursor, ino, ver, epoch uint64, size, off int64) {
	s.dropSpans(c)
	if off >= size {
		return
	}
	c.sp = &spans{ino: ino, ver: ver, epoch: epoch, size: size, next: off}
	s.scheduleSpans(c.sp, off)
}

// scheduleSpans starts spans until ReadAhead bytes past pos are covered,
// as far as the span memory allows.
func (s *Store) scheduleSpans(sp *spans, pos int64) {
	limit := min(sp.size, pos+s.cfg.ReadAhead)
	for sp.next < limit && s.spanMem.TryAcquire(spanSize) {
		x := &span{off: sp.next, n: int(min(spanSize, sp.size-sp.next)), buf: spanBufs.Get().(*[]byte), done: make(chan struct{})}
		sp.list = append(sp.list, x)
		sp.next += int64(x.n)
		s.bg.Add(1) // Close waits for it: it reads the store
		go func(ino, ver, epoch uint64) {
			defer s.bg.Done()
			defer close(x.done)
			x.err = s.fillSpan(x, ino, ver, epoch)
		}(sp.ino, sp.ver, sp.epoch)
	}
}

// readSpans serves the read of dst at off from c's spans, if they hold
// it; false sends the reader through its cursor (and drops spans that no
// longer fit).
func (s *Store) readSpans(c *Cursor, ino, ver, epoch uint64, size int64, dst []byte, off int64) bool {
	sp := c.sp
	if sp == nil {
		return false
	}
	if sp.ino != ino || sp.ver != ver || sp.epoch != epoch || sp.size != size {
		s.dropSpans(c)
		return false
	}
	end := off + int64(len(dst))
	// A span is kept until the reader is spanLag past it: the kernel
	// sends a sequential reader's reads (its read-ahead) several at once,
	// and they arrive slightly out of order.
	for len(sp.list) > 0 && sp.list[0].off+int64(sp.list[0].n)+spanLag <= off {
		s.releaseSpan(sp.list[0])
		sp.list = sp.list[1:]
	}
	if len(sp.list) == 0 || sp.list[0].off > off || end > sp.next {
		if len(sp.list) == 0 || off > sp.next || end+spanLag < sp.list[0].off {
			s.dropSpans(c) // the reader is elsewhere
		}
		return false // a read just behind the spans: through the cursor, the spans stay
	}
	for _, x := range sp.list {
		if x.off >= end {
			break
		}
		if x.off+int64(x.n) <= off {
			continue // kept behind the reader
		}
		<-x.done
		if x.err != nil {
			s.dropSpans(c) // the cursor's read reports it
			return false
		}
		from, to := max(off, x.off), min(end, x.off+int64(x.n))
		copy(dst[from-off:to-off], (*x.buf)[from-x.off:to-x.off])
	}
	c.lastEnd = end
	s.stats.SpanReads.Add(1)
	s.scheduleSpans(sp, end)
	return true
}

// spanPiece is where one chunk's bytes go in a span.
type spanPiece struct {
	at, n int   // bytes [at, at+n) of the span
	co    int64 // from the chunk's byte co
}

// fillSpan reads and decodes x's bytes of version ver.
func (s *Store) fillSpan(x *span, ino, ver, epoch uint64) error {
	buf := (*x.buf)[:x.n]
	var cur Cursor
	pieces := map[chunkstore.ID][]spanPiece{}
	var ids []chunkstore.ID
	var hints []chunkstore.Hint
	err := s.walk(&cur, ino, ver, epoch, x.off, x.off+int64(x.n), func(pos int64) error { return s.loadPages(&cur, ino, ver, epoch, pos, spanPages) },
		func(pos, n int64, e *index.Extent) error {
			at := int(pos - x.off)
			if e == nil {
				clear(buf[at : at+int(n)])
				return nil
			}
			ps, seen := pieces[e.ID]
			if !seen {
				ids, hints = append(ids, e.ID), append(hints, e.Hint)
			}
			pieces[e.ID] = append(ps, spanPiece{at: at, n: int(n), co: e.ChunkOff + (pos - e.Off)})
			return nil
		})
	if err != nil {
		return err
	}
	var ferr error
	var scratch []byte
	s.chunks.GetManyEncoded(ids, hints, func(i int, v []byte, err error) {
		var n int
		if err == nil {
			n, err = chunkstore.DecodedLen(v)
		}
		if err == nil {
			err = decodePieces(buf, v, n, pieces[ids[i]], &scratch)
		}
		if err != nil && ferr == nil {
			ferr = err
		}
	})
	return ferr
}

// decodePieces decodes value v (of n plain bytes) into each of its pieces
// of buf: straight into place where a piece is the whole chunk, else
// through scratch.
func decodePieces(buf, v []byte, n int, ps []spanPiece, scratch *[]byte) error {
	var plain []byte // the chunk decoded once, if a piece needs part of it
	for k, p := range ps {
		if p.co+int64(p.n) > int64(n) {
			return chunkstore.ErrCorrupt
		}
		if p.co == 0 && p.n == n {
			if plain != nil {
				copy(buf[p.at:p.at+p.n], plain)
				continue
			}
			if err := chunkstore.DecodeInto(buf[p.at:p.at+p.n], v); err != nil {
				return err
			}
			if k+1 < len(ps) {
				plain = buf[p.at : p.at+p.n] // later pieces copy it
			}
			continue
		}
		if plain == nil {
			if cap(*scratch) < n {
				*scratch = make([]byte, n)
			}
			plain = (*scratch)[:n]
			if err := chunkstore.DecodeInto(plain, v); err != nil {
				return err
			}
		}
		copy(buf[p.at:p.at+p.n], plain[p.co:])
	}
	return nil
}
