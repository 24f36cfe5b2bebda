package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"syscall"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// Key prefixes owned by this package. Part of the on-disk format. The
// prefixes of package xen/lineage are ExtensionPrefixes.
const (
	prefixDirent  = 'd'
	prefixExtent  = 'e'
	prefixInode   = 'i'
	prefixMeta    = 'm'
	prefixOrphan  = 'o'
	prefixStaging = 's'
	// Format version 2.
	prefixRef       = 'r' // 'r' | id | holder -> empty: a reference to chunk id
	prefixCandidate = 'g' // 'g' | id -> empty: id lost a reference; gc checks it
)

// ErrCorrupt marks index records that fail to decode.
var ErrCorrupt = errors.New("corrupt index record")

func inodeKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixInode}, ino)
}

func direntPrefix(parent uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixDirent}, parent)
}

func direntKey(parent uint64, name string) []byte {
	return append(direntPrefix(parent), name...)
}

func extentPrefix(ino, ver uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixExtent}, ino)
	return binary.BigEndian.AppendUint64(k, ver)
}

func extentKey(ino, ver uint64, off int64) []byte {
	return binary.BigEndian.AppendUint64(extentPrefix(ino, ver), uint64(off))
}

func stagingKey(ino, ver uint64) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixStaging}, ino)
	return binary.BigEndian.AppendUint64(k, ver)
}

func orphanKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixOrphan}, ino)
}

var nextInoKey = []byte("mnextino")

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		e[i]++
		if e[i] != 0 {
			return e[:i+1]
		}
	}
	return nil
}

// Inode is a file, directory or symlink.
type Inode struct {
	Ino   uint64
	Mode  uint32 // type and permission bits, as in stat(2)
	UID   uint32
	GID   uint32
	Nlink uint32
	Size  int64
	// Ver is the content version whose extents are the file's committed
	// content. Writers stage new content under another version.
	Ver                 uint64
	Atime, Mtime, Ctime int64  // nanoseconds since the Unix epoch
	Target              string // symlink target
	Rdev                uint32 // device number of a character or block device
}

// isDevice reports whether mode is a character or block device's.
func isDevice(mode uint32) bool {
	t := mode & syscall.S_IFMT
	return t == syscall.S_IFCHR || t == syscall.S_IFBLK
}

const inodeFixed = 4*4 + 8*5

// encodeInode: see the value table in doc.go.
func encodeInode(in *Inode) []byte {
	b := make([]byte, 0, inodeFixed+len(in.Target))
	b = binary.BigEndian.AppendUint32(b, in.Mode)
	b = binary.BigEndian.AppendUint32(b, in.UID)
	b = binary.BigEndian.AppendUint32(b, in.GID)
	b = binary.BigEndian.AppendUint32(b, in.Nlink)
	b = binary.BigEndian.AppendUint64(b, uint64(in.Size))
	b = binary.BigEndian.AppendUint64(b, in.Ver)
	b = binary.BigEndian.AppendUint64(b, uint64(in.Atime))
	b = binary.BigEndian.AppendUint64(b, uint64(in.Mtime))
	b = binary.BigEndian.AppendUint64(b, uint64(in.Ctime))
	if isDevice(in.Mode) {
		return binary.BigEndian.AppendUint32(b, in.Rdev)
	}
	return append(b, in.Target...)
}

func decodeInode(ino uint64, b []byte) (Inode, error) {
	if len(b) < inodeFixed {
		return Inode{}, fmt.Errorf("inode %d: %w: %d bytes", ino, ErrCorrupt, len(b))
	}
	in := Inode{Ino: ino}
	in.Mode = binary.BigEndian.Uint32(b[0:])
	in.UID = binary.BigEndian.Uint32(b[4:])
	in.GID = binary.BigEndian.Uint32(b[8:])
	in.Nlink = binary.BigEndian.Uint32(b[12:])
	in.Size = int64(binary.BigEndian.Uint64(b[16:]))
	in.Ver = binary.BigEndian.Uint64(b[24:])
	in.Atime = int64(binary.BigEndian.Uint64(b[32:]))
	in.Mtime = int64(binary.BigEndian.Uint64(b[40:]))
	in.Ctime = int64(binary.BigEndian.Uint64(b[48:]))
	in.Target = string(b[inodeFixed:])
	if isDevice(in.Mode) {
		if len(b) != inodeFixed+4 {
			return Inode{}, fmt.Errorf("inode %d: %w: device inode of %d bytes", ino, ErrCorrupt, len(b))
		}
		in.Target, in.Rdev = "", binary.BigEndian.Uint32(b[inodeFixed:])
	}
	if in.Size < 0 {
		return Inode{}, fmt.Errorf("inode %d: %w: negative size", ino, ErrCorrupt)
	}
	return in, nil
}

