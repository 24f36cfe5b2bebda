package transfer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/index/manifest"
)

// Local is a store opened in this process (by the daemon that mounts it,
// or by a command on an unmounted store).
type Local struct {
	Chunks *chunkstore.Store
	Index  *index.Index
	Data   *content.Store
	// Images are the store's guest lineages (xen/lineage.Maps): the
	// guest of each xl save image, the images still being written, and
	// the pages of their page runs.
	Images Images
	// As is who asks for the files Apply makes (nil: root, or this
	// process's own store). A file arriving for a user other than root
	// gets what writing it through the mount would give that user:
	// their uid (and a gid of theirs), no setuid, setgid or sticky bit,
	// and only in directories they may write to; directories it needs
	// are made theirs, in directories they may write to.
	As *Caller
	// Unlink takes a name away for Remove, only if it still names ino:
	// the mount daemon's (fs.FS.Remove), which keeps the kernel's caches
	// right and a file open through the mount readable until closed. Nil
	// for a store no daemon serves: the name is unlinked, and the file
	// purged when it was its last.
	Unlink func(parent uint64, name string, ino uint64) error
}

// Images is what a local store's transfers need of its lineages.
type Images interface {
	manifest.Pages
	// Writing returns the files whose xl save image is still being
	// written (its generation in flight).
	Writing() (map[uint64]bool, error)
}

// Caller is a user on whose behalf a transfer writes.
type Caller struct {
	UID  uint32
	GIDs []uint32 // the primary group first
}

// CallerOf returns the caller for uid and its groups (nil for root: no
// limits).
func CallerOf(uid uint32, gids ...uint32) *Caller {
	if uid == 0 {
		return nil
	}
	return &Caller{UID: uid, GIDs: gids}
}

func (c *Caller) inGroup(gid uint32) bool {
	for _, g := range c.GIDs {
		if g == gid {
			return true
		}
	}
	return false
}

// may reports whether c has the permission bits want (4 read, 2 write,
// 1 search) on in, as the kernel's generic_permission decides.
func (c *Caller) may(in index.Inode, want uint32) bool {
	if c == nil {
		return true
	}
	bits := in.Mode & 7
	switch {
	case in.UID == c.UID:
		bits = in.Mode >> 6 & 7
	case c.inGroup(in.GID):
		bits = in.Mode >> 3 & 7
	}
	return bits&want == want
}

// owner returns the uid and gid a new file or directory of c gets (m's
// when c is nil: root keeps what the source says).
func (c *Caller) owner(m *manifest.Manifest) (uint32, uint32) {
	if c == nil {
		return m.UID, m.GID
	}
	gid := uint32(0)
	if len(c.GIDs) > 0 {
		gid = c.GIDs[0]
	}
	if c.inGroup(m.GID) {
		gid = m.GID
	}
	return c.UID, gid
}

// mode returns the permission bits a new file of c gets.
func (c *Caller) mode(m *manifest.Manifest) uint32 {
	if c == nil {
		return m.Mode & 07777
	}
	return m.Mode & 0o777
}

// ErrDenied is Apply's error when the caller may not make the file.
var ErrDenied = errors.New("permission denied")

// Close does nothing: the store's owner closes it.
func (l *Local) Close() error { return nil }

// List walks the namespace from the root. An xl save image still being
// written (its generation in flight) is left out: what it has committed so
// far is not the checkpoint.
func (l *Local) List() ([]File, error) {
	var out []File
	writing, err := l.Images.Writing()
	if err != nil {
		return nil, err
	}
	var walk func(dir uint64, prefix string) error
	walk = func(dir uint64, prefix string) error {
		ents, err := l.Index.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, d := range ents {
			if index.IsStaging(d.Name) {
				continue
			}
			p := path.Join(prefix, d.Name)
			switch d.Mode & syscall.S_IFMT {
			case syscall.S_IFDIR:
				if err := walk(d.Ino, p); err != nil {
					return err
				}
			case syscall.S_IFREG:
				if writing[d.Ino] {
					continue
				}
				in, err := l.Index.Get(d.Ino)
				if err != nil {
					return err
				}
				f := File{Path: p, Size: in.Size, Mtime: in.Mtime, Mode: in.Mode}
				if uuid, name, err := l.Images.Guest(d.Ino); err == nil {
					f.UUID, f.Name = uuid, name
				}
				out = append(out, f)
			}
		}
		return nil
	}
	return out, walk(index.RootIno, "")
}

