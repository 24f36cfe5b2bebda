package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// RootIno is the inode number of the root directory.
const RootIno = 1

// StagingPrefix starts the name of a file still being built (a generation
// receive.Publisher publishes is built under StagingPrefix+name, then
// renamed into place). The FUSE layer hides such names and refuses them as
// new names, so no reader sees a generation half-written.
const StagingPrefix = ".ckptfs-staging."

// IsStaging reports whether name is a staging name.
func IsStaging(name string) bool { return strings.HasPrefix(name, StagingPrefix) }

// Errors returned by namespace operations; the FUSE layer maps them to errno.
var (
	ErrNotFound = errors.New("no such file or directory")
	ErrExist    = errors.New("file exists")
	ErrNotEmpty = errors.New("directory not empty")
	ErrNotDir   = errors.New("not a directory")
	ErrIsDir    = errors.New("is a directory")
	ErrInval    = errors.New("invalid argument")
	// ErrChanged: the name no longer names the inode the caller meant.
	ErrChanged = errors.New("the name now names another file")
	ErrPerm    = errors.New("operation not permitted")
	// ErrTooManyLinks: the file has MaxLinks names already.
	ErrTooManyLinks = errors.New("too many links")
)

// Index keeps the namespace and the extents of every file in the store's
// Pebble database. Namespace mutations are serialized by one mutex; each is
// one atomic batch.
type Index struct {
	db *pebble.DB
	mu sync.Mutex
	// next is the next free inode or content version number (one counter
	// serves both); persisted under nextInoKey in the batch that uses it.
	next uint64

	damaged func() []chunkstore.KeyRange // see SetDamaged
	format  int                          // see Format
	ext     Extension                    // see Open

	durable func(*pebble.Batch) error // see SetDurable
	pending atomic.Bool               // a commit since the last Sync
}

var noSync = pebble.NoSync

// OpenReadOnly opens the index of a read-only database: no root is created
// and no recovery runs.
func OpenReadOnly(db *pebble.DB) (*Index, error) {
	if _, err := (&Index{db: db}).Get(RootIno); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("index: %w", err)
	}
	// Another error (a damaged table) shows again where it matters: fsck
	// reports it and reads of what it affects fail.
	ver, err := chunkstore.StoredFormat(db)
	if err != nil {
		ver = chunkstore.FormatVersion
	}
	return &Index{db: db, format: ver}, nil
}