// Extent maps file bytes [Off, Off+Len) to chunk bytes [ChunkOff,
// ChunkOff+Len) of chunk ID. Bytes of a file that no extent covers are zero.
//
// A page-run extent (Run non-nil, ID unused) maps file bytes [Off, Off+Len)
// to bytes [ChunkOff, ChunkOff+Len) of the concatenated 4096-byte pages that
// the run's pfns have in generation Run.Gen of lineage Run.Lin.
type Extent struct {
	Off      int64
	Len      int64
	ChunkOff int64
	ID       chunkstore.ID
	Run      *PageRun
	// Hint is where the chunk was (a page entry's; not encoded in extents).
	Hint chunkstore.Hint
}

// PageSize is the size of a guest page in a page run.
const PageSize = 4096

// MaxRunPages bounds the pages of one page run.
const MaxRunPages = 4096

// PageRun names consecutive page payloads of an xl save image by pfn.
type PageRun struct {
	Lin, Gen, Floor uint64
	Ranges          []PfnRange
}

// PageRef is a page's content: a chunk (and where it was), or all zero;
// and, if Tagged, the page's keyed tag (chunkstore.Tag), which proves a
// later page of the same pfn equal to it without hashing that with BLAKE3.
// A page run's pages resolve to PageRefs (xen/lineage keeps the maps).
type PageRef struct {
	ID     chunkstore.ID
	Zero   bool
	Hint   chunkstore.Hint
	Tag    chunkstore.Tag
	Tagged bool
}

// Holds reports whether r is the page with chunk id (or all zero, when
// zero).
func (r PageRef) Holds(id chunkstore.ID, zero bool) bool {
	return r.Zero == zero && (zero || r.ID == id)
}

// PfnRange is N consecutive pfns from Start.
type PfnRange struct{ Start, N uint64 }

// Pages is the number of pages in the run.
func (r *PageRun) Pages() int64 {
	var n uint64
	for _, p := range r.Ranges {
		n += p.N
	}
	return int64(n)
}

// Pfns appends the run's pfns for pages [from, to) to dst.
func (r *PageRun) Pfns(dst []uint64, from, to int64) []uint64 {
	i := int64(0)
	for _, p := range r.Ranges {
		for k := uint64(0); k < p.N; k++ {
			if i >= from && i < to {
				dst = append(dst, p.Start+k)
			}
			i++
		}
		if i >= to {
			break
		}
	}
	return dst
}

// Add appends pfn to the run.
func (r *PageRun) Add(pfn uint64) {
	if n := len(r.Ranges); n > 0 && r.Ranges[n-1].Start+r.Ranges[n-1].N == pfn {
		r.Ranges[n-1].N++
		return
	}
	r.Ranges = append(r.Ranges, PfnRange{pfn, 1})
}

// End is the file offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// encodeExtentValue: uvarint(Len) | uvarint(ChunkOff) | ID (32 bytes), or
// for a page run 0x00 | uvarint(Len) | uvarint(ChunkOff) | uvarint(lin) |
// uvarint(gen) | uvarint(floor) | uvarint(ranges) | (uvarint(start)
// uvarint(n))*. Len is never 0, so the first byte tells the kinds apart.
func encodeExtentValue(e Extent) []byte {
	if r := e.Run; r != nil {
		b := []byte{0}
		for _, v := range []uint64{uint64(e.Len), uint64(e.ChunkOff), r.Lin, r.Gen, r.Floor, uint64(len(r.Ranges))} {
			b = binary.AppendUvarint(b, v)
		}
		for _, p := range r.Ranges {
			b = binary.AppendUvarint(b, p.Start)
			b = binary.AppendUvarint(b, p.N)
		}
		return b
	}
	b := make([]byte, 0, 2*binary.MaxVarintLen64+chunkstore.IDSize)
	b = binary.AppendUvarint(b, uint64(e.Len))
	b = binary.AppendUvarint(b, uint64(e.ChunkOff))
	return append(b, e.ID[:]...)
}

