// Package fs is the FUSE face of ckptfs (go-fuse's fs API). It translates
// kernel requests into index and content calls; errors become syscall.Errno
// here and nowhere else.
package fs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// Blksize is the st_blksize files report, so that cp and rsync use large I/O.
const Blksize = 1 << 20

// Namespace is what the FUSE layer needs of the index.
type Namespace interface {
	Get(ino uint64) (index.Inode, error)
	Lookup(parent uint64, name string) (index.Inode, error)
	ReadDir(ino uint64) ([]index.Dirent, error)
	Create(parent uint64, name string, in index.Inode) (index.Inode, error)
	Unlink(parent uint64, name string, now int64) (index.Inode, error)
	Rmdir(parent uint64, name string, now int64) error
	Rename(oldParent uint64, oldName string, newParent uint64, newName string, noReplace bool, now int64) (index.Inode, error)
	Update(ino uint64, fn func(*index.Inode) error) (index.Inode, error)
	Purge(ino uint64) error
	UnlinkIno(parent uint64, name string, ino uint64, now int64) (index.Inode, error)
	Link(parent uint64, name string, ino uint64, now int64) (index.Inode, error)
	Exchange(p1 uint64, n1 string, p2 uint64, n2 string, now int64) error
	Sync() error
	SyncPending() error
}

// NameMax is the longest name, in bytes, a directory entry may have
// (NAME_MAX, as statfs reports it).
const NameMax = 255

// FS is a mounted ckptfs.
type FS struct {
	ns         Namespace
	images     Images
	data       *content.Store
	log        *log.Logger
	readOnly   bool
	statfsOf   string // a path on the store's disk, for statfs
	listLatest bool
	mountFlags []string

	// nodes maps inode numbers to the Nodes go-fuse holds for the kernel,
	// weakly: an entry goes once go-fuse drops its Node.
	nodes sync.Map // uint64 -> weak.Pointer[Node]
	limit chunkstore.Limiter
	stats Stats
	// noLatest marks the directories whose latest link a lookup may
	// have answered "none" for (dir inode -> struct{}); see LatestChanged.
	noLatest sync.Map

	// Write-behind (behind.go).
	writeBehind bool
	spoolSeq    atomic.Uint64
	pend        sync.Mutex
	pendCond    *sync.Cond
	pendDirs    map[uint64]int // closed files committing behind, per directory
	pendAll     int
	behinds     map[*behind]struct{}
	handles     atomic.Int64         // file handles whose release has not been handled
	byIno       map[uint64]*behind   // the same, by inode
	turns       map[string][]*behind // per directory and guest UUID, the feeders in turn, the feeding one first (behind.go)
	feedBufs    chan []byte          // feedBuffers buffers (nil until first used)
	waiters     atomic.Int64         // callers waiting for commits: no feed yields
}

// Stats are the filesystem's counters since it was mounted.
type Stats struct {
	ReadBytes atomic.Int64 // bytes returned by reads of files
	Errors    atomic.Int64 // requests answered with EIO
	Corrupt   atomic.Int64 // of those, chunks that failed their check
	errsByOp  [len(ErrorOps)]atomic.Int64
	// Image ingest times (observeImage): per bucket of ImageBuckets, the
	// last past them all, and their sum.
	imgCounts [len(ImageBuckets) + 1]atomic.Int64
	imgNanos  atomic.Int64
}

// ImageBuckets are the upper bounds, in seconds, of the image ingest
// histogram (ckptfs_image_ingest_seconds): how long an xl save image took
// from its open for writing (or O_TRUNC) to its commit, write-behind
// included: the time until restore, push and latest may take it.
var ImageBuckets = [...]float64{0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600}

func (s *Stats) observeImage(nanos int64) {
	sec := float64(nanos) / 1e9
	i := 0
	for i < len(ImageBuckets) && sec > ImageBuckets[i] {
		i++
	}
	s.imgCounts[i].Add(1)
	s.imgNanos.Add(nanos)
}

// ImageIngest returns the image ingest histogram: counts per bucket of
// ImageBuckets (not cumulative; one more, past the last bound) and the
// sum of the times in seconds.
func (s *Stats) ImageIngest() (counts []uint64, sum float64) {
	counts = make([]uint64, len(s.imgCounts))
	for i := range s.imgCounts {
		counts[i] = uint64(s.imgCounts[i].Load())
	}
	return counts, float64(s.imgNanos.Load()) / 1e9
}

// ErrorOps are the operations whose EIO answers Stats counts one by one
// (ErrorsByOp; the metric ckptfs_errors_total's op label): the FUSE
// requests, and the work behind them (write-behind, purge of an unlinked
// file, the latest link). An op not listed counts as "other".
var ErrorOps = [...]string{"close", "create", "fsync", "getattr", "latest", "link", "lookup", "open", "purge", "read", "readdir",
	"readlink", "release", "rename", "rmdir", "setattr", "truncate", "unlink", "write", "write-behind", "other"}

