// Package content turns a file's bytes into chunks and extents and back. It
// holds the byte and offset arithmetic of the write and read paths, with no
// FUSE in it: package fs calls it from its handlers.
package content

import (
	"bytes"

	"github.com/restic/chunker"
)

// Pol is the Rabin polynomial of the chunker. Chunk boundaries depend on it,
// so changing it stops new data from deduplicating against old: it is part
// of the store format in spirit, if not in bytes.
const Pol = chunker.Pol(0x3DA3358B4DC173)

// Params are content-defined chunking parameters.
type Params struct {
	Min, Max uint // chunk size bounds in bytes
	AvgBits  int  // a boundary where the low AvgBits of the fingerprint are zero
}

// DefaultParams were chosen by BenchmarkChunkParams / TestChunkParams: on
// memory-image data with 1% of 4 KiB pages dirtied they keep most of the
// unchanged bytes deduplicated while keeping per-chunk overhead low. See the
// README for the figures.
var DefaultParams = Params{Min: 32 << 10, Max: 128 << 10, AvgBits: 14}

// Cutter finds chunk boundaries with restic's chunker. Each call starts at a
// chunk boundary, exactly as a continuous chunker would after a cut (the
// chunker resets its state at every boundary), so cutting a stream piecewise
// yields the same chunks as cutting it whole.
type Cutter struct {
	p   Params
	c   *chunker.Chunker
	rd  bytes.Reader
	buf []byte
}

// NewCutter returns a cutter for p.
func NewCutter(p Params) *Cutter {
	// NewWithBoundaries allocates the chunker's read buffer, which Reset keeps.
	return &Cutter{p: p, c: chunker.NewWithBoundaries(nil, Pol, p.Min, p.Max), buf: make([]byte, 0, p.Max)}
}

// Cut returns the length of the first chunk of data. The boundary is real
// (content-defined or Max) only if len(data) >= Max or data ends the stream.
func (c *Cutter) Cut(data []byte) int {
	if uint(len(data)) <= c.p.Min {
		return len(data)
	}
	// The chunker fills its 512 KiB buffer with io.ReadFull; a chunk never
	// exceeds Max, so offering more only costs copying.
	c.rd.Reset(data[:min(uint(len(data)), c.p.Max)])
	c.c.ResetWithBoundaries(&c.rd, Pol, c.p.Min, c.p.Max)
	c.c.SetAverageBits(c.p.AvgBits)
	ch, err := c.c.Next(c.buf[:0])
	if err != nil { // only io.EOF on empty input, excluded above
		return len(data)
	}
	return int(ch.Length)
}

// next returns the length of the chunk that starts at file offset off with
// data (the uncut bytes from there), or 0 if its end is not certain yet.
// pages are the known starts of PageSize page payloads (the page hook's),
// ascending: a page is a chunk of its own, the bytes between pages
// are cut by content. final says data ends the stream.
func (c *Cutter) next(off int64, data []byte, pages []int64, final bool) int {
	for len(pages) > 0 && pages[0]+PageSize <= off {
		pages = pages[1:]
	}
	if len(pages) > 0 {
		s := pages[0]
		if s <= off { // inside a page payload
			n := s + PageSize - off
			if n <= int64(len(data)) {
				return int(n)
			}
			if final {
				return len(data)
			}
			return 0
		}
		if s-off <= int64(len(data)) { // meta bytes up to a page: a hard boundary
			return c.Cut(data[:s-off])
		}
	}
	if uint(len(data)) >= c.p.Max || (final && len(data) > 0) {
		return c.Cut(data)
	}
	return 0
}

// Split cuts data, a whole stream, into chunk lengths.
func (p Params) Split(data []byte) []int {
	c := NewCutter(p)
	var out []int
	for len(data) > 0 {
		n := c.Cut(data)
		out = append(out, n)
		data = data[n:]
	}
	return out
}
