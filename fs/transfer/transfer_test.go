package transfer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/index/manifest"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// newLocal is an in-memory store with the default engine (page mode on).
func newLocal(t testing.TB) *Local {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := content.DefaultConfig()
	cfg.Pages = func(ino uint64) content.Pages { return lineage.NewImage(x, ino, true) }
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	t.Cleanup(data.Close)
	return &Local{Chunks: cs, Index: x, Data: data, Images: lineage.Of(x)}
}

// put writes a file into l as a writer through the mount would.
func put(t testing.TB, l *Local, p string, b []byte, mtime int64) {
	t.Helper()
	dir, name := path.Split(p)
	parent, err := l.mkdirAll(strings.TrimSuffix(dir, "/"), &manifest.Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.Index.Create(parent, name, index.Inode{Mode: syscall.S_IFREG | 0o640, UID: 7, GID: 8, Mtime: mtime})
	if err != nil {
		t.Fatal(err)
	}
	w := l.Data.NewWriter(in)
	defer w.Close()
	for off := 0; off < len(b); off += 1 << 20 {
		if err := w.WriteAt(b[off:min(len(b), off+1<<20)], int64(off), mtime); err != nil {
			t.Fatal(err)
		}
	}
	w.SetMtime(mtime)
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// read returns the committed content of p.
func read(t *testing.T, l *Local, p string) []byte {
	t.Helper()
	in, err := l.lookup(p)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, in.Size)
	var c content.Cursor
	if _, err := l.Data.ReadCommitted(&c, in.Ino, in.Ver, l.Data.NewEpoch(), in.Size, out, 0); err != nil {
		t.Fatal(err)
	}
	return out
}

func guest(gen int) []byte {
	return xentest.Guest{Name: "vm1", UUID: "00000000-0000-4000-8000-0000000000aa", Pages: 3000, VCPUs: 1, Seed: 9, Gen: gen, Dirty: 0.03}.Bytes()
}

// pipePeer connects a Remote to a server of l over an in-memory pipe.
func pipePeer(t *testing.T, l Peer) *Remote {
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(b, l); b.Close() }()
	r, err := Dial(a, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		if err := <-done; err != nil && !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

func TestCopy(t *testing.T) {
	for _, via := range []string{"local", "stream"} {
		t.Run(via, func(t *testing.T) {
			src, dstL := newLocal(t), newLocal(t)
			var dst Peer = dstL
			if via == "stream" {
				dst = pipePeer(t, dstL)
			}
			imgs := [][]byte{guest(0), guest(1), guest(2)}
			now := time.Now().UnixNano()
			put(t, src, "vm1/c0", imgs[0], now)
			put(t, src, "notes/a.txt", bytes.Repeat([]byte("some text "), 5000), now)
			put(t, src, "empty", nil, now)
			rep, err := Copy(src, dst, Options{})
			if err != nil || len(rep.Failed) > 0 {
				t.Fatalf("copy: %v %v", err, rep.Failed)
			}
			if rep.Files != 3 {
				t.Fatalf("copied %d files, want 3", rep.Files)
			}
			first := rep.Chunks
			// Later generations go as deltas and send only their new pages.
			put(t, src, "vm1/c1", imgs[1], now+1)
			put(t, src, "vm1/c2", imgs[2], now+2)
			rep, err = Copy(src, dst, Options{})
			if err != nil || len(rep.Failed) > 0 {
				t.Fatalf("copy: %v %v", err, rep.Failed)
			}
			if rep.Files != 2 || rep.Skipped != 3 || rep.Deltas != 2 {
				t.Fatalf("second copy: %+v", rep)
			}
			if rep.Chunks*4 > first {
				t.Errorf("two 3%% deltas sent %d chunks, the first image %d", rep.Chunks, first)
			}
			for i, img := range imgs {
				if got := read(t, dstL, path.Join("vm1", "c"+string(rune('0'+i)))); !bytes.Equal(got, img) {
					t.Fatalf("generation %d differs at the destination", i)
				}
			}
			if got := read(t, dstL, "notes/a.txt"); !bytes.Equal(got, read(t, src, "notes/a.txt")) {
				t.Fatal("notes/a.txt differs")
			}
			in, _ := dstL.lookup("vm1/c1")
			sin, _ := src.lookup("vm1/c1")
			if in.Mtime != sin.Mtime || in.Mode != sin.Mode || in.UID != 7 || in.GID != 8 {
				t.Errorf("attributes: got %+v, want those of %+v", in, sin)
			}
			if info, err := lineage.Of(dstL.Index).GetXen(in.Ino); err != nil || info.UUID == "" {
				t.Errorf("the copied image is not an image at the destination: %v %+v", err, info)
			}
			// Nothing left to send.
			rep, err = Copy(src, dst, Options{})
			if err != nil || rep.Files != 0 || rep.Chunks != 0 {
				t.Fatalf("third copy: %+v %v", rep, err)
			}
		})
	}
}

// A file of the same name that differs is left alone and reported.
func TestCopyKeepsDifferentFile(t *testing.T) {
	src, dst := newLocal(t), newLocal(t)
	put(t, src, "f", []byte("new content"), 1)
	put(t, dst, "f", []byte("old content"), 2)
	rep, err := Copy(src, dst, Options{})
	if err != nil || len(rep.Failed) != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	if string(read(t, dst, "f")) != "old content" {
		t.Fatal("the destination's file was replaced")
	}
}

// A base that differs at the destination makes the sender send whole.
func TestCopyBaseMismatch(t *testing.T) {
	src, dst := newLocal(t), newLocal(t)
	put(t, src, "vm1/c0", guest(0), 1)
	put(t, dst, "vm1/c0", guest(1), 1) // same name, size and mtime; other pages
	put(t, src, "vm1/c1", guest(2), 2)
	rep, err := Copy(src, pipePeer(t, dst), Options{})
	if err != nil || len(rep.Failed) > 0 || rep.Files != 1 || rep.Deltas != 0 {
		t.Fatalf("%+v %v", rep, err)
	}
	if !bytes.Equal(read(t, dst, "vm1/c1"), guest(2)) {
		t.Fatal("c1 differs")
	}
}

// A chunk that does not hash to its id is refused, and no file appears.
func TestApplyRefusesBadChunk(t *testing.T) {
	src, dst := newLocal(t), newLocal(t)
	put(t, src, "f", bytes.Repeat([]byte("abcdefgh"), 4000), 1)
	m, err := src.Manifest("f")
	if err != nil {
		t.Fatal(err)
	}
	ids := m.Chunks()
	i := 0
	err = dst.Apply(m, nil, ids, func() (Chunk, error) {
		c := Chunk{ID: ids[i], Data: []byte("not it")}
		i++
		return c, nil
	})
	if !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("apply of a bad chunk: %v", err)
	}
	if _, err := dst.lookup("f"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a file appeared: %v", err)
	}
	fs, _ := dst.List()
	if len(fs) != 0 {
		t.Fatalf("left behind: %v", fs)
	}
}

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"", "/a", "a/../b", "..", "../a", "a//b", "a/", index.StagingPrefix + "x", "d/" + index.StagingPrefix} {
		if CheckPath(p) == nil {
			t.Errorf("%q accepted", p)
		}
	}
	for _, p := range []string{"a", "a/b/c", "vm1/c0.save"} {
		if err := CheckPath(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
}

// FuzzParseApply: an apply request from a peer decodes or is refused,
// never more.
func FuzzParseApply(f *testing.F) {
	l := newLocal(f)
	put(f, l, "vm1/c0", guest(0), 1)
	m, err := l.Manifest("vm1/c0")
	if err != nil {
		f.Fatal(err)
	}
	req := func(base string, enc []byte, ids []chunkstore.ID) []byte {
		b := binary.AppendUvarint(nil, uint64(len(base)))
		b = append(b, base...)
		b = binary.AppendUvarint(b, uint64(len(ids)))
		return append(appendIDs(b, ids), enc...)
	}
	f.Add(req("", m.Encode(nil), m.Chunks()[:3]))
	f.Add(req("vm1/c0", m.Encode(m), nil))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		missing, _, got, err := parseApply(l, b)
		if err == nil && (got == nil || len(missing)*chunkstore.IDSize > len(b)) {
			t.Fatalf("accepted %d missing ids from %d bytes", len(missing), len(b))
		}
	})
}

// An image still being written is not listed, so not copied half-done.
func TestListSkipsImageBeingWritten(t *testing.T) {
	l := newLocal(t)
	put(t, l, "vm1/c0", guest(0), 1)
	parent, err := l.lookup("vm1")
	if err != nil {
		t.Fatal(err)
	}
	in, err := l.Index.Create(parent.Ino, "c1", index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	w := l.Data.NewWriter(in)
	defer w.Close()
	img := guest(1)
	for off := 0; off < len(img)/2; off += 1 << 20 { // half of it, no commit
		if err := w.WriteAt(img[off:off+1<<20], int64(off), 2); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Path != "vm1/c0" {
		t.Fatalf("listed %+v, want only vm1/c0", fs)
	}
}
