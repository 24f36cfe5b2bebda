// Package bucketfs serves a bucket's files (package fs/bucket) as a
// read-only FUSE filesystem, so that `xl restore` reads a checkpoint
// straight from the shared tier. Chunks come from a local cache directory
// when they are there (each re-hashed against its id when read back), else
// from the bucket; a read fetches the chunks of the next ReadAhead bytes
// with it, in one batch (the bucket turns neighbouring chunks of a pack
// into one ranged GET, several at once), so a sequential reader waits for
// the network about once per ReadAhead bytes.
//
// The tree is the bucket's listing when mounted (host/path, or path with
// one host); files pushed later appear on the next mount.
package bucketfs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/index/manifest"
)

// ReadAhead is how many bytes past a read are fetched with it.
var ReadAhead int64 = 8 << 20

// Source is where chunks and manifests come from (a *bucket.Bucket).
type Source interface {
	ManifestOf(full string) (*manifest.Manifest, error)
	Read(ids []chunkstore.ID, fn func(transfer.Chunk) error) error
}

// FS is a mounted bucket.
type FS struct {
	src   Source
	cache string // directory, or "" for memory only
	mem   *lru.Cache[chunkstore.ID, []byte]
	files []transfer.File
	strip string // host prefix removed from paths
	logf  func(string, ...any)

	mu       sync.Mutex
	inflight map[chunkstore.ID]chan struct{} // closed when fetched (or failed)
	toDisk   chan transfer.Chunk             // chunks for the disk cache
}

// memChunks is how many chunks the memory cache holds (64 MiB of pages):
// more than two read-ahead windows.
const memChunks = 16384

// New returns the filesystem of files (paths host/path as ListAll gives;
// strip, if not "", is removed from their front), caching chunks in
// cacheDir.
func New(src Source, files []transfer.File, strip, cacheDir string, logf func(string, ...any)) (*FS, error) {
	if cacheDir != "" {
		if err := os.MkdirAll(cacheDir, 0o700); err != nil {
			return nil, err
		}
	}
	mem, _ := lru.New[chunkstore.ID, []byte](memChunks)
	f := &FS{src: src, cache: cacheDir, mem: mem, files: files, strip: strip, logf: logf,
		inflight: map[chunkstore.ID]chan struct{}{}, toDisk: make(chan transfer.Chunk, memChunks)}
	if cacheDir != "" {
		go f.diskWriter()
	}
	return f, nil
}

// diskWriter writes fetched chunks into the cache directory, off the read
// path; when it falls behind, chunks are left out (they are fetched again
// if needed).
func (f *FS) diskWriter() {
	for c := range f.toDisk {
		p := f.cachePath(c.ID)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			continue
		}
		tmp := fmt.Sprintf("%s.%d", p, os.Getpid())
		if os.WriteFile(tmp, c.Data, 0o600) != nil {
			os.Remove(tmp) // a full cache disk costs speed, not the read
			continue
		}
		os.Rename(tmp, p)
	}
}

// Mount mounts f at mnt (read-only).
func (f *FS) Mount(mnt string, allowOther bool) (*fuse.Server, error) {
	sec := 10 * time.Second
	root := &root{dir{f: f}}
	return gofs.Mount(mnt, root, &gofs.Options{
		EntryTimeout: &sec, AttrTimeout: &sec,
		MountOptions: fuse.MountOptions{
			FsName: "ckptfs-bucket", Name: "ckptfs", MaxReadAhead: 1 << 20, AllowOther: allowOther,
			Options: []string{"ro", "default_permissions"}, DirectMount: os.Geteuid() == 0,
			DisableXAttrs: true, DisableSplice: true,
		},
	})
}

type dir struct {
	gofs.Inode
	f *FS
}

// root is the top directory; it builds the tree when mounted.
type root struct{ dir }

var _ = (gofs.NodeOnAdder)((*root)(nil))

// OnAdd builds the tree under the root.
func (d *root) OnAdd(ctx context.Context) {
	sort.Slice(d.f.files, func(i, j int) bool { return d.f.files[i].Path < d.f.files[j].Path })
	for _, fl := range d.f.files {
		p := strings.TrimPrefix(fl.Path, d.f.strip)
		parts := strings.Split(p, "/")
		parent := &d.Inode
		for _, name := range parts[:len(parts)-1] {
			ch := parent.GetChild(name)
			if ch == nil {
				ch = parent.NewPersistentInode(ctx, &dir{f: d.f}, gofs.StableAttr{Mode: syscall.S_IFDIR})
				parent.AddChild(name, ch, false)
			}
			parent = ch
		}
		fn := &file{f: d.f, info: fl}
		parent.AddChild(parts[len(parts)-1], parent.NewPersistentInode(ctx, fn, gofs.StableAttr{Mode: syscall.S_IFREG}), false)
	}
}

func (d *dir) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o555
	return 0
}

type file struct {
	gofs.Inode
	f    *FS
	info transfer.File

	mu   sync.Mutex
	m    *manifest.Manifest
	ends []int64 // ends[i]: file offset just past entry i
	// fetched is the file offset up to which chunks were fetched.
	fetched int64
}

var (
	_ = (gofs.NodeGetattrer)((*file)(nil))
	_ = (gofs.NodeOpener)((*file)(nil))
	_ = (gofs.NodeReader)((*file)(nil))
)