// lookup resolves a slash-separated path from the root.
func (l *Local) lookup(p string) (index.Inode, error) {
	in, err := l.Index.Get(index.RootIno)
	for _, name := range strings.Split(p, "/") {
		if err != nil {
			break
		}
		in, err = l.Index.Lookup(in.Ino, name)
	}
	if errors.Is(err, index.ErrNotFound) {
		return in, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
	return in, err
}

// Manifest builds the manifest of the file at p.
func (l *Local) Manifest(p string) (*manifest.Manifest, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	in, err := l.lookup(p)
	if err != nil {
		return nil, err
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("%s: not a regular file", p)
	}
	return manifest.Build(l.Index, l.Images, in.Ino, p)
}

// readBatch is how many chunks Read asks the store for at once.
const readBatch = 256

// Read reads ids in batches (runs of neighbouring records in one read).
func (l *Local) Read(ids []chunkstore.ID, fn func(Chunk) error) error {
	for len(ids) > 0 {
		n := min(len(ids), readBatch)
		got := make([][]byte, n)
		errs := make([]error, n)
		l.Chunks.GetMany(ids[:n], nil, func(i int, data []byte, err error) {
			got[i], errs[i] = append([]byte(nil), data...), err
		})
		for i := range n {
			if errs[i] != nil {
				return errs[i]
			}
			if err := fn(Chunk{ID: ids[i], Data: got[i]}); err != nil {
				return err
			}
		}
		ids = ids[n:]
	}
	return nil
}

// Missing looks each id up.
func (l *Local) Missing(ids []chunkstore.ID) ([]chunkstore.ID, error) {
	var out []chunkstore.ID
	for _, id := range ids {
		ok, err := l.Chunks.Has(id)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// CheckPath refuses a path that is not a clean relative path of names a
// store accepts.
func CheckPath(p string) error {
	if p == "" || path.Clean(p) != p || strings.HasPrefix(p, "/") || p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("%q: not a clean relative path", p)
	}
	for _, name := range strings.Split(p, "/") {
		if len(name) > 255 || index.IsStaging(name) || name == ".." {
			return fmt.Errorf("%q: name %q not allowed", p, name)
		}
		for _, c := range []byte(name) {
			if c < 0x20 || c == 0x7f {
				return fmt.Errorf("%q: name %q not allowed (a control byte in it)", p, name)
			}
		}
	}
	return nil
}

// Remove removes the regular file f.Path if it is still the version f
// names, on the caller's behalf: as the kernel allows an unlink, the
// caller may write to its directory and, in a sticky directory, owns the
// file or the directory. Only the directory's owner may remove an entry
// named latest.
func (l *Local) Remove(f File) error {
	if err := CheckPath(f.Path); err != nil {
		return err
	}
	dir, name := path.Split(f.Path)
	pin, err := l.Index.Get(index.RootIno)
	if dir != "" {
		pin, err = l.lookup(strings.TrimSuffix(dir, "/"))
	}
	if err != nil {
		return err
	}
	if pin.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return fmt.Errorf("%s: %w", f.Path, ErrNotFound)
	}
	in, err := l.Index.Lookup(pin.Ino, name)
	if errors.Is(err, index.ErrNotFound) {
		return fmt.Errorf("%s: %w", f.Path, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fmt.Errorf("%s: not a regular file (left alone)", f.Path)
	}
	if now := (File{Path: f.Path, Size: in.Size, Mtime: in.Mtime}); !now.Same(f) {
		return fmt.Errorf("%s: %w (%d bytes, listed as %d)", f.Path, ErrChanged, in.Size, f.Size)
	}
	c := l.As
	if !c.may(pin, 3) || (c != nil && pin.Mode&syscall.S_ISVTX != 0 && c.UID != in.UID && c.UID != pin.UID) {
		return fmt.Errorf("%s: %w: uid %d may not remove it", f.Path, ErrDenied, c.UID)
	}
	if name == latestName && c != nil && c.UID != pin.UID {
		return fmt.Errorf("%s: %w: only the directory's owner may remove an entry named %s", f.Path, ErrDenied, latestName)
	}
	unlink := l.Unlink
	if unlink == nil {
		unlink = func(parent uint64, name string, ino uint64) error {
			gone, err := l.Index.UnlinkIno(parent, name, ino, time.Now().UnixNano())
			if err == nil && gone.Nlink == 0 {
				err = l.Index.Purge(ino)
			}
			return err
		}
	}
	if err := unlink(pin.Ino, name, in.Ino); err != nil {
		if errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrChanged) {
			return fmt.Errorf("%s: %w", f.Path, ErrChanged) // renamed or replaced meanwhile
		}
		return fmt.Errorf("%s: %w", f.Path, err)
	}
	return l.Index.Sync() // what a prune reports removed stays removed
}

// writeBlock is how many bytes Apply hands the writer at once (what xl
// save's page batches come to).
const writeBlock = 4 << 20

// Zero runs are written as zero bytes (so that an xl save image streams
// through the writer as xl wrote it, its zero pages in place) while they
// are short and their total stays within zeroAllowance plus zeroRatio
// times the chunk bytes written; any other zero run is left a hole.
// Either way the file reads the same; the work a manifest can ask for is
// bounded by the bytes that actually arrive.
const (
	zeroRunBytes  = 2 * writeBlock
	zeroAllowance = 1 << 30
	zeroRatio     = 64
)

// Apply writes m's content through the store's writer (so an xl save image
// is stored page by page, against its guest's last generation here, as if
// xl had written it), under a staging name, and renames it into place.
// A file already at m.Path is not replaced.
func (l *Local) Apply(m, base *manifest.Manifest, missing []chunkstore.ID, next func() (Chunk, error)) error {
	if err := CheckPath(m.Path); err != nil {
		return err
	}
	if !m.IsRegular() {
		return fmt.Errorf("%s: not a regular file", m.Path)
	}
	if base != nil {
		mine, err := l.Manifest(base.Path)
		if err != nil || mine.Digest() != base.Digest() {
			return fmt.Errorf("%s: %w", base.Path, ErrBaseMismatch)
		}
	}
	dir, name := path.Split(m.Path)
	parent, err := l.mkdirAll(strings.TrimSuffix(dir, "/"), m)
	if err != nil {
		return err
	}
	pin, err := l.Index.Get(parent)
	if err != nil {
		return err
	}
	if !l.As.may(pin, 3) {
		return fmt.Errorf("%s: %w: uid %d may not write to its directory", m.Path, ErrDenied, l.As.UID)
	}
	if name == latestName && l.As != nil && l.As.UID != pin.UID {
		return fmt.Errorf("%s: %w: only the directory's owner may make an entry named %s", m.Path, ErrDenied, latestName)
	}
	if _, err := l.Index.Lookup(parent, name); err == nil {
		return fmt.Errorf("%s: %w", m.Path, syscall.EEXIST)
	} else if !errors.Is(err, index.ErrNotFound) {
		return err
	}
	now := time.Now().UnixNano()
	tmp := index.StagingPrefix + "transfer." + name
	if len(tmp) > 255 {
		tmp = tmp[:255]
	}
	l.Index.Unlink(parent, tmp, now) // a transfer of the same file that died
	uid, gid := l.As.owner(m)
	in, err := l.Index.Create(parent, tmp, index.Inode{Mode: syscall.S_IFREG | l.As.mode(m), UID: uid, GID: gid, Atime: now, Mtime: m.Mtime, Ctime: now})
	if err != nil {
		return err
	}
	err = l.write(in, m, missing, next)
	if err == nil {
		_, err = l.Index.Rename(parent, tmp, parent, name, true, now)
	}
	if err == nil {
		err = l.Index.Sync()
	}
	if err != nil {
		if _, uerr := l.Index.Unlink(parent, tmp, now); uerr == nil {
			l.Index.Purge(in.Ino)
		}
		return fmt.Errorf("%s: %w", m.Path, err)
	}
	return nil
}

// write feeds m's content to a writer of in and commits it.
func (l *Local) write(in index.Inode, m *manifest.Manifest, missing []chunkstore.ID, next func() (Chunk, error)) error {
	src := newSource(l.Chunks, m, missing, next)
	defer src.close()
	w := l.Data.NewWriter(in)
	defer w.Close()
	buf := make([]byte, 0, writeBlock)
	off := int64(0) // the file offset of buf[0]
	var data, zeros int64
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := w.WriteAt(buf, off, time.Now().UnixNano())
		off += int64(len(buf))
		buf = buf[:0]
		return err
	}
	for _, e := range m.Entries {
		if e.Zero && (e.Len > zeroRunBytes || zeros+int64(e.Len) > zeroAllowance+zeroRatio*data) {
			if err := flush(); err != nil {
				return err
			}
			off += int64(e.Len) // a hole
			continue
		}
		if e.Zero {
			zeros += int64(e.Len)
		} else {
			data += int64(e.Len)
		}
		for left := int(e.Len); left > 0; {
			if len(buf) == cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
			n := min(left, cap(buf)-len(buf))
			if e.Zero {
				buf = append(buf, make([]byte, n)...)
			} else {
				data, err := src.get(e.ID)
				if err != nil {
					return err
				}
				lo := int(e.Off) + int(e.Len) - left
				if lo+n > len(data) {
					return fmt.Errorf("chunk %v: %d bytes, the manifest uses [%d, %d)", e.ID, len(data), lo, lo+n)
				}
				buf = append(buf, data[lo:lo+n]...)
			}
			left -= n
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if err := src.done(); err != nil {
		return err
	}
	w.SetMtime(m.Mtime)
	if w.Size() != m.Size {
		// A trailing hole (or an empty file): the size says it.
		if err := w.Truncate(m.Size, m.Mtime); err != nil {
			return err
		}
		w.SetMtime(m.Mtime)
	}
	_, err := w.Commit()
	return err
}

// latestName is the name each directory's latest link has (fs.LatestName).
const latestName = "latest"

// mkdirAll returns directory dir (slash-separated, "" for the root),
// creating what is missing with mode 0755 and m's owner (the caller's,
// see Local.As), searching only directories the caller may search and
// making directories only where the caller may write.
func (l *Local) mkdirAll(dir string, m *manifest.Manifest) (uint64, error) {
	ino := uint64(index.RootIno)
	cur, err := l.Index.Get(ino)
	if err != nil {
		return 0, err
	}
	if dir == "" {
		return ino, nil
	}
	for _, name := range strings.Split(dir, "/") {
		if !l.As.may(cur, 1) {
			return 0, fmt.Errorf("%s: %w: uid %d may not search %s", m.Path, ErrDenied, l.As.UID, dir)
		}
		in, err := l.Index.Lookup(ino, name)
		if errors.Is(err, index.ErrNotFound) {
			if !l.As.may(cur, 3) || (name == latestName && l.As != nil && l.As.UID != cur.UID) {
				return 0, fmt.Errorf("%s: %w: uid %d may not make directory %s", m.Path, ErrDenied, l.As.UID, dir)
			}
			now := time.Now().UnixNano()
			uid, gid := l.As.owner(m)
			in, err = l.Index.Create(ino, name, index.Inode{Mode: syscall.S_IFDIR | 0o755, UID: uid, GID: gid, Atime: now, Mtime: now, Ctime: now})
		}
		if err != nil {
			return 0, err
		}
		if in.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return 0, fmt.Errorf("%s: %w", dir, syscall.ENOTDIR)
		}
		ino, cur = in.Ino, in
	}
	return ino, nil
}

// keptMax bounds the bytes of missing chunks a transfer keeps in memory
// for a later use; the rest wait in an unlinked temporary file.
const keptMax = 32 << 20

// source hands out the chunks a manifest uses: the missing ones from the
// sender, in the order of their first use (each checked against its id),
// the others from the store. A missing chunk used again later is kept
// until its last use: in memory up to keptMax bytes, then in a temporary
// file (so what a manifest can make the receiver hold is bounded, however
// it orders its uses).
type source struct {
	cs        *chunkstore.Store
	next      func() (Chunk, error)
	missing   map[chunkstore.ID]bool
	uses      map[chunkstore.ID]int // remaining uses of missing chunks
	kept      map[chunkstore.ID][]byte
	keptBytes int
	spill     *os.File
	spillEnd  int64
	spilled   map[chunkstore.ID][2]int64 // offset, length in spill
	lastID    chunkstore.ID
	last      []byte
	got       int
}

func newSource(cs *chunkstore.Store, m *manifest.Manifest, missing []chunkstore.ID, next func() (Chunk, error)) *source {
	s := &source{cs: cs, next: next, missing: make(map[chunkstore.ID]bool, len(missing)), uses: map[chunkstore.ID]int{}, kept: map[chunkstore.ID][]byte{}, spilled: map[chunkstore.ID][2]int64{}}
	for _, id := range missing {
		s.missing[id] = true
	}
	for _, e := range m.Entries {
		if !e.Zero && s.missing[e.ID] {
			s.uses[e.ID]++
		}
	}
	return s
}

// close drops the temporary file.
func (s *source) close() {
	if s.spill != nil {
		s.spill.Close()
	}
}

// keep holds data of id for a later use.
func (s *source) keep(id chunkstore.ID, data []byte) error {
	if _, ok := s.kept[id]; ok {
		return nil
	}
	if _, ok := s.spilled[id]; ok {
		return nil
	}
	if s.keptBytes+len(data) <= keptMax {
		s.kept[id] = data
		s.keptBytes += len(data)
		return nil
	}
	if s.spill == nil {
		f, err := os.CreateTemp("", "ckptfs-transfer-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name())
		s.spill = f
	}
	if _, err := s.spill.WriteAt(data, s.spillEnd); err != nil {
		return err
	}
	s.spilled[id] = [2]int64{s.spillEnd, int64(len(data))}
	s.spillEnd += int64(len(data))
	return nil
}

// drop forgets a kept chunk after its last use.
func (s *source) drop(id chunkstore.ID) {
	if b, ok := s.kept[id]; ok {
		s.keptBytes -= len(b)
		delete(s.kept, id)
	}
	delete(s.spilled, id) // its bytes stay in the file until the end
}

func (s *source) get(id chunkstore.ID) ([]byte, error) {
	if s.last != nil && id == s.lastID {
		return s.last, nil
	}
	var data []byte
	var err error
	sp, isSpilled := s.spilled[id]
	switch {
	case !s.missing[id]:
		data, err = s.cs.Get(nil, id)
	case s.kept[id] != nil:
		data = s.kept[id]
	case isSpilled:
		data = make([]byte, sp[1])
		_, err = s.spill.ReadAt(data, sp[0])
	default:
		var c Chunk
		c, err = s.next()
		if err == nil && c.ID != id {
			err = fmt.Errorf("the sender sent chunk %v where %v comes next", c.ID, id)
		}
		if err == nil && chunkstore.Sum(c.Data) != id {
			err = fmt.Errorf("chunk %v: %w (its content does not hash to its id)", id, chunkstore.ErrCorrupt)
		}
		data = c.Data
		s.got++
	}
	if err != nil {
		return nil, err
	}
	if s.missing[id] {
		// Each entry asks once per write block it spans; count entries.
		s.uses[id]--
		if s.uses[id] > 0 {
			if err := s.keep(id, data); err != nil {
				return nil, err
			}
		} else {
			s.drop(id)
		}
	}
	s.lastID, s.last = id, data
	return data, nil
}

// done checks that every missing chunk arrived.
func (s *source) done() error {
	if s.got != len(s.missing) {
		return fmt.Errorf("%d of %d missing chunks arrived", s.got, len(s.missing))
	}
	return nil
}