// Open opens the index in db, creating the root directory on first use, and
// finishes what a crash interrupted: staged content versions that were never
// committed, orphaned inodes (unlinked while open) and files under staging
// names (a publication cut short) are deleted. ext (nil: none) is the
// package that owns the keys under ExtensionPrefixes: Open has it upgrade
// and recover them, and purging an inode tells it.
func Open(db *pebble.DB, now int64, uid, gid uint32, ext Extension) (*Index, error) {
	x := &Index{db: db, next: RootIno + 1, ext: ext, format: chunkstore.FormatVersion}
	v, c, err := db.Get(nextInoKey)
	switch {
	case err == nil:
		if len(v) != 8 {
			c.Close()
			return nil, fmt.Errorf("%w: next inode counter", ErrCorrupt)
		}
		x.next = binary.BigEndian.Uint64(v)
		c.Close()
	case errors.Is(err, pebble.ErrNotFound):
		root := Inode{Ino: RootIno, Mode: syscall.S_IFDIR | 0o755, UID: uid, GID: gid, Nlink: 2, Atime: now, Mtime: now, Ctime: now}
		b := db.NewBatch()
		b.Set(inodeKey(RootIno), encodeInode(&root), nil)
		b.Set(nextInoKey, binary.BigEndian.AppendUint64(nil, x.next), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if err := x.upgrade(); err != nil {
		return nil, fmt.Errorf("index format upgrade: %w", err)
	}
	if err := x.recover(now); err != nil {
		return nil, fmt.Errorf("index recovery: %w", err)
	}
	return x, nil
}

// upgrade brings a store of an older format to the current one, in order,
// so that an interrupted upgrade is redone by the next open: a version 1
// store gets the chunk references of every extent (version 1 kept none);
// the extension upgrades its keys (xen/lineage: the page entries of
// versions 2 and 3 become blocks), then the page entries' reference keys
// of versions 2 and 3 go; then the current version is recorded. (Version 3 changed only chunkstore's
// keys: chunkstore.Open upgrades those first.)
func (x *Index) upgrade() error {
	ver, err := chunkstore.StoredFormat(x.db)
	if err != nil || ver >= chunkstore.FormatVersion {
		return err
	}
	if ver < 2 {
		b := x.db.NewBatch()
		err = x.chunkExtents([]byte{prefixExtent}, func(ino, ver uint64, e Extent) error {
			if err := b.Set(extentRef(ino, ver, e), nil, nil); err != nil {
				return err
			}
			return x.commitIfFull(&b)
		})
		if err == nil {
			err = b.Commit(pebble.Sync)
		}
		b.Close()
		if err != nil {
			return err
		}
	}
	if x.ext != nil {
		if err := x.ext.Upgrade(x, ver); err != nil {
			return err
		}
	}
	if ver < 4 {
		if err := x.dropPageRefs(); err != nil {
			return err
		}
	}
	b := x.db.NewBatch()
	defer b.Close()
	if err := chunkstore.SetCurrentFormat(b); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

func (x *Index) recover(now int64) error {
	b := x.db.NewBatch()
	err := x.scan([]byte{prefixStaging}, func(k, _ []byte) error {
		if len(k) != keyLen(2) {
			return fmt.Errorf("%w: staging key %x", ErrCorrupt, k)
		}
		ino, ver := field(k, 0), field(k, 1)
		if err := x.dropExtents(b, extentPrefix(ino, ver)); err != nil {
			return err
		}
		return b.Delete(k, nil)
	})
	if err != nil {
		return err
	}
	err = x.scan([]byte{prefixOrphan}, func(k, _ []byte) error {
		if len(k) != keyLen(1) {
			return fmt.Errorf("%w: orphan key %x", ErrCorrupt, k)
		}
		return x.purge(b, field(k, 0))
	})
	if err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if err := x.dropStaging(now); err != nil {
		return err
	}
	if x.ext != nil {
		return x.ext.Recover(x)
	}
	return nil
}

// dropStaging removes the files a crash left under staging names (a
// generation whose build never finished).
func (x *Index) dropStaging(now int64) error {
	type name struct {
		parent uint64
		name   string
	}
	var left []name
	err := x.WalkDirents(func(parent uint64, d Dirent) error {
		if IsStaging(d.Name) {
			left = append(left, name{parent, d.Name})
		}
		return nil
	})
	for _, e := range left {
		if err != nil {
			break
		}
		var in Inode
		if in, err = x.Unlink(e.parent, e.name, now); err == nil && in.Nlink == 0 {
			err = x.Purge(in.Ino)
		}
	}
	return err
}

// batchLimit is the size at which a long-running job (the upgrade, gc)
// applies its batch and starts another, so memory stays bounded.
const batchLimit = 4 << 20

// commitIfFull applies *b once it holds batchLimit bytes and replaces it
// with an empty batch.
func (x *Index) commitIfFull(b **pebble.Batch) error {
	if (*b).Len() < batchLimit {
		return nil
	}
	if err := x.commit(*b); err != nil {
		return err
	}
	(*b).Close()
	*b = x.db.NewBatch()
	return nil
}

func (x *Index) scan(prefix []byte, fn func(k, v []byte) error) error {
	lo, hi := prefix, prefixEnd(prefix)
	var skipped []chunkstore.KeyRange
	for {
		last, fnErr, err := x.scanRange(lo, hi, fn)
		if fnErr != nil {
			return fnErr
		}
		if err == nil {
			if len(skipped) > 0 {
				return &DamagedError{Ranges: skipped}
			}
			return nil
		}
		// A damaged table: go on past what it held, if the store knows
		// its keys (chunkstore.Store.DamagedRanges).
		from := lo
		if last != nil {
			from = last
		}
		r, ok := x.nextDamaged(from, hi)
		if !ok {
			return err
		}
		skipped = append(skipped, r)
		lo = append(append([]byte(nil), r.Largest...), 0) // the key after
	}
}

// scanRange calls fn for the keys in [lo, hi) and returns the last key it
// was called with, fn's error, and the iterator's.
func (x *Index) scanRange(lo, hi []byte, fn func(k, v []byte) error) (last []byte, fnErr, err error) {
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return last, nil, err
		}
		if err := fn(it.Key(), v); err != nil {
			return last, err, nil
		}
		last = append(last[:0], it.Key()...)
	}
	return last, nil, it.Error()
}

// nextDamaged returns the damaged key range that a scan from key from (up
// to hi) meets first.
func (x *Index) nextDamaged(from, hi []byte) (chunkstore.KeyRange, bool) {
	if x.damaged == nil {
		return chunkstore.KeyRange{}, false
	}
	var best chunkstore.KeyRange
	found := false
	for _, r := range x.damaged() {
		if bytes.Compare(r.Largest, from) < 0 || bytes.Compare(r.Smallest, hi) >= 0 {
			continue
		}
		if !found || bytes.Compare(r.Smallest, best.Smallest) < 0 {
			best, found = r, true
		}
	}
	return best, found
}

// DamagedError says a scan skipped key ranges a damaged table held: what
// it returned is everything else.
type DamagedError struct{ Ranges []chunkstore.KeyRange }

func (e *DamagedError) Error() string {
	parts := make([]string, len(e.Ranges))
	for i, r := range e.Ranges {
		parts[i] = fmt.Sprintf("%q..%q", r.Smallest, r.Largest)
	}
	return "keys unreadable (a damaged table held them): " + strings.Join(parts, ", ")
}

// SetDamaged tells the index where the store's damaged tables' keys are
// (chunkstore.Store.DamagedRanges), so that walks over the namespace go on
// past them.
func (x *Index) SetDamaged(fn func() []chunkstore.KeyRange) { x.damaged = fn }

// allocLocked returns a new inode or version number, recording the counter
// in b. x.mu must be held.
func (x *Index) allocLocked(b *pebble.Batch) uint64 {
	n := x.next
	x.next++
	b.Set(nextInoKey, binary.BigEndian.AppendUint64(nil, x.next), nil)
	return n
}

// Get returns inode ino.
func (x *Index) Get(ino uint64) (Inode, error) {
	v, c, err := x.db.Get(inodeKey(ino))
	if errors.Is(err, pebble.ErrNotFound) {
		return Inode{}, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if err != nil {
		return Inode{}, err
	}
	defer c.Close()
	return decodeInode(ino, v)
}

func (x *Index) getDirent(parent uint64, name string) (Dirent, error) {
	v, c, err := x.db.Get(direntKey(parent, name))
	if errors.Is(err, pebble.ErrNotFound) {
		return Dirent{}, ErrNotFound
	}
	if err != nil {
		return Dirent{}, err
	}
	defer c.Close()
	return decodeDirent(name, v)
}

// Lookup returns the inode named name in directory parent.
func (x *Index) Lookup(parent uint64, name string) (Inode, error) {
	d, err := x.getDirent(parent, name)
	if err != nil {
		return Inode{}, err
	}
	return x.Get(d.Ino)
}

// ReadDir lists directory ino in name order.
func (x *Index) ReadDir(ino uint64) ([]Dirent, error) {
	var out []Dirent
	p := direntPrefix(ino)
	err := x.scan(p, func(k, v []byte) error {
		d, err := decodeDirent(string(k[len(p):]), v)
		out = append(out, d)
		return err
	})
	return out, err
}

func (x *Index) putInode(b *pebble.Batch, in *Inode) {
	b.Set(inodeKey(in.Ino), encodeInode(in), nil)
}

// Create makes a new inode described by in (Mode, UID, GID, times, Target)
// named name in directory parent.
func (x *Index) Create(parent uint64, name string, in Inode) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	dir, err := x.Get(parent)
	if err != nil {
		return Inode{}, err
	}
	if dir.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return Inode{}, ErrNotDir
	}
	if _, err := x.getDirent(parent, name); err == nil {
		return Inode{}, ErrExist
	} else if !errors.Is(err, ErrNotFound) {
		return Inode{}, err
	}
	b := x.db.NewBatch()
	in.Ino = x.allocLocked(b)
	in.Nlink = 1
	in.Size = 0
	if in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		in.Nlink = 2
		dir.Nlink++
	}
	if in.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		in.Size = int64(len(in.Target))
	}
	in.Ver = x.allocLocked(b)
	dir.Mtime, dir.Ctime = in.Ctime, in.Ctime
	x.putInode(b, &in)
	x.putInode(b, &dir)
	b.Set(direntKey(parent, name), encodeDirent(in.Ino, in.Mode), nil)
	return in, x.commit(b)
}

