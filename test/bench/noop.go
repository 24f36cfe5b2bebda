// Package bench measures ckptfs against baselines in the same run: a plain
// file on the same disk and a no-op FUSE filesystem (the transport ceiling).
package bench

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// noopRoot is a directory whose files accept every write and discard it,
// and read back as zeros of the size written: only the FUSE transport runs.
type noopRoot struct{ gofs.Inode }

type noopFile struct {
	gofs.Inode
	size int64
}

var (
	_ gofs.NodeCreater   = (*noopRoot)(nil)
	_ gofs.NodeOpener    = (*noopFile)(nil)
	_ gofs.NodeGetattrer = (*noopFile)(nil)
	_ gofs.NodeSetattrer = (*noopFile)(nil)
	_ gofs.NodeWriter    = (*noopFile)(nil)
	_ gofs.NodeReader    = (*noopFile)(nil)
)

func (r *noopRoot) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	f := &noopFile{}
	ch := r.NewPersistentInode(ctx, f, gofs.StableAttr{Mode: syscall.S_IFREG})
	r.AddChild(name, ch, true)
	out.Mode = syscall.S_IFREG | 0o644
	return ch, nil, 0, 0
}

func (f *noopFile) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, 0
}

func (f *noopFile) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o644
	out.Size = uint64(f.size)
	out.Blksize = 1 << 20
	return 0
}

func (f *noopFile) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		f.size = int64(sz)
	}
	return f.Getattr(ctx, fh, out)
}

func (f *noopFile) Write(ctx context.Context, fh gofs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if end := off + int64(len(data)); end > f.size {
		f.size = end
	}
	return uint32(len(data)), 0
}

func (f *noopFile) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n := min(int64(len(dest)), max(0, f.size-off))
	return fuse.ReadResultData(dest[:n]), 0
}
