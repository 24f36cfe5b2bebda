package fs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/test/memimage"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustEqualFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: read back %d bytes, want %d; first difference at %d", path, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestFileSizes(t *testing.T) {
	m := TestMount(t, "")
	sizes := []int{0, 1, 4095, 4096, 4097, 1<<20 - 1, 1 << 20, 1<<20 + 1, 64<<20 + 3}
	for _, kind := range []string{"random", "zero"} {
		for _, n := range sizes {
			data := make([]byte, n)
			if kind == "random" {
				data = memimage.Random(n, uint64(n))
			}
			p := filepath.Join(m.Dir, fmt.Sprintf("%s-%d", kind, n))
			writeFile(t, p, data)
			mustEqualFile(t, p, data)
			st, err := os.Stat(p)
			if err != nil || st.Size() != int64(n) {
				t.Fatalf("%s: stat %v size %d", p, err, st.Size())
			}
			if st.Sys().(*syscall.Stat_t).Blksize != Blksize {
				t.Fatalf("st_blksize %d, want %d", st.Sys().(*syscall.Stat_t).Blksize, Blksize)
			}
		}
	}
	// Reads at odd offsets and sizes.
	data := memimage.Random(64<<20+3, 64<<20+3)
	f, err := os.Open(filepath.Join(m.Dir, "random-67108867"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, off := range []int64{0, 1, 4095, 1 << 20, 33<<20 + 7, 64<<20 - 5} {
		buf := make([]byte, 100_003)
		k, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:k], data[off:min(int64(len(data)), off+100_003)]) {
			t.Fatalf("ReadAt %d differs", off)
		}
	}
}

func TestDedupSameContentTwice(t *testing.T) {
	m := TestMount(t, "")
	data := memimage.Random(64<<20, 42)
	writeFile(t, filepath.Join(m.Dir, "a"), data)
	before := storedBytes(t, m.Store)
	writeFile(t, filepath.Join(m.Dir, "b"), data)
	after := storedBytes(t, m.Store)
	if growth := float64(after-before) / float64(before); growth >= 0.01 {
		t.Fatalf("second copy grew stored bytes by %.2f%% (%d -> %d), want < 1%%", growth*100, before, after)
	}
	mustEqualFile(t, filepath.Join(m.Dir, "b"), data)
}

func storedBytes(t *testing.T, s *chunkstore.Store) int64 {
	var n int64
	if err := s.Walk(func(i chunkstore.Info) error { n += int64(i.Stored); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestConcurrentWriters(t *testing.T) {
	m := TestMount(t, "")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := memimage.Random(3<<20+i*1000, uint64(i))
			p := filepath.Join(m.Dir, fmt.Sprint("w", i))
			if err := os.WriteFile(p, data, 0o600); err != nil {
				errs <- err
				return
			}
			got, err := os.ReadFile(p)
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("%s differs", p)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNamespace(t *testing.T) {
	m := TestMount(t, "")
	d := m.Dir
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "a/b/c"), 0o755))
	writeFile(t, filepath.Join(d, "a/f1"), []byte("one"))
	writeFile(t, filepath.Join(d, "a/f2"), []byte("two"))
	must(os.Symlink("f1", filepath.Join(d, "a/link")))
	if tgt, err := os.Readlink(filepath.Join(d, "a/link")); err != nil || tgt != "f1" {
		t.Fatalf("readlink %q %v", tgt, err)
	}
	mustEqualFile(t, filepath.Join(d, "a/link"), []byte("one"))

	ents, err := os.ReadDir(filepath.Join(d, "a"))
	must(err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[b f1 f2 link]" {
		t.Fatalf("readdir: %v", names)
	}
	// rename over an existing file
	must(os.Rename(filepath.Join(d, "a/f1"), filepath.Join(d, "a/f2")))
	mustEqualFile(t, filepath.Join(d, "a/f2"), []byte("one"))
	if _, err := os.Stat(filepath.Join(d, "a/f1")); !os.IsNotExist(err) {
		t.Fatalf("f1 still there: %v", err)
	}
	// rename a directory across parents
	must(os.Rename(filepath.Join(d, "a/b"), filepath.Join(d, "b2")))
	if st, err := os.Stat(filepath.Join(d, "b2/c")); err != nil || !st.IsDir() {
		t.Fatalf("b2/c: %v", err)
	}
	// rmdir of a non-empty directory fails, of an empty one works
	if err := os.Remove(filepath.Join(d, "b2")); err == nil {
		t.Fatal("rmdir of non-empty directory succeeded")
	}
	must(os.Remove(filepath.Join(d, "b2/c")))
	must(os.Remove(filepath.Join(d, "b2")))
	// chmod, utimens
	p := filepath.Join(d, "a/f2")
	must(os.Chmod(p, 0o600))
	mt := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	must(os.Chtimes(p, mt, mt))
	st, err := os.Stat(p)
	must(err)
	if st.Mode().Perm() != 0o600 || !st.ModTime().Equal(mt) {
		t.Fatalf("mode %v mtime %v", st.Mode(), st.ModTime())
	}
	// unlink
	must(os.Remove(p))
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("unlinked file still there: %v", err)
	}
	if err := os.Mkdir(filepath.Join(d, "a"), 0o755); !os.IsExist(err) {
		t.Fatalf("mkdir of existing: %v", err)
	}
}

func TestTruncateOverwriteSparse(t *testing.T) {
	m := TestMount(t, "")
	p := filepath.Join(m.Dir, "f")
	data := memimage.Random(3<<20, 5)
	writeFile(t, p, data)

	// overwrite in the middle of a committed file
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := bytes.Repeat([]byte("xyz"), 10000)
	if _, err := f.WriteAt(patch, 1<<20+17); err != nil {
		t.Fatal(err)
	}
	copy(data[1<<20+17:], patch)
	f.Close()
	mustEqualFile(t, p, data)

	// shrink, grow
	if err := os.Truncate(p, 1000); err != nil {
		t.Fatal(err)
	}
	data = data[:1000]
	mustEqualFile(t, p, data)
	if err := os.Truncate(p, 50_000); err != nil {
		t.Fatal(err)
	}
	data = append(data, make([]byte, 49_000)...)
	mustEqualFile(t, p, data)

	// sparse writes
	s := filepath.Join(m.Dir, "sparse")
	f, err = os.Create(s)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 10<<20+5)
	for _, off := range []int64{10 << 20, 5, 3 << 20, 1 << 20} {
		if _, err := f.WriteAt([]byte("hello"), off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], "hello")
	}
	f.Close()
	mustEqualFile(t, s, want)
}

func TestRemount(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	data := memimage.Image{Seed: 9, Pages: 4096, Mix: memimage.DefaultMix}.Bytes()
	{
		m := TestMount(t, store)
		if err := os.MkdirAll(filepath.Join(m.Dir, "dom1"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(m.Dir, "dom1/c1"), data)
		if err := m.Unmount(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := MountStore(store, filepath.Join(t.TempDir(), "mnt"), MountConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	mustEqualFile(t, filepath.Join(m.Dir, "dom1/c1"), data)
}

// TestUnlinkWhileOpen: an open file stays readable after unlink and is
// purged at last close.
func TestUnlinkWhileOpen(t *testing.T) {
	m := TestMount(t, "")
	p := filepath.Join(m.Dir, "f")
	data := memimage.Random(1<<20, 3)
	writeFile(t, p, data)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after unlink: %v", err)
	}
	f.Close()
}
