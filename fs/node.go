package fs

import (
	"context"
	"errors"
	"log"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
)

// Node is a file, directory or symlink. go-fuse keeps one Node per inode
// number while the kernel knows it.
type Node struct {
	gofs.Inode
	fsys *FS

	// mu guards the fields below. Writes, truncates and commits hold it
	// exclusively; reads of committed content share it, so a commit never
	// replaces a version under a reader.
	mu      sync.RWMutex
	w       *content.Writer // non-nil while the file has writable handles
	wStart  int64           // when w was opened (or truncated): an image's ingest starts
	writers int             // writable handles
	opens   int             // all handles
	orphan  bool            // unlinked while open: purge at last release
	epoch   uint64          // changes when committed content changes (a cache epoch)
	// committed caches the inode's committed version and size for readers;
	// valid while committedOK, which commits and truncates clear.
	committed   index.Inode
	committedOK bool
	// wbFailed: storing the file's spooled bytes failed (behind.go): its
	// writer is dropped without a commit.
	wbFailed bool
}

var (
	_ gofs.NodeGetattrer  = (*Node)(nil)
	_ gofs.NodeSetattrer  = (*Node)(nil)
	_ gofs.NodeLookuper   = (*Node)(nil)
	_ gofs.NodeReaddirer  = (*Node)(nil)
	_ gofs.NodeMkdirer    = (*Node)(nil)
	_ gofs.NodeRmdirer    = (*Node)(nil)
	_ gofs.NodeUnlinker   = (*Node)(nil)
	_ gofs.NodeRenamer    = (*Node)(nil)
	_ gofs.NodeCreater    = (*Node)(nil)
	_ gofs.NodeOpener     = (*Node)(nil)
	_ gofs.NodeSymlinker  = (*Node)(nil)
	_ gofs.NodeReadlinker = (*Node)(nil)
	_ gofs.NodeStatfser   = (*Node)(nil)
	_ gofs.NodeLinker     = (*Node)(nil)
	_ gofs.NodeMknoder    = (*Node)(nil)
	_ gofs.NodeFsyncer    = (*Node)(nil)
)

func (n *Node) ino() uint64 { return n.StableAttr().Ino }

// attr returns the inode as a reader sees it: an open writer's size and
// mtime win over the committed ones.
func (n *Node) attr() (index.Inode, error) {
	// Under the lock that commits take: an inode read before a commit
	// (behind the writer, after close) and a writer gone after it would
	// tell the kernel the old size.
	n.mu.RLock()
	defer n.mu.RUnlock()
	in, err := n.fsys.ns.Get(n.ino())
	if err != nil {
		return in, err
	}
	n.liveAttr(&in)
	return in, nil
}

// liveAttr puts an open writer's size and mtime (and what is spooled
// ahead of it) into in. The caller holds n.mu.
func (n *Node) liveAttr(in *index.Inode) {
	if n.w != nil {
		in.Size, in.Mtime = n.w.Size(), n.w.Mtime()
	}
	if b := n.behind(); b != nil {
		if size, mtime := b.size(); size >= in.Size && mtime != 0 {
			in.Size, in.Mtime = size, mtime
		}
	}
}

func (n *Node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.remember(n.ino(), n, true)
	in, err := n.attr()
	if err != nil {
		return n.fsys.toErrno("getattr", n, err)
	}
	fillAttr(&in, &out.Attr)
	return 0
}

func (n *Node) child(ctx context.Context, in index.Inode, out *fuse.EntryOut) *gofs.Inode {
	ch := n.NewInode(ctx, &Node{fsys: n.fsys}, gofs.StableAttr{Mode: in.Mode & syscall.S_IFMT, Ino: in.Ino})
	if cn, ok := ch.Operations().(*Node); ok {
		n.fsys.remember(in.Ino, cn, false)
		cn.mu.RLock()
		if in.Mode&syscall.S_IFMT == syscall.S_IFREG {
			// As in attr: in was read before this lock; a commit since
			// (behind its writer) may have changed the size.
			if cur, err := n.fsys.ns.Get(in.Ino); err == nil {
				in = cur
			}
		}
		cn.liveAttr(&in)
		cn.mu.RUnlock()
	}
	fillAttr(&in, &out.Attr)
	return ch
}

func (n *Node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if len(name) > NameMax {
		return nil, syscall.ENAMETOOLONG
	}
	if index.IsStaging(name) {
		return nil, syscall.ENOENT // a generation still being built
	}
	n.fsys.remember(n.ino(), n, true)
	in, err := n.fsys.ns.Lookup(n.ino(), name)
	if errors.Is(err, index.ErrNotFound) && name == LatestName {
		return n.lookupLatest(ctx, out)
	}
	if err != nil {
		return nil, n.fsys.toErrno("lookup", n, err)
	}
	if name == LatestName {
		if errno := n.fsys.checkRealLatest(n, in); errno != 0 {
			return nil, errno
		}
	}
	return n.child(ctx, in, out), 0
}