// Link adds name in directory parent as another name of the
// non-directory ino (a hard link), and returns the inode with its new link
// count.
func (x *Index) Link(parent uint64, name string, ino uint64, now int64) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	dir, err := x.Get(parent)
	if err != nil {
		return Inode{}, err
	}
	if dir.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return Inode{}, ErrNotDir
	}
	in, err := x.Get(ino)
	if err != nil {
		return Inode{}, err
	}
	if in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return Inode{}, ErrPerm // link(2): EPERM for a directory
	}
	if in.Nlink == 0 {
		return Inode{}, ErrNotFound // unlinked while open
	}
	if _, err := x.getDirent(parent, name); err == nil {
		return Inode{}, ErrExist
	} else if !errors.Is(err, ErrNotFound) {
		return Inode{}, err
	}
	if in.Nlink >= MaxLinks {
		return Inode{}, ErrTooManyLinks
	}
	b := x.db.NewBatch()
	in.Nlink++
	in.Ctime = now
	dir.Mtime, dir.Ctime = now, now
	x.putInode(b, &in)
	x.putInode(b, &dir)
	b.Set(direntKey(parent, name), encodeDirent(in.Ino, in.Mode), nil)
	return in, x.commit(b)
}

// MaxLinks bounds a file's names, as ext4 does.
const MaxLinks = 65000

