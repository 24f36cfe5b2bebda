package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/test/memimage"
)

// writeFile writes path and waits for its commit, as the next open of it
// does (a file closed behind its writer is committed after close(2)
// returns), so that a test may look into the store.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
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

// fatalIf returns a function that fails t on a non-nil error.
func fatalIf(t *testing.T) func(error) {
	return func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestNamespace(t *testing.T) {
	m := TestMount(t, "")
	d := m.Dir
	must := fatalIf(t)
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

// TestPosixAsProgramsExpect: what cp -a, rsync -aH, tar and careful
// programs rely on answers as on Linux filesystems.
func TestPosixAsProgramsExpect(t *testing.T) {
	m := TestMount(t, "")
	d := m.Dir
	must := fatalIf(t)
	// chmod 000 stays 000.
	p := filepath.Join(d, "locked")
	writeFile(t, p, []byte("secret"))
	must(os.Chmod(p, 0))
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0 {
		t.Fatalf("chmod 000: mode %v (%v)", st.Mode(), err)
	}
	// Names over 255 bytes.
	long := strings.Repeat("n", 256)
	for what, err := range map[string]error{
		"create":  os.WriteFile(filepath.Join(d, long), nil, 0o644),
		"mkdir":   os.Mkdir(filepath.Join(d, long), 0o755),
		"symlink": os.Symlink("x", filepath.Join(d, long)),
		"rename":  os.Rename(p, filepath.Join(d, long)),
		"link":    os.Link(p, filepath.Join(d, long)),
	} {
		if !errors.Is(err, syscall.ENAMETOOLONG) {
			t.Errorf("%s of a 256-byte name: %v, want ENAMETOOLONG", what, err)
		}
	}
	if _, err := os.Stat(filepath.Join(d, long)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("stat of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	ok := strings.Repeat("n", 255)
	writeFile(t, filepath.Join(d, ok), []byte("255"))
	mustEqualFile(t, filepath.Join(d, ok), []byte("255"))
	// RENAME_EXCHANGE, files and a directory across parents.
	must(os.Mkdir(filepath.Join(d, "a"), 0o755))
	must(os.Mkdir(filepath.Join(d, "a/sub"), 0o755))
	writeFile(t, filepath.Join(d, "x"), []byte("x"))
	writeFile(t, filepath.Join(d, "y"), []byte("y"))
	must(unix.Renameat2(unix.AT_FDCWD, filepath.Join(d, "x"), unix.AT_FDCWD, filepath.Join(d, "y"), unix.RENAME_EXCHANGE))
	mustEqualFile(t, filepath.Join(d, "x"), []byte("y"))
	mustEqualFile(t, filepath.Join(d, "y"), []byte("x"))
	must(unix.Renameat2(unix.AT_FDCWD, filepath.Join(d, "a/sub"), unix.AT_FDCWD, filepath.Join(d, "x"), unix.RENAME_EXCHANGE))
	if st, err := os.Stat(filepath.Join(d, "x")); err != nil || !st.IsDir() {
		t.Fatalf("exchanged directory: %v", err)
	}
	mustEqualFile(t, filepath.Join(d, "a/sub"), []byte("y"))
	if st, _ := os.Stat(filepath.Join(d, "a")); st.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("a's link count %d after its subdirectory left, want 2", st.Sys().(*syscall.Stat_t).Nlink)
	}
	// Hard links.
	must(os.Link(filepath.Join(d, "y"), filepath.Join(d, "a/y2")))
	st, _ := os.Stat(filepath.Join(d, "y"))
	if n := st.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("nlink %d after link, want 2", n)
	}
	f, err := os.OpenFile(filepath.Join(d, "a/y2"), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	f.Write([]byte("+"))
	must(f.Close())
	mustEqualFile(t, filepath.Join(d, "y"), []byte("x+"))
	must(os.Remove(filepath.Join(d, "y")))
	mustEqualFile(t, filepath.Join(d, "a/y2"), []byte("x+"))
	if err := os.Link(filepath.Join(d, "a"), filepath.Join(d, "a-link")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("link of a directory: %v, want EPERM", err)
	}
	// FIFOs, sockets and device nodes, as metadata.
	must(syscall.Mkfifo(filepath.Join(d, "fifo"), 0o640))
	must(syscall.Mknod(filepath.Join(d, "sock"), syscall.S_IFSOCK|0o600, 0))
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(d, "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		var st syscall.Stat_t
		must(syscall.Stat(filepath.Join(d, "null"), &st))
		if st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device node: mode %o rdev %d", st.Mode, st.Rdev)
		}
	}
	if st, err := os.Stat(filepath.Join(d, "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 || st.Mode().Perm() != 0o640 {
		t.Errorf("fifo: %v %v", st.Mode(), err)
	}
	// fsync and fdatasync of a directory work (a rename is made durable so).
	dir, err := os.Open(filepath.Join(d, "a"))
	must(err)
	must(dir.Sync())
	must(unix.Fdatasync(int(dir.Fd())))
	dir.Close()
}