func (n *file) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | n.info.Mode&0o444
	out.Size = uint64(n.info.Size)
	out.Blocks = (out.Size + 511) / 512
	t := time.Unix(0, n.info.Mtime)
	out.SetTimes(nil, &t, &t)
	return 0
}

func (n *file) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		m, err := n.f.src.ManifestOf(n.info.Path)
		if err != nil {
			n.f.logf("open %s: %v", n.info.Path, err)
			return nil, 0, syscall.EIO
		}
		n.m = m
		n.ends = make([]int64, len(m.Entries))
		at := int64(0)
		for i, e := range m.Entries {
			at += int64(e.Len)
			n.ends[i] = at
		}
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *file) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil || off >= n.m.Size {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), n.m.Size)
	n.prefetch(off, end)
	out := dest[:0]
	i := sort.Search(len(n.ends), func(i int) bool { return n.ends[i] > off })
	for at := off; at < end; i++ {
		e := n.m.Entries[i]
		start := n.ends[i] - int64(e.Len)
		lo, hi := at-start, min(int64(e.Len), end-start)
		if e.Zero {
			out = append(out, make([]byte, hi-lo)...)
		} else {
			data, err := n.f.chunk(e.ID)
			if err != nil {
				n.f.logf("read %s at %d: %v", n.info.Path, off, err)
				return nil, syscall.EIO
			}
			if int64(e.Off)+hi > int64(len(data)) {
				return nil, syscall.EIO
			}
			out = append(out, data[int64(e.Off)+lo:int64(e.Off)+hi]...)
		}
		at = start + hi
	}
	return fuse.ReadResultData(out), 0
}

// prefetch starts fetching, in the background and in one batch, the
// chunks past what was fetched before, up to ReadAhead bytes past end, once
// the reader has come within half of that of the fetched end. The chunks of
// the read itself that are missing are fetched (or waited for) by chunk.
func (n *file) prefetch(off, end int64) {
	if end+ReadAhead/2 <= n.fetched {
		return
	}
	from, want := max(off, n.fetched), min(end+ReadAhead, n.m.Size)
	n.fetched = want
	var ids []chunkstore.ID
	seen := map[chunkstore.ID]bool{}
	for j := sort.Search(len(n.ends), func(j int) bool { return n.ends[j] > from }); j < len(n.m.Entries); j++ {
		e := n.m.Entries[j]
		if n.ends[j]-int64(e.Len) >= want {
			break
		}
		if !e.Zero && !seen[e.ID] && !n.f.cached(e.ID) {
			seen[e.ID] = true
			ids = append(ids, e.ID)
		}
	}
	if ids = n.f.claim(ids); len(ids) > 0 {
		go n.f.fetch(ids)
	}
}

// claim returns the ids nobody fetches yet, marking them in flight.
func (f *FS) claim(ids []chunkstore.ID) []chunkstore.ID {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := ids[:0]
	for _, id := range ids {
		if _, ok := f.inflight[id]; !ok {
			f.inflight[id] = make(chan struct{})
			out = append(out, id)
		}
	}
	return out
}

// fetch reads claimed ids from the bucket into the cache and releases
// their waiters (a failed fetch too: they fetch by themselves).
func (f *FS) fetch(ids []chunkstore.ID) error {
	err := f.src.Read(ids, func(c transfer.Chunk) error {
		f.keep(c)
		f.release(c.ID)
		return nil
	})
	if err != nil {
		f.logf("fetching %d chunks: %v", len(ids), err)
	}
	for _, id := range ids {
		f.release(id)
	}
	return err
}

func (f *FS) release(id chunkstore.ID) {
	f.mu.Lock()
	if ch, ok := f.inflight[id]; ok {
		close(ch)
		delete(f.inflight, id)
	}
	f.mu.Unlock()
}

func (f *FS) cachePath(id chunkstore.ID) string {
	h := hex.EncodeToString(id[:])
	return filepath.Join(f.cache, h[:2], h)
}

// cached reports whether id is cached; one in memory becomes the most
// recently used, so that it is still there when the read comes to it.
func (f *FS) cached(id chunkstore.ID) bool {
	if _, ok := f.mem.Get(id); ok {
		return true
	}
	if f.cache == "" {
		return false
	}
	_, err := os.Stat(f.cachePath(id))
	return err == nil
}

// keep caches a chunk in memory and hands it to the disk writer.
func (f *FS) keep(c transfer.Chunk) {
	f.mem.Add(c.ID, c.Data)
	if f.cache == "" {
		return
	}
	select {
	case f.toDisk <- c:
	default:
	}
}

// chunk returns a chunk: from memory, from a fetch in flight, from the disk
// cache (re-hashed), or from the bucket.
func (f *FS) chunk(id chunkstore.ID) ([]byte, error) {
	for range 2 {
		if data, ok := f.mem.Get(id); ok {
			return data, nil
		}
		f.mu.Lock()
		ch, ok := f.inflight[id]
		f.mu.Unlock()
		if !ok {
			break
		}
		<-ch
	}
	if f.cache != "" {
		if data, err := os.ReadFile(f.cachePath(id)); err == nil {
			if chunkstore.Sum(data) == id {
				f.mem.Add(id, data)
				return data, nil
			}
			os.Remove(f.cachePath(id)) // damaged: fetch again
		}
	}
	var out []byte
	err := f.src.Read([]chunkstore.ID{id}, func(c transfer.Chunk) error {
		out = c.Data
		f.keep(c)
		return nil
	})
	if err == nil && out == nil {
		err = errors.New("chunk not returned")
	}
	return out, err
}