// Exchange swaps two names atomically (rename(2) with RENAME_EXCHANGE):
// each name then names what the other did. Both must exist.
func (x *Index) Exchange(p1 uint64, n1 string, p2 uint64, n2 string, now int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	d1, err := x.getDirent(p1, n1)
	if err != nil {
		return err
	}
	d2, err := x.getDirent(p2, n2)
	if err != nil {
		return err
	}
	if d1.Ino == d2.Ino {
		return nil
	}
	dir1, err := x.Get(p1)
	if err != nil {
		return err
	}
	dir2 := &dir1
	if p2 != p1 {
		d, err := x.Get(p2)
		if err != nil {
			return err
		}
		dir2 = &d
	}
	b := x.db.NewBatch()
	isDir := func(m uint32) bool { return m&syscall.S_IFMT == syscall.S_IFDIR }
	if dir2 != &dir1 {
		// A directory that moves to the other parent takes its ".." along.
		if isDir(d1.Mode) {
			dir1.Nlink--
			dir2.Nlink++
		}
		if isDir(d2.Mode) {
			dir2.Nlink--
			dir1.Nlink++
		}
	}
	for _, ino := range []uint64{d1.Ino, d2.Ino} {
		in, err := x.Get(ino)
		if err != nil {
			return err
		}
		in.Ctime = now
		x.putInode(b, &in)
	}
	dir1.Mtime, dir1.Ctime = now, now
	dir2.Mtime, dir2.Ctime = now, now
	x.putInode(b, &dir1)
	x.putInode(b, dir2)
	b.Set(direntKey(p1, n1), encodeDirent(d2.Ino, d2.Mode), nil)
	b.Set(direntKey(p2, n2), encodeDirent(d1.Ino, d1.Mode), nil)
	return x.commit(b)
}

// Unlink removes the name of a non-directory. When its last name goes, the
// inode becomes an orphan: the caller calls Purge once no handle has it open
// (orphans left by a crash are purged by Open).
func (x *Index) Unlink(parent uint64, name string, now int64) (Inode, error) {
	return x.UnlinkIno(parent, name, 0, now)
}

// UnlinkIno is Unlink of parent/name only if that name still names inode
// ino (ErrChanged otherwise; ino 0 takes whatever it names): what gc uses,
// so that a name replaced since its plan is left alone.
func (x *Index) UnlinkIno(parent uint64, name string, ino uint64, now int64) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if ino != 0 {
		if d, err := x.getDirent(parent, name); err != nil {
			return Inode{}, err
		} else if d.Ino != ino {
			return Inode{}, ErrChanged
		}
	}
	dir, err := x.Get(parent)
	if err != nil {
		return Inode{}, err
	}
	b := x.db.NewBatch()
	in, err := x.unlinkLocked(b, &dir, name, now, false)
	if err != nil {
		return in, err
	}
	x.putInode(b, &dir)
	return in, x.commit(b)
}

