package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/index/manifest"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// local is an in-memory store holding files, as push's source.
func local(t *testing.T, files map[string][]byte) *transfer.Local {
	t.Helper()
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := content.DefaultConfig()
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	t.Cleanup(data.Close)
	l := &transfer.Local{Chunks: cs, Index: x, Data: data, Images: lineage.Of(x)}
	i := int64(0)
	for p, b := range files {
		dir, name := path.Split(p)
		parent := uint64(index.RootIno)
		if dir != "" {
			d, err := x.Lookup(index.RootIno, strings.TrimSuffix(dir, "/"))
			if errors.Is(err, index.ErrNotFound) {
				d, err = x.Create(index.RootIno, strings.TrimSuffix(dir, "/"), index.Inode{Mode: syscall.S_IFDIR | 0o755})
			}
			if err != nil {
				t.Fatal(err)
			}
			parent = d.Ino
		}
		i++
		mtime := time.Now().Add(time.Duration(i) * time.Minute).UnixNano()
		in, err := x.Create(parent, name, index.Inode{Mode: syscall.S_IFREG | 0o644, Mtime: mtime})
		if err != nil {
			t.Fatal(err)
		}
		w := data.NewWriter(in)
		if err := w.WriteAt(b, 0, mtime); err != nil {
			t.Fatal(err)
		}
		w.SetMtime(mtime)
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	return l
}

func content1(seed, n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "seed %d line %d with some words in it\n", seed, i)
	}
	return b.Bytes()[:n]
}

// TestBucketInMemory runs the bucket on MemObjects, no S3 server: two
// hosts push the same file (its chunks stored once), every object but
// the names is sealed, a file pulls back byte for byte, Remove drops a
// host's file, a tampered pack is refused by name, and gc deletes a pack
// only a grace period after marking it.
func TestBucketInMemory(t *testing.T) {
	now := time.Now()
	objs := &MemObjects{Clock: func() time.Time { return now }}
	keys := testKeys(t, 7)
	open := func(host string) *Bucket {
		b, err := OpenObjects(objs, "site", "mem://site", Options{Keys: keys, Host: host, Grace: time.Hour, Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := open("hostA"), open("hostB")
	shared, own := content1(1, 3<<20), content1(2, 1<<20)
	src := local(t, map[string][]byte{"vm/c0": shared, "vm/c1": own})
	if rep, err := transfer.Copy(src, a, transfer.Options{}); err != nil || rep.Files != 2 {
		t.Fatalf("push to hostA: %+v %v", rep, err)
	}
	packs := func() (n int) {
		for _, k := range objs.Keys() {
			if strings.HasPrefix(k, "site/packs/") || strings.HasPrefix(k, "site/index/") {
				n++
			}
		}
		return n
	}
	before := packs()
	rep, err := transfer.Copy(local(t, map[string][]byte{"vm/c0": shared}), b, transfer.Options{})
	if err != nil || rep.Files != 1 || rep.Chunks != 0 {
		t.Fatalf("push of the same content from hostB: %+v %v, want no chunk sent", rep, err)
	}
	if added := packs() - before; added != 0 {
		t.Fatalf("hostB's push added %d pack objects, want none (its chunks are there)", added)
	}
	if _, err := objs.Get(context.Background(), "site/files/hostB/vm/c0", 0, 0); err != nil {
		t.Fatalf("hostB's file: %v", err)
	}
	for _, k := range objs.Keys() {
		o, _ := objs.Get(context.Background(), k, 0, 0)
		if bytes.Contains(o, []byte("seed 1 line")) || bytes.Contains(o, []byte("hostA")) && !strings.Contains(k, "hostA") {
			t.Fatalf("object %s holds plain text", k)
		}
	}
	// Pull hostA's vm/c1 back.
	dst := local(t, nil)
	if rep, err := transfer.Copy(a, dst, transfer.Options{Select: func(f transfer.File) bool { return f.Path == "vm/c1" }}); err != nil || rep.Files != 1 {
		t.Fatalf("pull: %+v %v", rep, err)
	}
	m, err := dst.Manifest("vm/c1")
	if err != nil || m.Size != int64(len(own)) {
		t.Fatalf("pulled manifest: %+v %v", m, err)
	}
	got := readAll(t, dst, m)
	if !bytes.Equal(got, own) {
		t.Fatal("vm/c1 pulled back differs")
	}
	// Remove: only the version listed.
	files, _ := a.List()
	var c1 transfer.File
	for _, f := range files {
		if f.Path == "vm/c1" {
			c1 = f
		}
	}
	stale := c1
	stale.Mtime++
	if err := a.Remove(stale); !errors.Is(err, transfer.ErrChanged) {
		t.Fatalf("Remove of a stale listing: %v", err)
	}
	if err := a.Remove(c1); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(c1); !errors.Is(err, transfer.ErrNotFound) {
		t.Fatalf("Remove again: %v", err)
	}
	// gc: the pack only vm/c1 used is rewritten or marked now, deleted
	// only once the grace period has passed.
	g1, err := a.GC(GCOptions{Grace: time.Hour, Now: now})
	if err != nil || g1.Marked+g1.Rewritten == 0 || g1.Deleted != 0 {
		t.Fatalf("first gc: %+v %v", g1, err)
	}
	g2, err := a.GC(GCOptions{Grace: time.Hour, Now: now.Add(2 * time.Hour)})
	if err != nil || g2.Deleted == 0 {
		t.Fatalf("gc after the grace period: %+v %v", g2, err)
	}
	// What is left still reads, for both hosts.
	for _, h := range []*Bucket{open("hostA"), open("hostB")} {
		m, err := h.Manifest("vm/c0")
		if err != nil {
			t.Fatal(err)
		}
		d := local(t, nil)
		if rep, err := transfer.Copy(h, d, transfer.Options{}); err != nil || rep.Files != 1 {
			t.Fatalf("pull after gc: %+v %v", rep, err)
		}
		if !bytes.Equal(readAll(t, d, m), shared) {
			t.Fatal("vm/c0 differs after gc")
		}
	}
	// A tampered pack: refused, by name.
	for _, k := range objs.Keys() {
		if strings.HasPrefix(k, "site/packs/") {
			o, _ := objs.Get(context.Background(), k, 0, 0)
			o[len(o)/2] ^= 1
			objs.Put(context.Background(), k, o)
		}
	}
	rep, err = transfer.Copy(open("hostB"), local(t, nil), transfer.Options{})
	if err == nil && (len(rep.Failed) != 1 || !strings.Contains(rep.Failed[0], ErrTampered.Error()) || !strings.Contains(rep.Failed[0], "pack ")) {
		t.Fatalf("pull of a tampered pack: %+v, want it refused naming the pack", rep)
	}
	// An expiring policy: per host and guest directory.
	if g, err := a.GC(GCOptions{Policy: gc.Policy{KeepLast: 1, AllFiles: true}, Grace: time.Hour, Now: now.Add(3 * time.Hour)}); err != nil || len(g.Expired) != 0 {
		t.Fatalf("gc keeping 1 of hostA's 1 file: %+v %v", g, err)
	}
}

// readAll reads file m.Path of l whole.
func readAll(t *testing.T, l *transfer.Local, m *manifest.Manifest) []byte {
	t.Helper()
	in, err := l.Index.Lookup(index.RootIno, path.Dir(m.Path))
	if err == nil {
		in, err = l.Index.Lookup(in.Ino, path.Base(m.Path))
	}
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