func (n *Node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	n.fsys.remember(n.ino(), n, true)
	ents, err := n.fsys.ns.ReadDir(n.ino())
	var dmg *index.DamagedError
	if errors.As(err, &dmg) {
		// A damaged table held some of its entries: list the others (cp
		// -a and rsync then copy what is left), and say so in the log.
		log.Printf("readdir %s: %v: listing the entries the other tables hold", n.Path(nil), err)
	} else if err != nil {
		return nil, n.fsys.toErrno("readdir", n, err)
	}
	list := make([]fuse.DirEntry, 0, len(ents)+1)
	for _, e := range ents {
		if !index.IsStaging(e.Name) {
			list = append(list, fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: e.Mode})
		}
	}
	if dir, err := n.fsys.ns.Get(n.ino()); n.fsys.listLatest && err == nil {
		if l, ok := n.fsys.linkOf(dir, ents); ok {
			list = append(list, fuse.DirEntry{Name: LatestName, Ino: l.attr.Ino, Mode: syscall.S_IFLNK})
		}
	}
	return gofs.NewListDirStream(list), 0
}

// checkNewName refuses a name no new entry may have.
func checkNewName(name string) syscall.Errno {
	if len(name) > NameMax {
		return syscall.ENAMETOOLONG
	}
	if index.IsStaging(name) {
		return syscall.EPERM // reserved for generations being built
	}
	return 0
}

func (n *Node) create(ctx context.Context, name string, mode uint32, target string, out *fuse.EntryOut) (*gofs.Inode, index.Inode, syscall.Errno) {
	return n.createDev(ctx, name, mode, target, 0, out)
}

func (n *Node) createDev(ctx context.Context, name string, mode uint32, target string, rdev uint32, out *fuse.EntryOut) (*gofs.Inode, index.Inode, syscall.Errno) {
	n.fsys.remember(n.ino(), n, true)
	if n.fsys.readOnly {
		return nil, index.Inode{}, syscall.EROFS
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, index.Inode{}, errno
	}
	if errno := n.mayTakeLatest(ctx, name); errno != 0 {
		return nil, index.Inode{}, errno
	}
	uid, gid := caller(ctx)
	t := now()
	in, err := n.fsys.ns.Create(n.ino(), name, index.Inode{Mode: mode, UID: uid, GID: gid, Atime: t, Mtime: t, Ctime: t, Target: target, Rdev: rdev})
	if err != nil {
		return nil, in, n.fsys.toErrno("create", n, err)
	}
	return n.child(ctx, in, out), in, 0
}

func (n *Node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, _, errno := n.create(ctx, name, syscall.S_IFDIR|mode&07777, "", out)
	return ch, errno
}

func (n *Node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ch, _, errno := n.create(ctx, name, syscall.S_IFLNK|0o777, target, out)
	return ch, errno
}

// Mknod makes a FIFO, a socket or a device node (metadata only: the
// kernel serves their I/O itself, never through this filesystem).
func (n *Node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFSOCK, syscall.S_IFCHR, syscall.S_IFBLK:
	case syscall.S_IFREG, 0:
		mode = syscall.S_IFREG | mode&07777
		dev = 0
	default:
		return nil, syscall.EINVAL
	}
	if mode&syscall.S_IFMT != syscall.S_IFCHR && mode&syscall.S_IFMT != syscall.S_IFBLK {
		dev = 0
	}
	ch, _, errno := n.createDev(ctx, name, mode, "", dev, out)
	return ch, errno
}

// Link gives target another name here (a hard link).
func (n *Node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	if errno := checkNewName(name); errno != 0 {
		return nil, errno
	}
	if errno := n.mayTakeLatest(ctx, name); errno != 0 {
		return nil, errno
	}
	in, err := n.fsys.ns.Link(n.ino(), name, target.EmbeddedInode().StableAttr().Ino, now())
	if err != nil {
		return nil, n.fsys.toErrno("link", n, err)
	}
	return n.child(ctx, in, out), 0
}

// Fsync makes what the node's namespace operations and (through fh) its
// writes did durable: fsync and fdatasync of a directory make a rename,
// create or unlink in it durable.
func (n *Node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	n.endBehind()
	if h, ok := fh.(*handle); ok && h.writable {
		n.mu.Lock()
		dirty := n.w != nil && n.w.Dirty()
		errno := n.commitLocked("fsync")
		n.mu.Unlock()
		if errno != 0 || dirty {
			return errno // the commit was durable, and so is all before it
		}
	}
	if n.fsys.readOnly {
		return 0
	}
	return n.fsys.toErrno("fsync", n, n.fsys.ns.Sync())
}

