package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SegmentDir is the directory, inside the store's, that holds the segment
// files: chunk records appended in the order they were written (doc.go).
const SegmentDir = "segments"

// SegmentBytes is the size past which the active segment is sealed and a
// new one started. A segment is the unit gc drops or rewrites. A variable
// for tests.
var SegmentBytes int64 = 64 << 20

// A locator says where a chunk's record is: segment, offset and length.
type locator struct {
	seg uint32
	off int64
	n   int
}

func encodeLocator(l locator) []byte {
	b := binary.AppendUvarint(make([]byte, 0, 16), uint64(l.seg))
	b = binary.AppendUvarint(b, uint64(l.off))
	return binary.AppendUvarint(b, uint64(l.n))
}

func decodeLocator(v []byte) (locator, error) {
	var u [3]uint64
	for i := range u {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return locator{}, fmt.Errorf("%w: bad locator %x", ErrCorrupt, v)
		}
		u[i], v = x, v[n:]
	}
	if len(v) != 0 || u[0] == 0 || u[0] > 1<<32-1 || u[1] > 1<<62 || u[2] > MaxChunkSize+64 {
		return locator{}, fmt.Errorf("%w: bad locator", ErrCorrupt)
	}
	return locator{seg: uint32(u[0]), off: int64(u[1]), n: int(u[2])}, nil
}

