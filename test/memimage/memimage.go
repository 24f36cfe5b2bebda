// Package memimage generates deterministic memory-image-like data for tests and
// benchmarks: a guest's memory as 4 KiB pages, some zero, some copies of a few
// common pages, some text-like or structure-like (compressible), some random
// (incompressible). Generation n of an image dirties a chosen fraction of pages.
//
// It is test support: it imports nothing of ckptfs.
package memimage

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
)

// PageSize is the guest page size.
const PageSize = 4096

// Mix is the share of each page kind, in percent; they should sum to 100.
type Mix struct {
	Zero, Repeated, Text, Struct, Random int
}

// DefaultMix resembles an idle Linux guest: many zero pages, some page cache
// and kernel structures, some random-looking data.
var DefaultMix = Mix{Zero: 40, Repeated: 10, Text: 20, Struct: 15, Random: 15}

// Image describes a generated image: Pages pages, generation Gen, of which a
// fraction Dirty of the pages changes in every generation after the first.
type Image struct {
	Seed  uint64
	Pages int64
	Gen   int
	Dirty float64
	Mix   Mix
}

func mix64(a, b, c uint64) uint64 {
	x := a*0x9E3779B97F4A7C15 ^ b*0xC2B2AE3D27D4EB4F ^ c*0x165667B19E3779F9
	x ^= x >> 31
	x *= 0xD6E8FEB86659FD93
	x ^= x >> 32
	return x
}

// Version is the generation in which page p was last written.
func (im Image) Version(p int64) int {
	for g := im.Gen; g > 0; g-- {
		if float64(mix64(im.Seed, uint64(p), uint64(g))%1_000_000)/1_000_000 < im.Dirty {
			return g
		}
	}
	return 0
}

var words = []string{"the ", "kernel ", "page ", "cache ", "struct ", "return ", "int ", "if (", "err", ");\n",
	"for ", "xen ", "domain ", "memory ", "0x", "ffff", "88", "\t", "}\n", "{\n", "void ", "*p", " = ", "NULL"}

// Page writes page p of the image into buf (len PageSize).
func (im Image) Page(p int64, buf []byte) {
	v := im.Version(p)
	h := mix64(im.Seed, uint64(p), 1<<40|uint64(v))
	m := im.Mix
	kind := int(h % 100)
	r := rand.New(rand.NewPCG(h, uint64(p)))
	switch {
	case kind < m.Zero:
		clear(buf)
	case kind < m.Zero+m.Repeated:
		// one of 16 common pages (e.g. a filled pattern)
		k := byte(h >> 8 % 16)
		for i := range buf {
			buf[i] = k*17 + byte(i%251)
		}
	case kind < m.Zero+m.Repeated+m.Text:
		n := 0
		for n < len(buf) {
			n += copy(buf[n:], words[r.IntN(len(words))])
		}
	case kind < m.Zero+m.Repeated+m.Text+m.Struct:
		clear(buf)
		for i := 0; i < len(buf); i += 64 {
			if r.IntN(3) == 0 {
				binary.LittleEndian.PutUint64(buf[i:], 0xffff888000000000|r.Uint64()&0xfffffff8)
				binary.LittleEndian.PutUint32(buf[i+8:], uint32(r.IntN(1024)))
			}
		}
	default:
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
	}
}

// Bytes returns the whole image.
func (im Image) Bytes() []byte {
	b := make([]byte, im.Pages*PageSize)
	for p := int64(0); p < im.Pages; p++ {
		im.Page(p, b[p*PageSize:(p+1)*PageSize])
	}
	return b
}

// Reader streams the image.
func (im Image) Reader() io.Reader { return &reader{im: im} }

type reader struct {
	im   Image
	p    int64
	page [PageSize]byte
	off  int
}

func (r *reader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if r.off == 0 || r.off == PageSize {
			if r.p >= r.im.Pages {
				break
			}
			r.im.Page(r.p, r.page[:])
			r.p++
			r.off = 0
		}
		c := copy(b[n:], r.page[r.off:])
		r.off += c
		n += c
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Random returns n pseudo-random bytes from seed.
func Random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}