func (n *Node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	in, err := n.fsys.ns.Get(n.ino())
	if err != nil {
		return nil, n.fsys.toErrno("readlink", n, err)
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		return nil, syscall.EINVAL
	}
	return []byte(in.Target), 0
}

func (n *Node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	ch, _, errno := n.create(ctx, name, syscall.S_IFREG|mode&07777, "", out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	cn := ch.Operations().(*Node)
	// The file is new and empty: O_TRUNC has nothing to do, and doing it
	// would move mtime past what the create reply told the kernel.
	h, errno := cn.open(flags &^ syscall.O_TRUNC)
	return ch, h, 0, errno
}

func (n *Node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	n.fsys.remember(n.ino(), n, true)
	h, errno := n.open(flags)
	return h, 0, errno
}

func (n *Node) open(flags uint32) (*handle, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if writable && n.fsys.readOnly {
		return nil, syscall.EROFS
	}
	n.endBehind() // a second handle sees the file as committed
	n.mu.Lock()
	defer n.mu.Unlock()
	// Read the inode under the lock that forget takes: a concurrent unlink
	// or rename either sees this open or has purged the inode already.
	in, err := n.fsys.ns.Get(n.ino())
	if err != nil {
		return nil, n.fsys.toErrno("open", n, err)
	}
	n.opens++
	n.fsys.handles.Add(1)
	h := &handle{n: n, writable: writable}
	if writable {
		n.writers++
		if n.w == nil {
			n.w = n.fsys.data.NewWriter(in)
			n.wStart = now()
		}
		if flags&syscall.O_TRUNC != 0 {
			n.wStart = now() // xl save: the image starts here
			if err := n.w.Truncate(0, now()); err != nil {
				n.fsys.handles.Add(-1) // no handle: no release will come
				return nil, n.fsys.toErrno("open", n, err)
			}
		}
	}
	return h, 0
}

// release drops a handle; the last writable one commits and ends the write
// state, the last one of an unlinked file purges it. A handle writing
// behind is released behind its writes.
func (n *Node) release(h *handle) syscall.Errno {
	if b := n.behind(); b != nil {
		if h.writable && b.release(h) {
			return 0
		}
		n.endBehind()
	}
	return n.releaseNow(h)
}

func (n *Node) releaseNow(h *handle) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errno syscall.Errno
	n.opens--
	if h.writable {
		n.writers--
		if n.writers == 0 && n.w != nil {
			if !n.wbFailed {
				errno = n.commitLocked("release")
			}
			n.wbFailed = false
			if n.w.CommittedImage() {
				n.fsys.stats.observeImage(now() - n.wStart)
				_, p := n.Parent()
				n.fsys.latestArrived(p)
			}
			n.w.Close()
			n.w = nil
		}
	}
	if n.opens == 0 && n.orphan {
		if err := n.fsys.ns.Purge(n.ino()); err != nil {
			errno = n.fsys.toErrno("purge", n, err)
		}
		n.orphan = false
	}
	return errno
}