// countError counts an EIO answer of op; an op's first word names it
// ("lookup latest" is a lookup).
func (s *Stats) countError(op string) {
	s.Errors.Add(1)
	op, _, _ = strings.Cut(op, " ")
	i := len(ErrorOps) - 1
	for k, o := range ErrorOps {
		if o == op {
			i = k
			break
		}
	}
	s.errsByOp[i].Add(1)
}

// ErrorsByOp returns the EIO answers so far of every op of ErrorOps.
func (s *Stats) ErrorsByOp() map[string]int64 {
	m := make(map[string]int64, len(ErrorOps))
	for i, op := range ErrorOps {
		m[op] = s.errsByOp[i].Load()
	}
	return m
}

// Counters returns the filesystem's counters.
func (f *FS) Counters() *Stats { return &f.stats }

// Config configures New.
type Config struct {
	ReadOnly bool
	// Logger receives warnings and errors (corrupt chunks, failed commits).
	Logger *log.Logger
	// StoreDir is the store's directory; statfs reports its disk.
	StoreDir string
	// ListLatest lists each directory's latest link in readdir; without
	// it the link is reached by name only (as ZFS's .zfs by default), so
	// that globs, scripts and mirrors see the real checkpoints only.
	ListLatest bool
	// MountFlags are the mount's flags as mount(8) spells them: nosuid,
	// suid, nodev, dev, noexec, exec. A mount is nosuid and nodev unless
	// they say suid or dev.
	MountFlags []string
	// SyncClose turns write-behind off: close(2) returns once the file is
	// committed. Without it a file written from offset 0 in sequence is
	// spooled and stored behind its writer, so that close(2) does not wait
	// for the content engine (behind.go); that needs StoreDir.
	SyncClose bool
	// Images names the xl save images for latest (nil: the lineages kept
	// in ns, if ns is an *index.Index).
	Images Images
}

// New returns the filesystem over ns and data.
func New(ns Namespace, data *content.Store, c Config) *FS {
	l := c.Logger
	if l == nil {
		l = log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	}
	f := &FS{ns: ns, data: data, log: l, readOnly: c.ReadOnly, statfsOf: c.StoreDir, listLatest: c.ListLatest, mountFlags: c.MountFlags,
		writeBehind: !c.SyncClose, pendDirs: map[uint64]int{}, behinds: map[*behind]struct{}{}, byIno: map[uint64]*behind{}, turns: map[string][]*behind{}}
	f.images = c.Images
	if x, ok := ns.(*index.Index); ok && f.images == nil {
		f.images = lineage.Of(x)
	}
	f.pendCond = sync.NewCond(&f.pend)
	f.feedBufs = make(chan []byte, feedBuffers)
	for range feedBuffers {
		f.feedBufs <- nil
	}
	return f
}

func (f *FS) fsName() string {
	if f.statfsOf != "" {
		return f.statfsOf
	}
	return "ckptfs"
}

// Root returns the root node, to pass to go-fuse's fs.Mount.
func (f *FS) Root() gofs.InodeEmbedder {
	n := &Node{fsys: f}
	f.remember(index.RootIno, n, true)
	return n
}

// remember records n as the Node of ino, when it is the one go-fuse keeps:
// an operation's receiver is (live). The Node a lookup just made may not be:
// go-fuse drops it for one it already holds under the same inode number
// (two lookups at once, or a hard link), so it only fills a gap until an
// operation on the node records the one kept. gc's and a prune's removals
// notify the kernel through it; a dropped Node has no children and no
// kernel node id, and the kernel would go on showing a removed file.
func (f *FS) remember(ino uint64, n *Node, live bool) {
	if p, ok := f.nodes.Load(ino); ok {
		if cur := p.(weak.Pointer[Node]).Value(); cur == n || (!live && cur != nil) {
			return
		}
	}
	f.nodes.Store(ino, weak.Make(n))
}

// node returns the Node of ino that the kernel knows, or nil.
func (f *FS) node(ino uint64) *Node {
	p, ok := f.nodes.Load(ino)
	if !ok {
		return nil
	}
	n := p.(weak.Pointer[Node]).Value()
	if n == nil {
		f.nodes.CompareAndDelete(ino, p)
	}
	return n
}

