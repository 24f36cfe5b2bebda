package fs

import (
	"context"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/index"
)

// LatestName is the symlink each directory holding xl save images shows:
// it names the directory's newest whole image, so that
// `xl restore /ckpt/GUEST/latest` restores the newest checkpoint of the
// guest whose checkpoints are kept in /ckpt/GUEST. It is not stored: it is
// worked out at every lookup and readlink, so it follows each published
// generation and each expiry at once. readdir lists it only with
// Config.ListLatest (mount --list-latest).
//
// The name is the directory owner's: only the directory's owner (or root)
// may create, link or rename an entry onto LatestName, so that in a
// shared (sticky or group-writable) directory nobody else can put a file
// where root's `xl restore DIR/latest` looks. A real entry of that name,
// made by the owner, hides the link; one owned by anybody else (from
// before this rule, or arriving by a transfer) is refused at lookup
// (EACCES, logged), never followed.
const LatestName = "latest"

// latestBit marks the inode numbers of latest links: the directory's inode
// number with the bit set, far above any the index allocates.
const latestBit = 1 << 62

// Images is what latest needs besides Namespace: which files are whole
// xl save images (committed, their stream parsed to the end), as
// xen/lineage.Maps records them.
type Images interface {
	Guest(ino uint64) (uuid, name string, err error)
}

// newestImage returns the directory's newest whole xl save image (by
// modification time, then creation order) among those owned by the
// directory's owner: another user's file in a shared directory never
// becomes what root restores. ok is false if there is none.
func (f *FS) newestImage(dir index.Inode, ents []index.Dirent) (name string, img index.Inode, ok bool) {
	xn := f.images
	if xn == nil {
		return "", img, false
	}
	for _, e := range ents {
		if e.Mode&syscall.S_IFMT != syscall.S_IFREG || index.IsStaging(e.Name) {
			continue
		}
		if _, _, err := xn.Guest(e.Ino); err != nil {
			continue
		}
		in, err := f.ns.Get(e.Ino)
		if err != nil || in.UID != dir.UID {
			continue
		}
		if !ok || in.Mtime > img.Mtime || (in.Mtime == img.Mtime && in.Ino > img.Ino) {
			name, img, ok = e.Name, in, true
		}
	}
	return name, img, ok
}

// mayTakeLatest refuses (EACCES) a caller other than root and the
// directory's owner an entry named LatestName in directory n.
func (n *Node) mayTakeLatest(ctx context.Context, name string) syscall.Errno {
	if name != LatestName {
		return 0
	}
	uid, _ := caller(ctx)
	if uid == 0 {
		return 0
	}
	dir, err := n.attr()
	if err != nil {
		return n.fsys.toErrno("latest", n, err)
	}
	if uid != dir.UID {
		return syscall.EACCES
	}
	return 0
}

// checkRealLatest refuses a real entry named LatestName in directory n
// that is not owned by the directory's owner (or root): it must not stand
// in for the directory's newest image.
func (f *FS) checkRealLatest(n *Node, in index.Inode) syscall.Errno {
	dir, err := n.attr()
	if err != nil {
		return f.toErrno("lookup latest", n, err)
	}
	if in.UID == dir.UID || in.UID == 0 {
		return 0
	}
	f.limit.Print(f.log, fmt.Sprintf("REFUSED /%s: an entry named %s owned by uid %d, not by the directory's owner (uid %d): not followed", n.Path(nil)+"/"+LatestName, LatestName, in.UID, dir.UID))
	return syscall.EACCES
}

// dirEntries returns directory ino and its entries.
func (f *FS) dirEntries(ino uint64) (index.Inode, []index.Dirent, error) {
	dir, err := f.ns.Get(ino)
	if err != nil {
		return dir, nil, err
	}
	ents, err := f.ns.ReadDir(ino)
	return dir, ents, err
}

// latestLink is a directory's latest link as a lookup found it: its
// target and attributes.
type latestLink struct {
	target string
	attr   index.Inode
}

