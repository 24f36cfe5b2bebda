// Package manifest describes a file of a store as what another store
// needs to rebuild it byte for byte: its name and attributes, and its
// content as a list of chunk ranges and zero runs. Chunks are named by
// their BLAKE3-256 id, so the list is the same in every store that cuts
// content the same way, and a transfer sends only the chunks the other side
// lacks plus this list, delta-encoded against a file both sides hold.
//
// # Encoding, version 1
//
// Integers are unsigned varints (uv) unless the table says otherwise;
// strings are uv(len) then bytes.
//
//	field                    bytes
//	-----------------------  ----------------------------------------------
//	magic                    "CKPTMAN" 0x01 (8)
//	path                     string (slash-separated, relative to the root)
//	mode, uid, gid           uv each (stat(2) mode: type and permission bits)
//	mtime                    zig-zag varint, nanoseconds since the epoch
//	size                     uv, the file's length in bytes
//	uuid, name               string each: the guest of an xl save image, or ""
//	base                     32: the Digest of the manifest the ops copy
//	                         from, or 32 zero bytes for none
//	entries                  uv, how many entries the ops produce
//	ops                      until entries are produced, each a tag byte:
//	                           0x01 chunk: uv(off) uv(len) id(32)
//	                           0x02 zero run: uv(len)
//	                           0x03 copy: uv(base index) uv(count): the base's
//	                                entries [index, index+count)
//	digest                   32: Digest of the decoded manifest
//
// Decode checks every length, that the entries cover exactly size bytes,
// and the digest: a manifest that decodes is the one that was encoded.
package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"syscall"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/zeebo/blake3"
)

// Entry is a range of the file's content: Len bytes of chunk ID from Off,
// or Len zero bytes.
type Entry struct {
	ID   chunkstore.ID
	Len  uint64 // at most MaxChunkSize for a chunk range; any length for a zero run
	Off  uint32
	Zero bool
}

// MaxEntries is the most entries a manifest may have (Build refuses a
// file that needs more, Decode an encoding that makes more): 8 Mi, a
// guest of 32 GiB of distinct non-zero pages, 384 MiB decoded. It bounds
// what a manifest from another host can make a receiver hold.
const MaxEntries = 1 << 23

// MaxEncoded is the longest encoding of a manifest of MaxEntries entries.
const MaxEncoded = MaxEntries*(1+binary.MaxVarintLen32*2+chunkstore.IDSize) + 1<<20

// ErrTooBig is Build's error for a file of more than MaxEntries entries.
var ErrTooBig = fmt.Errorf("the file has more than %d pieces (chunks and zero runs): too many to transfer", MaxEntries)

// Manifest is one file.
type Manifest struct {
	Path     string
	Mode     uint32
	UID, GID uint32
	Mtime    int64
	Size     int64
	// UUID and Name are the guest of an xl save image ("" otherwise).
	UUID, Name string
	Entries    []Entry
}

// Digest is what identifies a manifest's content list: BLAKE3-256 of its
// size and entries (not its name or attributes).
type Digest [32]byte

var magic = []byte("CKPTMAN\x01")

// ErrCorrupt is returned for an encoding that does not decode.
var ErrCorrupt = errors.New("corrupt manifest")