// committedInode returns the committed inode and its cache epoch, from the
// node's cache when valid; ok is false while the file has a writer.
func (n *Node) committedInode() (index.Inode, uint64, bool, error) {
	n.mu.RLock()
	in, epoch, valid, writing := n.committed, n.epoch, n.committedOK, n.w != nil
	n.mu.RUnlock()
	if writing {
		return in, epoch, false, nil
	}
	if valid {
		return in, epoch, true, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w != nil {
		return in, epoch, false, nil
	}
	in, err := n.fsys.ns.Get(n.ino())
	if err != nil {
		return in, n.epoch, true, err
	}
	n.committed, n.committedOK = in, true
	return in, n.epoch, true, nil
}

// commitLocked makes the writer's content durable and committed.
func (n *Node) commitLocked(op string) syscall.Errno {
	if n.w == nil || !n.w.Dirty() {
		return 0
	}
	if _, err := n.w.Commit(); err != nil {
		return n.fsys.toErrno(op, n, err)
	}
	n.epoch = n.fsys.data.NewEpoch()
	n.committedOK = false
	return 0
}

func (n *Node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	n.endBehind()
	t := now()
	if size, ok := in.GetSize(); ok {
		if errno := n.truncate(int64(size), t); errno != 0 {
			return errno
		}
	}
	mtime, setM := in.GetMTime()
	if setM {
		n.mu.Lock()
		if n.w != nil {
			n.w.SetMtime(mtime.UnixNano())
		}
		n.mu.Unlock()
	}
	_, err := n.fsys.ns.Update(n.ino(), func(x *index.Inode) error {
		if m, ok := in.GetMode(); ok {
			x.Mode = x.Mode&syscall.S_IFMT | m
		}
		if u, ok := in.GetUID(); ok {
			x.UID = u
		}
		if g, ok := in.GetGID(); ok {
			x.GID = g
		}
		if a, ok := in.GetATime(); ok {
			x.Atime = a.UnixNano()
		}
		if setM {
			x.Mtime = mtime.UnixNano()
		}
		x.Ctime = t
		return nil
	})
	if err != nil {
		return n.fsys.toErrno("setattr", n, err)
	}
	return n.Getattr(ctx, fh, out)
}

func (n *Node) truncate(size, t int64) syscall.Errno {
	if n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return syscall.EISDIR
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w != nil {
		return n.fsys.toErrno("truncate", n, n.w.Truncate(size, t))
	}
	in, err := n.fsys.ns.Get(n.ino())
	if err != nil {
		return n.fsys.toErrno("truncate", n, err)
	}
	n.w = n.fsys.data.NewWriter(in)
	defer func() { n.w.Close(); n.w = nil }()
	if err := n.w.Truncate(size, t); err != nil {
		return n.fsys.toErrno("truncate", n, err)
	}
	return n.commitLocked("truncate")
}

// forget handles a name that went away: the inode is purged now, or at the
// last release if it is open.
func (n *Node) forget(ch *gofs.Inode, in index.Inode) syscall.Errno { return n.fsys.forget(ch, in) }

func (f *FS) forget(ch *gofs.Inode, in index.Inode) syscall.Errno {
	if in.Nlink > 0 || in.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		return 0
	}
	if ch != nil {
		if cn, ok := ch.Operations().(*Node); ok {
			cn.mu.Lock()
			defer cn.mu.Unlock()
			if cn.opens > 0 {
				cn.orphan = true
				return 0
			}
		}
	}
	return f.toErrno("purge", nil, f.ns.Purge(in.Ino))
}

func (n *Node) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	ch := n.GetChild(name)
	in, err := n.fsys.ns.Unlink(n.ino(), name, now())
	if errors.Is(err, index.ErrNotFound) && name == LatestName {
		if _, ok, _ := n.fsys.latest(n.ino()); ok {
			return syscall.EPERM // the daemon's link, not an entry
		}
	}
	if err != nil {
		return n.fsys.toErrno("unlink", n, err)
	}
	return n.forget(ch, in)
}

func (n *Node) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	return n.fsys.toErrno("rmdir", n, n.fsys.ns.Rmdir(n.ino(), name, now()))
}

func (n *Node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.fsys.readOnly {
		return syscall.EROFS
	}
	const renameNoReplace, renameExchange, renameWhiteout = 1, 2, 4
	if flags&renameWhiteout != 0 {
		return syscall.EINVAL // overlayfs's; not for this filesystem
	}
	if errno := checkNewName(newName); errno != 0 { // the source, hidden by Lookup, never gets here
		return errno
	}
	np := newParent.EmbeddedInode()
	// A file closed behind its writer is committed before it moves: what
	// waits for a directory's commits (latest) must find it where it is.
	n.fsys.endBehindChild(n.EmbeddedInode(), name)
	if flags&renameExchange != 0 {
		n.fsys.endBehindChild(np, newName)
	}
	if npn, ok := newParent.(*Node); ok {
		if errno := npn.mayTakeLatest(ctx, newName); errno != 0 {
			return errno
		}
	}
	if flags&renameExchange != 0 {
		if errno := n.mayTakeLatest(ctx, name); errno != 0 { // the other entry moves onto name
			return errno
		}
		return n.fsys.toErrno("rename", n, n.fsys.ns.Exchange(n.ino(), name, np.StableAttr().Ino, newName, now()))
	}
	ch := np.GetChild(newName)
	replaced, err := n.fsys.ns.Rename(n.ino(), name, np.StableAttr().Ino, newName, flags&renameNoReplace != 0, now())
	if err != nil {
		return n.fsys.toErrno("rename", n, err)
	}
	n.fsys.latestArrived(np) // an image may have moved in
	if replaced.Ino != 0 {
		return n.forget(ch, replaced)
	}
	return 0
}

func (n *Node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if n.fsys.statfsOf == "" || syscall.Statfs(n.fsys.statfsOf, &st) != nil {
		return 0
	}
	out.FromStatfsT(&st)
	out.NameLen = 255
	return 0
}
