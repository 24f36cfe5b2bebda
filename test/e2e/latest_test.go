package e2e

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestLatest: each directory holding xl save images shows a symlink
// `latest` naming its newest whole image, current as soon as an image is
// closed, renamed in or expired; another user's image never becomes it; a
// real file of that name hides it.
func TestLatest(t *testing.T) {
	tmp := worldDir(t, "ckptfs-latest")
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"), "--allow-other", "-o", "list-latest")
	dir := filepath.Join(d.mnt, "web1")
	latest := filepath.Join(dir, "latest")
	if err := os.Mkdir(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o1777)
	want := func(target string) {
		t.Helper()
		got, err := os.Readlink(latest)
		if target == "" {
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("latest = %q, %v; want none", got, err)
			}
			return
		}
		if err != nil || got != target {
			t.Fatalf("latest = %q, %v; want %q", got, err, target)
		}
	}
	listed := func() bool {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() == "latest" {
				return e.Type() == fs.ModeSymlink
			}
		}
		return false
	}
	img := func(gen int) []byte {
		return xentest.Guest{Name: "web1", UUID: "1a7e5700-0000-4000-8000-000000000001", Pages: 1024, VCPUs: 1, Seed: 3, Gen: gen, Dirty: 0.1}.Bytes()
	}
	want("") // looked up (a negative entry the kernel caches) before any image
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not an image"), 0o644); err != nil {
		t.Fatal(err)
	}
	want("")
	if listed() {
		t.Fatal("latest listed in a directory without images")
	}
	for gen, name := range []string{"c0", "c1"} {
		if err := os.WriteFile(filepath.Join(dir, name), img(gen), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(dir, name), time.Time{}, time.Unix(1_700_000_000+int64(gen), 0))
		want(name) // at once: no stale entry of the kernel's in the way
		if b, err := os.ReadFile(latest); err != nil || !bytes.Equal(b, img(gen)) {
			t.Fatalf("reading through latest (%s): %v", name, err)
		}
	}
	if !listed() {
		t.Fatal("latest not listed as a symlink")
	}
	// An image written under a staging name and renamed in (how a writer
	// publishes atomically).
	tmpName := filepath.Join(d.mnt, "c2.part")
	os.WriteFile(tmpName, img(2), 0o600)
	if err := os.Rename(tmpName, filepath.Join(dir, "c2")); err != nil {
		t.Fatal(err)
	}
	want("c2")
	// Another user's newer image in the shared directory is not root's latest.
	os.Chmod(filepath.Join(dir, "c2"), 0o644)
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cp", filepath.Join(dir, "c2"), filepath.Join(dir, "theirs")).CombinedOutput()
	if err != nil {
		t.Fatalf("cp as nobody: %v %s", err, out)
	}
	want("c2")
	// Expired by gc through the daemon: latest follows.
	if out, code := run(t, "gc", "--keep-last", "1", store); code != 0 {
		t.Fatalf("gc: %d %s", code, out)
	}
	want("c2")
	if err := os.Remove(filepath.Join(dir, "c2")); err != nil {
		t.Fatal(err)
	}
	want("")
	os.WriteFile(filepath.Join(dir, "c3"), img(3), 0o600)
	want("c3")
	// It is the daemon's: it cannot be removed.
	if err := os.Remove(latest); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("rm latest: %v, want EPERM", err)
	}
	// A real file renamed to latest wins.
	os.WriteFile(filepath.Join(dir, "mine"), []byte("mine"), 0o644)
	if err := os.Rename(filepath.Join(dir, "mine"), latest); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(latest); err != nil || string(b) != "mine" {
		t.Fatalf("a real latest: %q %v", b, err)
	}
	if st, err := os.Lstat(latest); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("a real latest: %v %v", st, err)
	}
}