// DecodeExtent decodes an extent from its key and value.
func DecodeExtent(key, val []byte) (Extent, error) {
	var e Extent
	if len(key) != keyLen(3) || key[0] != prefixExtent {
		return e, fmt.Errorf("%w: extent key %x", ErrCorrupt, key)
	}
	e.Off = int64(field(key, 2))
	if len(val) > 0 && val[0] == 0 {
		return decodeRun(key, e, val[1:])
	}
	n, k := binary.Uvarint(val)
	if k <= 0 || n == 0 || n > chunkstore.MaxChunkSize {
		return e, fmt.Errorf("%w: extent length at %x", ErrCorrupt, key)
	}
	e.Len = int64(n)
	co, k2 := binary.Uvarint(val[k:])
	if k2 <= 0 || co+n > chunkstore.MaxChunkSize || len(val[k+k2:]) != chunkstore.IDSize {
		return e, fmt.Errorf("%w: extent value at %x", ErrCorrupt, key)
	}
	e.ChunkOff = int64(co)
	copy(e.ID[:], val[k+k2:])
	if e.Off < 0 || e.Off+e.Len < e.Off {
		return e, fmt.Errorf("%w: extent offset at %x", ErrCorrupt, key)
	}
	return e, nil
}

func decodeRun(key []byte, e Extent, val []byte) (Extent, error) {
	bad := fmt.Errorf("%w: page run at %x", ErrCorrupt, key)
	var f [6]uint64
	for i := range f {
		v, k := binary.Uvarint(val)
		if k <= 0 {
			return e, bad
		}
		f[i], val = v, val[k:]
	}
	if f[5] > MaxRunPages || f[5] == 0 {
		return e, bad
	}
	r := &PageRun{Lin: f[2], Gen: f[3], Floor: f[4], Ranges: make([]PfnRange, f[5])}
	var pages uint64
	for i := range r.Ranges {
		s, k := binary.Uvarint(val)
		if k <= 0 {
			return e, bad
		}
		n, k2 := binary.Uvarint(val[k:])
		if k2 <= 0 || n == 0 || n > MaxRunPages {
			return e, bad
		}
		r.Ranges[i], val = PfnRange{s, n}, val[k+k2:]
		pages += n
	}
	e.Len, e.ChunkOff, e.Run = int64(f[0]), int64(f[1]), r
	if len(val) != 0 || pages > MaxRunPages || f[0] == 0 || f[0] > pages*PageSize || f[1] > pages*PageSize-f[0] ||
		e.Off < 0 || e.Off+e.Len < e.Off || r.Floor > r.Gen {
		return e, bad
	}
	return e, nil
}

// Dirent is a directory entry.
type Dirent struct {
	Name string
	Ino  uint64
	Mode uint32 // type bits only matter to readers
}

func encodeDirent(ino uint64, mode uint32) []byte {
	b := binary.BigEndian.AppendUint64(nil, ino)
	return binary.BigEndian.AppendUint32(b, mode)
}

func decodeDirent(name string, v []byte) (Dirent, error) {
	if len(v) != 12 {
		return Dirent{}, fmt.Errorf("%w: dirent %q", ErrCorrupt, name)
	}
	return Dirent{Name: name, Ino: binary.BigEndian.Uint64(v), Mode: binary.BigEndian.Uint32(v[8:])}, nil
}

// AddSizes adds file sizes without overflowing: a sum past the largest
// int64 (a few sparse files of 8 EiB) stays at the largest.
func AddSizes(a, b int64) int64 {
	if s := a + b; b < 0 || s >= a {
		return s
	}
	return math.MaxInt64
}

// Most keys are a one-byte prefix followed by big-endian uint64 fields
// (the table in doc.go): keyLen(n) is the length of such a key with n
// fields, field(k, i) its field i, counted from 0. They replace the bare
// 9, 17 and 25 the key code used to spell.
func keyLen(n int) int { return 1 + 8*n }

func field(k []byte, i int) uint64 { return binary.BigEndian.Uint64(k[1+8*i:]) }

// holderLen is the length of a reference key's holder: its kind byte and
// three uint64 fields ('e' ino ver off, or 'p' lin pfn gen).
const holderLen = 1 + 3*8