// Remove removes the name parent/name if it still names file ino, through
// the store's namespace: by directory inode and entry, never through a
// path that the kernel resolves (so a directory swapped for a symlink
// cannot send it elsewhere). The kernel's caches learn of it; the file is
// purged when its last name goes and no handle has it open. gc removes
// expired files with it.
func (f *FS) Remove(parent uint64, name string, ino uint64) error {
	if f.readOnly {
		return syscall.EROFS
	}
	in, err := f.ns.UnlinkIno(parent, name, ino, now())
	if err != nil {
		return err
	}
	var ch *gofs.Inode
	p := f.node(parent)
	if p != nil {
		ch = p.GetChild(name)
		if ch != nil && ch.StableAttr().Ino != ino {
			ch = nil
		}
	}
	if errno := f.forget(ch, in); errno != 0 {
		return errno
	}
	if p != nil {
		if ch != nil {
			p.RmChild(name)
			p.NotifyDelete(name, ch)
		} else {
			p.NotifyEntry(name)
		}
	}
	return nil
}

// MountOptions returns the options ckptfs mounts with.
func (f *FS) MountOptions(allowOther, debug bool) *gofs.Options {
	sec := time.Second
	o := &gofs.Options{
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NegativeTimeout: &sec,
		RootStableAttr:  &gofs.StableAttr{Ino: index.RootIno, Mode: syscall.S_IFDIR},
		// A file chmod-ed to 000 stays 000 (go-fuse would show 0644).
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			// The store directory, so that a command given a path in the
			// mount finds the daemon (its control socket is in the store).
			FsName:       f.fsName(),
			Name:         "ckptfs",
			MaxWrite:     1 << 20,
			MaxReadAhead: 1 << 20,
			AllowOther:   allowOther,
			// The kernel checks permission bits, so that --allow-other does
			// not open 0600 files to other users.
			Options:       []string{"default_permissions"},
			DirectMount:   os.Geteuid() == 0,
			DisableXAttrs: true,
			// Read results are bytes in memory: writev them; splicing them
			// through a pipe copies once more and fails (logging) past the
			// pipe size, which 1 MiB reads exceed.
			DisableSplice: true,
			Debug:         debug,
		},
	}
	// go-fuse turns these into mount(2) flags (a direct mount starts
	// from nosuid,nodev) or passes them to fusermount3.
	o.MountOptions.Options = append(o.MountOptions.Options, "nosuid", "nodev")
	o.MountOptions.Options = append(o.MountOptions.Options, f.mountFlags...)
	if f.readOnly {
		o.MountOptions.Options = append(o.MountOptions.Options, "ro")
		o.MountOptions.DirectMountFlags = syscall.MS_RDONLY | syscall.MS_NOSUID | syscall.MS_NODEV
	}
	return o
}

// toErrno maps an error from inside to the errno the kernel gets. Data
// errors are logged with what names them (file, offset, chunk).
func (f *FS) toErrno(op string, n *Node, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, index.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, index.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, index.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, index.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, index.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, index.ErrInval):
		return syscall.EINVAL
	case errors.Is(err, index.ErrPerm):
		return syscall.EPERM
	case errors.Is(err, index.ErrTooManyLinks):
		return syscall.EMLINK
	case errors.Is(err, index.ErrChanged):
		return syscall.ESTALE
	}
	path := "?"
	if n != nil {
		path = "/" + n.Path(nil)
	}
	var errno syscall.Errno
	if !errors.Is(err, chunkstore.ErrCorrupt) && !errors.Is(err, chunkstore.ErrNotFound) && errors.As(err, &errno) {
		return errno
	}
	f.limit.Print(f.log, fmt.Sprintf("ERROR %s %s: %s", op, path, chunkstore.OneLine(err.Error())))
	f.stats.countError(op)
	if errors.Is(err, chunkstore.ErrCorrupt) {
		f.stats.Corrupt.Add(1)
	}
	return syscall.EIO
}

func now() int64 { return time.Now().UnixNano() }

func caller(ctx context.Context) (uint32, uint32) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, c.Gid
	}
	return uint32(os.Getuid()), uint32(os.Getgid())
}

func fillAttr(in *index.Inode, out *fuse.Attr) {
	out.Ino = in.Ino
	out.Mode = in.Mode
	out.Nlink = in.Nlink
	out.Owner = fuse.Owner{Uid: in.UID, Gid: in.GID}
	out.Size = uint64(in.Size)
	out.Blocks = (uint64(in.Size) + 511) / 512
	out.Blksize = Blksize
	out.Rdev = in.Rdev
	set := func(ns int64, s *uint64, n *uint32) { *s, *n = uint64(ns/1e9), uint32(ns%1e9) }
	set(in.Atime, &out.Atime, &out.Atimensec)
	set(in.Mtime, &out.Mtime, &out.Mtimensec)
	set(in.Ctime, &out.Ctime, &out.Ctimensec)
}
