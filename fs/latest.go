package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/index"
)

// LatestName is the symlink each directory holding xl save images shows:
// it names the directory's newest whole image, so that
// `xl restore /ckpt/GUEST/latest` restores the newest checkpoint of the
// guest whose checkpoints are kept in /ckpt/GUEST. It is not stored: it is
// worked out on every lookup, so it follows each published generation and
// each expiry at once. A real entry of that name hides it. readdir lists
// it only with Config.ListLatest (mount --list-latest).
const LatestName = "latest"

// latestBit marks the inode numbers of latest links: the directory's inode
// number with the bit set, far above any the index allocates.
const latestBit = 1 << 62

// xenNamespace is what latest needs besides Namespace: which files are
// whole xl save images (committed, their stream parsed to the end).
type xenNamespace interface {
	GetXen(ino uint64) (index.XenInfo, error)
}

// latestImage returns the directory's newest whole xl save image (by
// modification time, then creation order) among those owned by the
// directory's owner: another user's file in a shared directory never
// becomes what root restores. ok is false if there is none.
func (f *FS) latestImage(dir index.Inode, ents []index.Dirent) (name string, img index.Inode, ok bool) {
	xn, can := f.ns.(xenNamespace)
	if !can {
		return "", img, false
	}
	for _, e := range ents {
		if e.Mode&syscall.S_IFMT != syscall.S_IFREG || index.IsStaging(e.Name) {
			continue
		}
		if _, err := xn.GetXen(e.Ino); err != nil {
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

// latest returns the latest link of directory ino: its target and
// attributes. ok is false when the directory has no image or a real entry
// named LatestName.
func (f *FS) latest(ino uint64) (target string, attr index.Inode, ok bool, err error) {
	dir, err := f.ns.Get(ino)
	if err != nil {
		return "", attr, false, err
	}
	ents, err := f.ns.ReadDir(ino)
	if err != nil {
		return "", attr, false, err
	}
	return f.latestOf(dir, ents)
}

func (f *FS) latestOf(dir index.Inode, ents []index.Dirent) (string, index.Inode, bool, error) {
	for _, e := range ents {
		if e.Name == LatestName {
			return "", index.Inode{}, false, nil
		}
	}
	name, img, ok := f.latestImage(dir, ents)
	if !ok {
		return "", index.Inode{}, false, nil
	}
	return name, index.Inode{
		Ino: dir.Ino | latestBit, Mode: syscall.S_IFLNK | 0o777, Nlink: 1,
		UID: img.UID, GID: img.GID, Size: int64(len(name)),
		Atime: img.Mtime, Mtime: img.Mtime, Ctime: img.Mtime, Target: name,
	}, true, nil
}

// latestNode is a directory's latest link.
type latestNode struct {
	gofs.Inode
	fsys *FS
	dir  uint64
}

var (
	_ gofs.NodeReadlinker = (*latestNode)(nil)
	_ gofs.NodeGetattrer  = (*latestNode)(nil)
)

func (l *latestNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	target, _, ok, err := l.fsys.latest(l.dir)
	if err != nil {
		return nil, l.fsys.toErrno("readlink latest", nil, err)
	}
	if !ok {
		return nil, syscall.ENOENT // the last image went since the lookup
	}
	return []byte(target), 0
}

func (l *latestNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	_, in, ok, err := l.fsys.latest(l.dir)
	if err != nil {
		return l.fsys.toErrno("getattr latest", nil, err)
	}
	if !ok {
		return syscall.ENOENT
	}
	fillAttr(&in, &out.Attr)
	out.SetTimeout(0)
	return 0
}

// lookupLatest answers a lookup of LatestName that the index does not
// hold. The kernel is told not to cache it, so each path walk asks again.
func (n *Node) lookupLatest(ctx context.Context, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	_, in, ok, err := n.fsys.latest(n.ino())
	if err != nil {
		return nil, n.fsys.toErrno("lookup latest", n, err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	ch := n.NewInode(ctx, &latestNode{fsys: n.fsys, dir: n.ino()}, gofs.StableAttr{Mode: syscall.S_IFLNK, Ino: in.Ino})
	fillAttr(&in, &out.Attr)
	out.SetEntryTimeout(0)
	out.SetAttrTimeout(0)
	return ch, 0
}

// LatestChanged tells the kernel to forget what it cached of directory
// dir's latest link (a negative entry, mostly: a directory's first image).
// Asynchronous: the kernel may hold the directory's lock while the request
// that calls it runs. The daemon's own writers (xen receive) call it too.
func (f *FS) LatestChanged(dir uint64) {
	if p := f.node(dir); p != nil {
		go p.NotifyEntry(LatestName)
	}
}