// latest returns directory ino's latest link; ok is false when the
// directory has no image or a real entry named LatestName.
func (f *FS) latest(ino uint64) (latestLink, bool, error) {
	f.waitDir(ino) // a file closed there may be committing behind its writer
	dir, ents, err := f.dirEntries(ino)
	if err != nil {
		return latestLink{}, false, err
	}
	l, ok := f.linkOf(dir, ents)
	return l, ok, nil
}

func (f *FS) linkOf(dir index.Inode, ents []index.Dirent) (latestLink, bool) {
	for _, e := range ents {
		if e.Name == LatestName {
			return latestLink{}, false
		}
	}
	name, img, ok := f.newestImage(dir, ents)
	if !ok {
		return latestLink{}, false
	}
	return latestLink{name, index.Inode{
		Ino: dir.Ino | latestBit, Mode: syscall.S_IFLNK | 0o777, Nlink: 1,
		UID: img.UID, GID: img.GID, Size: int64(len(name)),
		Atime: img.Mtime, Mtime: img.Mtime, Ctime: img.Mtime, Target: name,
	}}, true
}

// latestNode is a directory's latest link. The kernel may keep its entry
// and attributes for the mount's timeouts, so readlink and getattr work
// the link out again each time: a path walk through it always gets the
// newest image.
type latestNode struct {
	gofs.Inode
	fsys *FS
	dir  uint64
}

var (
	_ gofs.NodeReadlinker = (*latestNode)(nil)
	_ gofs.NodeGetattrer  = (*latestNode)(nil)
)

// current returns the link now; ENOENT if it went since the lookup.
func (l *latestNode) current(op string) (latestLink, syscall.Errno) {
	cur, ok, err := l.fsys.latest(l.dir)
	if err != nil {
		return cur, l.fsys.toErrno(op, nil, err)
	}
	if !ok {
		return cur, syscall.ENOENT
	}
	return cur, 0
}

func (l *latestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	cur, errno := l.current("readlink latest")
	return []byte(cur.target), errno
}

func (l *latestNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	cur, errno := l.current("getattr latest")
	if errno == 0 {
		fillAttr(&cur.attr, &out.Attr)
	}
	return errno
}

// lookupLatest answers a lookup of LatestName that the index does not
// hold. The directory is marked first as one the kernel may hold "no
// latest" for (see hadNoLatest), so that an image arriving while the
// lookup runs still invalidates the answer.
func (n *Node) lookupLatest(ctx context.Context, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	n.fsys.noLatest.Store(n.ino(), struct{}{})
	l, ok, err := n.fsys.latest(n.ino())
	if err != nil {
		return nil, n.fsys.toErrno("lookup latest", n, err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	ch := n.NewInode(ctx, &latestNode{fsys: n.fsys, dir: n.ino()}, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: l.attr.Ino})
	fillAttr(&l.attr, &out.Attr)
	return ch, 0
}

// hadNoLatest reports whether a lookup of LatestName in directory dir
// may have left the kernel a negative entry (cached for NegativeTimeout),
// and forgets the mark. A positive entry needs no telling (readlink works
// the link out each time); a negative one must be dropped when an image
// arrives (closed, renamed in, published).
func (f *FS) hadNoLatest(dir uint64) bool {
	_, ok := f.noLatest.LoadAndDelete(dir)
	return ok
}

// latestArrived invalidates the kernel's negative entry for directory
// node p's latest link, if it may hold one. Asynchronous: the kernel may
// hold the directory's lock while the request that calls it runs.
func (f *FS) latestArrived(p *gofs.Inode) {
	if p != nil && f.hadNoLatest(p.StableAttr().Ino) {
		go p.NotifyEntry(LatestName)
	}
}

// LatestChanged is latestArrived for the daemon's own writers (xen
// receive publishing into directory dir).
func (f *FS) LatestChanged(dir uint64) {
	if n := f.node(dir); n != nil {
		f.latestArrived(n.EmbeddedInode())
	}
}