// Digest returns the manifest's digest.
func (m *Manifest) Digest() Digest {
	h := blake3.New()
	var b [binary.MaxVarintLen64*3 + 1 + chunkstore.IDSize]byte
	n := binary.PutUvarint(b[:], uint64(m.Size))
	h.Write(b[:n])
	for _, e := range m.Entries {
		n := 0
		if e.Zero {
			b[0] = 2
			n = 1 + binary.PutUvarint(b[1:], uint64(e.Len))
		} else {
			b[0] = 1
			n = 1 + binary.PutUvarint(b[1:], uint64(e.Off))
			n += binary.PutUvarint(b[n:], uint64(e.Len))
			n += copy(b[n:], e.ID[:])
		}
		h.Write(b[:n])
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

// Chunks returns the distinct chunk ids of the manifest, in the order of
// their first use.
func (m *Manifest) Chunks() []chunkstore.ID {
	seen := make(map[chunkstore.ID]struct{}, len(m.Entries))
	var ids []chunkstore.ID
	for _, e := range m.Entries {
		if e.Zero {
			continue
		}
		if _, ok := seen[e.ID]; !ok {
			seen[e.ID] = struct{}{}
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// New returns the chunks of m that base (nil: none) does not use, in the
// order of their first use in m.
func (m *Manifest) New(base *Manifest) []chunkstore.ID {
	if base == nil {
		return m.Chunks()
	}
	old := make(map[chunkstore.ID]struct{}, len(base.Entries))
	for _, e := range base.Entries {
		if !e.Zero {
			old[e.ID] = struct{}{}
		}
	}
	var ids []chunkstore.ID
	for _, id := range m.Chunks() {
		if _, ok := old[id]; !ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// IsImage reports whether m is an xl save image of a guest.
func (m *Manifest) IsImage() bool { return m.UUID != "" }

// IsRegular reports whether m is a regular file.
func (m *Manifest) IsRegular() bool { return m.Mode&syscall.S_IFMT == syscall.S_IFREG }

// add appends e, merging it into the last entry when both are zero runs
// (or it is empty).
func (m *Manifest) add(e Entry) {
	if e.Len == 0 {
		return
	}
	if e.Zero {
		e.ID, e.Off = chunkstore.ID{}, 0
		if n := len(m.Entries); n > 0 && m.Entries[n-1].Zero {
			m.Entries[n-1].Len += e.Len
			return
		}
	}
	m.Entries = append(m.Entries, e)
}

// addZeros adds a zero run of n bytes: one entry, however long (a sparse
// file of 8 EiB is one entry, not billions).
func (m *Manifest) addZeros(n int64) {
	if n > 0 {
		m.add(Entry{Zero: true, Len: uint64(n)})
	}
}

// Pages is what Build needs beyond the index: the pages of a page run,
// and the guest of an xl save image (xen/lineage.Maps, which keeps both).
type Pages interface {
	ResolveRun(run *index.PageRun, from, to int64) ([]index.PageRef, error)
	// Guest returns the guest whose image ino is (index.ErrNotFound if
	// it is none).
	Guest(ino uint64) (uuid, name string, err error)
}

// Build returns the manifest of file ino (named path) from the index and
// the page maps: its committed content.
func Build(x *index.Index, pages Pages, ino uint64, path string) (*Manifest, error) {
	in, err := x.Get(ino)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Path: path, Mode: in.Mode, UID: in.UID, GID: in.GID, Mtime: in.Mtime, Size: in.Size}
	if uuid, name, err := pages.Guest(ino); err == nil {
		m.UUID, m.Name = uuid, name
	} else if !errors.Is(err, index.ErrNotFound) {
		return nil, err
	}
	if !m.IsRegular() {
		m.Size = 0
		return m, nil
	}
	at := int64(0)
	err = x.WalkExtents(in.Ino, in.Ver, func(e index.Extent) error {
		if e.Off >= in.Size {
			return nil
		}
		if e.Off < at {
			return fmt.Errorf("%w: extent at %d overlaps the one before", index.ErrCorrupt, e.Off)
		}
		m.addZeros(e.Off - at)
		end := min(e.End(), in.Size)
		if e.Run == nil {
			m.add(Entry{ID: e.ID, Off: uint32(e.ChunkOff), Len: uint64(end - e.Off)})
			at = end
			return nil
		}
		from, to := e.ChunkOff/index.PageSize, (e.ChunkOff+(end-e.Off)+index.PageSize-1)/index.PageSize
		refs, err := pages.ResolveRun(e.Run, from, to)
		if err != nil {
			return err
		}
		pos := e.ChunkOff // in the run's concatenated pages
		for i, ref := range refs {
			page := (from + int64(i)) * index.PageSize
			lo := max(pos, page) - page
			hi := min(page+index.PageSize, e.ChunkOff+(end-e.Off)) - page
			if ref.Zero {
				m.add(Entry{Zero: true, Len: uint64(hi - lo)})
			} else {
				m.add(Entry{ID: ref.ID, Off: uint32(lo), Len: uint64(hi - lo)})
			}
			pos = page + hi
		}
		at = end
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.addZeros(in.Size - at)
	if len(m.Entries) > MaxEntries {
		return nil, ErrTooBig
	}
	return m, nil
}

type key struct {
	id  chunkstore.ID
	off uint32
	len uint64
}

// Encode returns m's encoding; entries equal to runs of base's (nil: none)
// are written as copies.
func (m *Manifest) Encode(base *Manifest) []byte {
	b := append([]byte(nil), magic...)
	b = appendString(b, m.Path)
	b = binary.AppendUvarint(b, uint64(m.Mode))
	b = binary.AppendUvarint(b, uint64(m.UID))
	b = binary.AppendUvarint(b, uint64(m.GID))
	b = binary.AppendVarint(b, m.Mtime)
	b = binary.AppendUvarint(b, uint64(m.Size))
	b = appendString(b, m.UUID)
	b = appendString(b, m.Name)
	var at map[key]int
	if base != nil {
		d := base.Digest()
		b = append(b, d[:]...)
		at = make(map[key]int, len(base.Entries))
		for i, e := range base.Entries {
			if !e.Zero {
				k := key{e.ID, e.Off, e.Len}
				if _, ok := at[k]; !ok {
					at[k] = i
				}
			}
		}
	} else {
		b = append(b, make([]byte, 32)...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Entries)))
	for i := 0; i < len(m.Entries); {
		e := m.Entries[i]
		if e.Zero {
			b = append(b, 2)
			b = binary.AppendUvarint(b, uint64(e.Len))
			i++
			continue
		}
		j, ok := at[key{e.ID, e.Off, e.Len}]
		if !ok {
			b = append(b, 1)
			b = binary.AppendUvarint(b, uint64(e.Off))
			b = binary.AppendUvarint(b, uint64(e.Len))
			b = append(b, e.ID[:]...)
			i++
			continue
		}
		n := 1
		for i+n < len(m.Entries) && j+n < len(base.Entries) && m.Entries[i+n] == base.Entries[j+n] {
			n++
		}
		b = append(b, 3)
		b = binary.AppendUvarint(b, uint64(j))
		b = binary.AppendUvarint(b, uint64(n))
		i += n
	}
	d := m.Digest()
	return append(b, d[:]...)
}

// Base returns the digest of the manifest that encoding b copies from
// (ok false: none, or b is not a manifest).
func Base(b []byte) (d Digest, ok bool) {
	r := &reader{b: b}
	r.header(&Manifest{})
	if r.err != nil || len(r.b) < 32 {
		return d, false
	}
	copy(d[:], r.b)
	return d, d != Digest{}
}

// Decode decodes b; base is the manifest it copies from (see Base).
func Decode(b []byte, base *Manifest) (*Manifest, error) {
	m := &Manifest{}
	r := &reader{b: b}
	r.header(m)
	var want Digest
	r.bytes(want[:])
	if r.err != nil {
		return nil, r.err
	}
	if want != (Digest{}) {
		if base == nil || base.Digest() != want {
			return nil, fmt.Errorf("%w: it is a delta on a manifest not given", ErrCorrupt)
		}
	} else {
		base = nil
	}
	n := r.uvarint()
	if n > MaxEntries {
		r.fail(fmt.Sprintf("%d entries, over the limit of %d", n, MaxEntries))
	}
	if r.err == nil {
		m.Entries = make([]Entry, 0, min(n, 1<<16))
	}
	// Copies may repeat base entries (a page that appears twice), but
	// never make more than twice the base: a short encoding must not
	// expand into a huge list.
	copyBudget := uint64(0)
	if base != nil {
		copyBudget = 2*uint64(len(base.Entries)) + 1024
	}
	total := uint64(0)
	for r.err == nil && uint64(len(m.Entries)) < n {
		var e Entry
		switch r.byte() {
		case 1:
			e.Off, e.Len = r.u32(), uint64(r.u32())
			r.bytes(e.ID[:])
			if uint64(e.Off)+uint64(e.Len) > chunkstore.MaxChunkSize {
				r.fail("chunk range past the largest chunk")
			}
		case 2:
			e.Zero, e.Len = true, r.uvarint()
			if e.Len > math.MaxInt64 {
				r.fail("zero run out of range")
			}
		case 3:
			j, k := r.uvarint(), r.uvarint()
			if r.err != nil || base == nil || j > uint64(len(base.Entries)) || k == 0 || k > uint64(len(base.Entries))-j || k > n-uint64(len(m.Entries)) {
				r.fail("copy out of range")
				continue
			}
			if k > copyBudget {
				r.fail("copies more entries than its base can account for")
				continue
			}
			copyBudget -= k
			for _, e := range base.Entries[j : j+k] {
				total += uint64(e.Len)
			}
			if total > math.MaxInt64 {
				r.fail("entries cover more than the largest file")
			}
			m.Entries = append(m.Entries, base.Entries[j:j+k]...)
			continue
		default:
			r.fail("unknown op")
		}
		if r.err == nil && e.Len == 0 {
			r.fail("empty entry")
		}
		total += uint64(e.Len)
		if total > math.MaxInt64 {
			r.fail("entries cover more than the largest file")
		}
		m.Entries = append(m.Entries, e)
	}
	var got Digest
	r.bytes(got[:])
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err == nil && total != uint64(m.Size) {
		r.fail(fmt.Sprintf("entries cover %d bytes of a %d-byte file", total, m.Size))
	}
	if r.err != nil {
		return nil, r.err
	}
	if m.Digest() != got {
		return nil, fmt.Errorf("%w: digest mismatch", ErrCorrupt)
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrCorrupt, why)
	}
}

func (r *reader) header(m *Manifest) {
	if len(r.b) < len(magic) || string(r.b[:len(magic)]) != string(magic) {
		r.fail("not a manifest (bad magic)")
		return
	}
	r.b = r.b[len(magic):]
	m.Path = r.string()
	m.Mode, m.UID, m.GID = r.u32(), r.u32(), r.u32()
	m.Mtime = r.varint()
	size := r.uvarint()
	if size > math.MaxInt64 {
		r.fail("size out of range")
	}
	m.Size = int64(size)
	m.UUID, m.Name = r.string(), r.string()
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() uint32 {
	v := r.uvarint()
	if v > 1<<32-1 {
		r.fail("value out of range")
	}
	return uint32(v)
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail(io.ErrUnexpectedEOF.Error())
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(dst []byte) {
	if r.err != nil {
		return
	}
	if len(r.b) < len(dst) {
		r.fail(io.ErrUnexpectedEOF.Error())
		return
	}
	copy(dst, r.b)
	r.b = r.b[len(dst):]
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail("string past the end")
	}
	if r.err != nil {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
