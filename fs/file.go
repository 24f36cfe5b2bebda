package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/fs/content"
)

// handle is an open file.
type handle struct {
	n        *Node
	writable bool
	mu       sync.Mutex // guards cur
	cur      content.Cursor
}

var (
	_ gofs.FileReader   = (*handle)(nil)
	_ gofs.FileWriter   = (*handle)(nil)
	_ gofs.FileFlusher  = (*handle)(nil)
	_ gofs.FileReleaser = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.n.endBehind()
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		k, ok, err := h.readCommitted(dest, off)
		if !ok {
			k, ok, err = h.readWriting(dest, off)
		}
		if err != nil {
			return nil, h.n.fsys.toErrno("read", h.n, err)
		}
		if ok {
			h.n.fsys.stats.ReadBytes.Add(int64(k))
			return fuse.ReadResultData(dest[:k]), 0
		}
	}
}

// readCommitted reads committed content; ok is false if the file has a
// writer, whose state then has the latest bytes.
func (h *handle) readCommitted(dest []byte, off int64) (int, bool, error) {
	n := h.n
	in, epoch, ok, err := n.committedInode()
	if !ok || err != nil {
		return 0, ok, err
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.w != nil || n.epoch != epoch {
		return 0, false, nil // changed meanwhile: the caller retries
	}
	k, err := n.fsys.data.ReadCommitted(&h.cur, in.Ino, in.Ver, epoch, in.Size, dest, off)
	return k, true, err
}

// readWriting reads through the writer; ok is false if it has gone.
func (h *handle) readWriting(dest []byte, off int64) (int, bool, error) {
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w == nil {
		return 0, false, nil
	}
	k, err := n.w.ReadAt(&h.cur, dest, off)
	return k, true, err
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.writable {
		return 0, syscall.EBADF
	}
	n := h.n
	b := n.behind()
	if b == nil && off == 0 {
		b = n.startBehind(h, off)
	}
	if b != nil {
		if b.write(h, data, off) {
			return uint32(len(data)), 0
		}
		n.endBehind() // out of sequence, or no room: synchronous from here
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.w.WriteAt(data, off, now()); err != nil {
		return 0, n.fsys.toErrno("write", n, err)
	}
	return uint32(len(data)), 0
}

// Flush runs at every close(2): the data written so far becomes durable.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.writable {
		return 0
	}
	if b := h.n.behind(); b != nil {
		if b.flush(h) {
			// The commit follows; latest waits for it. Drop a negative
			// entry now, so that a lookup right after close(2) asks.
			if _, p := h.n.Parent(); p != nil && h.n.fsys.hadNoLatest(p.StableAttr().Ino) {
				p.NotifyEntry(LatestName)
			}
			return 0
		}
		h.n.endBehind()
	}
	h.n.mu.Lock()
	errno := h.n.commitLocked("close")
	img := h.n.w != nil && h.n.w.CommittedImage()
	if img {
		h.n.fsys.stats.observeImage(now() - h.n.wStart)
	}
	h.n.mu.Unlock()
	if img {
		// Before close(2) returns, so that xl restore DIR/latest right
		// after xl save sees it. No lock of ours is held: a lookup in the
		// directory (which the kernel's invalidation waits for) may need
		// the node's.
		if _, p := h.n.Parent(); p != nil && h.n.fsys.hadNoLatest(p.StableAttr().Ino) {
			p.NotifyEntry(LatestName)
		}
	}
	return errno
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	defer h.n.fsys.handles.Add(-1) // once this release is handled (see waitReleased)
	h.mu.Lock()
	h.n.fsys.data.CloseCursor(&h.cur) // its spans read ahead
	h.mu.Unlock()
	return h.n.release(h)
}