// unlinkLocked removes dir/name in b, updating *dir in memory; the caller
// stores *dir.
func (x *Index) unlinkLocked(b *pebble.Batch, dir *Inode, name string, now int64, wantDir bool) (Inode, error) {
	d, err := x.getDirent(dir.Ino, name)
	if err != nil {
		return Inode{}, err
	}
	in, err := x.Get(d.Ino)
	if err != nil {
		return Inode{}, err
	}
	isDir := in.Mode&syscall.S_IFMT == syscall.S_IFDIR
	switch {
	case wantDir && !isDir:
		return in, ErrNotDir
	case !wantDir && isDir:
		return in, ErrIsDir
	}
	if isDir {
		empty, err := x.emptyDir(in.Ino)
		if err != nil {
			return in, err
		}
		if !empty {
			return in, ErrNotEmpty
		}
		dir.Nlink--
		in.Nlink = 0
	} else {
		in.Nlink--
	}
	in.Ctime = now
	dir.Mtime, dir.Ctime = now, now
	b.Delete(direntKey(dir.Ino, name), nil)
	if in.Nlink == 0 {
		b.Set(orphanKey(in.Ino), nil, nil)
	}
	x.putInode(b, &in)
	return in, nil
}

func (x *Index) emptyDir(ino uint64) (bool, error) {
	p := direntPrefix(ino)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	empty := !it.First()
	return empty, it.Close()
}

// Rmdir removes an empty directory. Its inode is purged at once.
func (x *Index) Rmdir(parent uint64, name string, now int64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	dir, err := x.Get(parent)
	if err != nil {
		return err
	}
	b := x.db.NewBatch()
	in, err := x.unlinkLocked(b, &dir, name, now, true)
	if err != nil {
		return err
	}
	x.putInode(b, &dir)
	if err := x.purge(b, in.Ino); err != nil {
		return err
	}
	return x.commit(b)
}

// Rename moves oldParent/oldName to newParent/newName, replacing a
// non-directory or an empty directory there. It returns the replaced inode
// (Ino 0 if none); a replaced file that lost its last name is an orphan, as
// after Unlink. The kernel has already refused moving a directory below
// itself.
func (x *Index) Rename(oldParent uint64, oldName string, newParent uint64, newName string, noReplace bool, now int64) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	src, err := x.getDirent(oldParent, oldName)
	if err != nil {
		return Inode{}, err
	}
	if oldParent == newParent && oldName == newName {
		return Inode{}, nil
	}
	in, err := x.Get(src.Ino)
	if err != nil {
		return Inode{}, err
	}
	od, err := x.Get(oldParent)
	if err != nil {
		return Inode{}, err
	}
	nd := &od
	if newParent != oldParent {
		d, err := x.Get(newParent)
		if err != nil {
			return Inode{}, err
		}
		nd = &d
	}
	if nd.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return Inode{}, ErrNotDir
	}
	srcDir := in.Mode&syscall.S_IFMT == syscall.S_IFDIR
	b := x.db.NewBatch()
	var replaced Inode
	if dst, err := x.getDirent(newParent, newName); err == nil {
		if noReplace {
			return Inode{}, ErrExist
		}
		dstDir := dst.Mode&syscall.S_IFMT == syscall.S_IFDIR
		if srcDir && !dstDir {
			return Inode{}, ErrNotDir
		}
		if !srcDir && dstDir {
			return Inode{}, ErrIsDir
		}
		if dst.Ino == in.Ino {
			return Inode{}, nil // hard links to one inode: nothing to do
		}
		replaced, err = x.unlinkLocked(b, nd, newName, now, dstDir)
		if err != nil {
			return Inode{}, err
		}
		if dstDir {
			if err := x.purge(b, replaced.Ino); err != nil {
				return Inode{}, err
			}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return Inode{}, err
	}
	if srcDir && nd != &od {
		od.Nlink--
		nd.Nlink++
	}
	od.Mtime, od.Ctime = now, now
	nd.Mtime, nd.Ctime = now, now
	x.putInode(b, &od)
	x.putInode(b, nd)
	in.Ctime = now
	x.putInode(b, &in)
	b.Delete(direntKey(oldParent, oldName), nil)
	b.Set(direntKey(newParent, newName), encodeDirent(in.Ino, in.Mode), nil)
	return replaced, x.commit(b)
}