// appendRecord appends a chunk record: id, uvarint(len(value)), value,
// and the CRC-32C (Castagnoli, little-endian) of all that.
func appendRecord(dst []byte, id ID, value []byte) []byte {
	start := len(dst)
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	dst = append(dst, value...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// parseRecord splits the record at the start of b into its id and value,
// checking its CRC, and returns the record's length.
func parseRecord(b []byte) (ID, []byte, int, error) {
	var id ID
	if len(b) < IDSize+1+4 {
		return id, nil, 0, fmt.Errorf("%w: short record", ErrCorrupt)
	}
	copy(id[:], b)
	n, k := binary.Uvarint(b[IDSize:])
	if rem := len(b) - IDSize - k - 4; k <= 0 || rem < 0 || n > MaxChunkSize+16 || uint64(rem) < n {
		return id, nil, 0, fmt.Errorf("%w: bad record length", ErrCorrupt)
	}
	end := IDSize + k + int(n)
	if crc32.Checksum(b[:end], castagnoli) != binary.LittleEndian.Uint32(b[end:]) {
		return id, nil, 0, fmt.Errorf("%w: record checksum mismatch", ErrCorrupt)
	}
	return id, b[IDSize+k : end], end + 4, nil
}

// segments keeps the segment files: appends go to the active one, under mu;
// reads use the open handle of any.
type segments struct {
	fs       vfs.FS
	dir      string
	readOnly bool

	mu       sync.Mutex // appends, sealing, syncing
	active   uint32
	size     int64           // of the active segment
	sealed   bool            // the active segment takes no more appends
	unsynced map[uint32]bool // segments written since their last sync

	rmu   sync.RWMutex
	files map[uint32]vfs.File
}

func segName(seg uint32) string { return fmt.Sprintf("%08d.seg", seg) }

func parseSegName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(s) != 8 {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 32)
	return uint32(v), err == nil && v > 0
}

func openSegments(fsys vfs.FS, storeDir string, readOnly bool) (*segments, error) {
	sg := &segments{fs: fsys, dir: fsys.PathJoin(storeDir, SegmentDir), readOnly: readOnly, unsynced: map[uint32]bool{}, files: map[uint32]vfs.File{}}
	ids, err := sg.list()
	if err != nil {
		return nil, err
	}
	if readOnly {
		return sg, nil
	}
	if len(ids) == 0 {
		if err := fsys.MkdirAll(sg.dir, 0o755); err != nil {
			return nil, err
		}
		return sg, syncDir(fsys, storeDir)
	}
	// Appends go on at the end of the newest segment: a crash may have
	// left a torn record there, which no locator names.
	last := ids[len(ids)-1]
	st, err := fsys.Stat(fsys.PathJoin(sg.dir, segName(last)))
	if err != nil {
		return nil, err
	}
	sg.active, sg.size = last, st.Size()
	return sg, nil
}

// list returns the segments on disk in order.
func (sg *segments) list() ([]uint32, error) { return listNums(sg.fs, sg.dir, parseSegName) }

// file returns an open handle of segment seg.
func (sg *segments) file(seg uint32) (vfs.File, error) {
	sg.rmu.RLock()
	f := sg.files[seg]
	sg.rmu.RUnlock()
	if f != nil {
		return f, nil
	}
	sg.rmu.Lock()
	defer sg.rmu.Unlock()
	if f := sg.files[seg]; f != nil {
		return f, nil
	}
	p := sg.fs.PathJoin(sg.dir, segName(seg))
	var err error
	if sg.readOnly {
		f, err = sg.fs.Open(p)
	} else {
		f, err = sg.fs.OpenReadWrite(p, vfs.WriteCategoryUnspecified)
	}
	if err != nil {
		return nil, err
	}
	sg.files[seg] = f
	return f, nil
}

// append writes buf (whole records) at the end of the active segment,
// starting a new one when the active one is full, and returns where buf
// starts. The records are readable once it returns; durable after sync.
func (sg *segments) append(buf []byte) (uint32, int64, error) {
	if sg.readOnly {
		return 0, 0, errors.New("append to a read-only store")
	}
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if sg.active == 0 || sg.sealed || (sg.size > 0 && sg.size+int64(len(buf)) > SegmentBytes) {
		next := sg.active + 1
		f, err := sg.fs.Create(sg.fs.PathJoin(sg.dir, segName(next)), vfs.WriteCategoryUnspecified)
		if err != nil {
			return 0, 0, err
		}
		sg.rmu.Lock()
		sg.files[next] = f
		sg.rmu.Unlock()
		sg.active, sg.size, sg.sealed = next, 0, false
		sg.unsynced[next] = true
	}
	f, err := sg.file(sg.active)
	if err != nil {
		return 0, 0, err
	}
	off := sg.size
	if _, err := f.WriteAt(buf, off); err != nil {
		// What was written of buf is garbage no locator names; the next
		// append starts after it.
		if st, serr := f.Stat(); serr == nil {
			sg.size = st.Size()
		}
		return 0, 0, err
	}
	sg.size += int64(len(buf))
	sg.unsynced[sg.active] = true
	return sg.active, off, nil
}

// sync makes every append so far durable. A segment started since the
// last sync gets its directory entry synced too.
func (sg *segments) sync() error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if len(sg.unsynced) == 0 {
		return nil
	}
	for seg := range sg.unsynced {
		f, err := sg.file(seg)
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := syncDir(sg.fs, sg.dir); err != nil {
		return err
	}
	clear(sg.unsynced)
	return nil
}

// withFile calls fn with seg's open handle, which stays open meanwhile
// (remove waits for it).
func (sg *segments) withFile(seg uint32, fn func(vfs.File) error) error {
	for {
		sg.rmu.RLock()
		if f := sg.files[seg]; f != nil {
			err := fn(f)
			sg.rmu.RUnlock()
			return err
		}
		sg.rmu.RUnlock()
		if _, err := sg.file(seg); err != nil {
			return err
		}
	}
}

// read reads the record l names.
func (sg *segments) read(dst []byte, l locator) ([]byte, error) {
	dst = growTo(dst[:0], l.n)
	var n int
	err := sg.withFile(l.seg, func(f vfs.File) (err error) {
		n, err = f.ReadAt(dst, l.off)
		return err
	})
	if n == l.n {
		return dst, nil
	}
	if err == nil {
		err = errors.New("short read")
	}
	return nil, fmt.Errorf("%w: segment %d at %d: %v", ErrCorrupt, l.seg, l.off, err)
}

// prefetch starts the kernel's read-ahead of n bytes at off of seg.
func (sg *segments) prefetch(seg uint32, off, n int64) {
	_ = sg.withFile(seg, func(f vfs.File) error { return f.Prefetch(off, n) })
}

// remove deletes a segment no locator names any more.
func (sg *segments) remove(seg uint32) error {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if seg == sg.active && !sg.sealed {
		return errors.New("removing the active segment")
	}
	sg.rmu.Lock()
	f := sg.files[seg]
	delete(sg.files, seg)
	sg.rmu.Unlock()
	if f != nil {
		f.Close()
	}
	delete(sg.unsynced, seg)
	return sg.fs.Remove(sg.fs.PathJoin(sg.dir, segName(seg)))
}

// sealIf ends segment seg if it is the active one: the next append starts
// a new one, and seg may be removed.
func (sg *segments) sealIf(seg uint32) {
	sg.mu.Lock()
	defer sg.mu.Unlock()
	if seg == sg.active {
		sg.sealed = true
	}
}

// sizeOf returns a segment's size on disk (0 if it is gone).
func (sg *segments) sizeOf(seg uint32) int64 {
	st, err := sg.fs.Stat(sg.fs.PathJoin(sg.dir, segName(seg)))
	if err != nil {
		return 0
	}
	return st.Size()
}

func (sg *segments) close() error {
	err := sg.sync()
	sg.rmu.Lock()
	defer sg.rmu.Unlock()
	for seg, f := range sg.files {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		delete(sg.files, seg)
	}
	return err
}