// Sync makes every namespace change committed so far durable (they are
// committed without waiting for the disk; Pebble's log is ordered, so one
// synced write covers all before it).
func (x *Index) Sync() error {
	b := x.db.NewBatch()
	defer b.Close()
	return x.commitDurable(b)
}

// SyncPending is Sync if a change was committed since the last one; the
// daemon calls it every second, so that a namespace change is durable at
// most a second after it returned (as ext4's commit interval bounds it).
func (x *Index) SyncPending() error {
	if !x.pending.Load() {
		return nil
	}
	return x.Sync()
}

// SetDurable sets how durable commits are made (chunkstore's
// CommitDurable, which keeps the store's durable marker); without it they
// are synced Pebble commits.
func (x *Index) SetDurable(commit func(*pebble.Batch) error) { x.durable = commit }

func (x *Index) commitDurable(b *pebble.Batch) error {
	// Cleared before the commit: a change applied after this line keeps
	// it set.
	x.pending.Store(false)
	commit := x.durable
	if commit == nil {
		commit = func(b *pebble.Batch) error { return b.Commit(pebble.Sync) }
	}
	err := commit(b)
	if err != nil {
		x.pending.Store(true)
	}
	return err
}

// commit applies b without waiting for the disk; Sync or the next durable
// commit makes it durable.
func (x *Index) commit(b *pebble.Batch) error {
	x.pending.Store(true)
	return b.Commit(noSync)
}

// Purge deletes an orphaned inode and all its content versions.
func (x *Index) Purge(ino uint64) error {
	b := x.db.NewBatch()
	if err := x.purge(b, ino); err != nil {
		return err
	}
	return x.commit(b)
}

// purge deletes ino's extents (its chunks become gc candidates) and tells
// the extension (which marks the generation its image holds, if any, dead
// for gc).
func (x *Index) purge(b *pebble.Batch, ino uint64) error {
	if err := x.dropExtents(b, binary.BigEndian.AppendUint64([]byte{prefixExtent}, ino)); err != nil {
		return err
	}
	if x.ext != nil {
		if err := x.ext.Purge(x, b, ino); err != nil {
			return err
		}
	}
	b.Delete(inodeKey(ino), nil)
	return b.Delete(orphanKey(ino), nil)
}

// Update applies fn to inode ino and stores the result.
func (x *Index) Update(ino uint64, fn func(*Inode) error) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	in, err := x.Get(ino)
	if err != nil {
		return in, err
	}
	if err := fn(&in); err != nil {
		return in, err
	}
	in.Ino = ino
	b := x.db.NewBatch()
	x.putInode(b, &in)
	return in, x.commit(b)
}

// WalkInodes calls fn for every inode in inode-number order.
func (x *Index) WalkInodes(fn func(Inode) error) error {
	return x.scan([]byte{prefixInode}, func(k, v []byte) error {
		if len(k) != keyLen(1) {
			return fmt.Errorf("%w: inode key %x", ErrCorrupt, k)
		}
		in, err := decodeInode(field(k, 0), v)
		if err != nil {
			return err
		}
		return fn(in)
	})
}

// WalkDirents calls fn for every directory entry with its parent.
func (x *Index) WalkDirents(fn func(parent uint64, d Dirent) error) error {
	return x.scan([]byte{prefixDirent}, func(k, v []byte) error {
		if len(k) < 10 {
			return fmt.Errorf("%w: dirent key %x", ErrCorrupt, k)
		}
		d, err := decodeDirent(string(k[keyLen(1):]), v)
		if err != nil {
			return err
		}
		return fn(field(k, 0), d)
	})
}

// StagedVersions calls fn for every staged (uncommitted) version.
func (x *Index) StagedVersions(fn func(ino, ver uint64) error) error {
	return x.scan([]byte{prefixStaging}, func(k, _ []byte) error {
		if len(k) != keyLen(2) {
			return fmt.Errorf("%w: staging key %x", ErrCorrupt, k)
		}
		return fn(field(k, 0), field(k, 1))
	})
}
