package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
	syscall.Chmod(dir, 0o1777)
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

// TestLatestTakeover: in a shared directory another user can neither put
// a file, a symlink or a hard link where `latest` is looked up, nor rename
// one onto it, before root's first image or after; a `latest` entry owned
// by someone other than the directory's owner (one made before this rule)
// fails the lookup instead of standing in for root's newest image.
func TestLatestTakeover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	tmp := worldDir(t, "ckptfs-latest-takeover")
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), "--allow-other")
	sticky, group := filepath.Join(d.mnt, "web1"), filepath.Join(d.mnt, "web2")
	for _, dir := range []string{sticky, group} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	syscall.Chmod(sticky, 0o1777)
	os.Chown(group, 0, 65534)
	os.Chmod(group, 0o775)
	as := func(args ...string) error {
		out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	asGroup := func(args ...string) error {
		out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--groups=65534"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	img := func(gen int) []byte {
		return xentest.Guest{Name: "web1", UUID: "1a7e5700-0000-4000-8000-0000000000aa", Pages: 256, VCPUs: 1, Seed: 5, Gen: gen, Dirty: 0.2}.Bytes()
	}
	// The attacker's own image, a real one, in both directories.
	for _, dir := range []string{sticky, group} {
		theirs := filepath.Join(dir, "theirs")
		if err := as("sh", "-c", "cat > "+theirs, ""); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(theirs, img(9), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(theirs, 65534, 65534)
	}
	attempts := func(dir string, run func(...string) error) {
		t.Helper()
		latest := filepath.Join(dir, "latest")
		for _, try := range [][]string{
			{"touch", latest},
			{"ln", "-s", "theirs", latest},
			{"ln", filepath.Join(dir, "theirs"), latest},
			{"mkdir", latest},
			{"mv", filepath.Join(dir, "theirs"), latest},
		} {
			if err := run(try...); err == nil {
				t.Fatalf("as uid 65534 in %s: %v succeeded", filepath.Base(dir), try)
			} else if !strings.Contains(err.Error(), "ermission denied") && !strings.Contains(err.Error(), "File exists") && !strings.Contains(err.Error(), "Operation not permitted") { // (the sticky bit refuses replacing root's entry)
				ls, _ := exec.Command("ls", "-la", dir).CombinedOutput()
				t.Fatalf("as uid 65534 in %s: %v: %v, want permission denied\n%s", filepath.Base(dir), try, err, ls)
				_ = ls
			}
		}
	}
	attempts(sticky, as) // before root's first image
	attempts(group, asGroup)
	for _, dir := range []string{sticky, group} {
		if err := os.WriteFile(filepath.Join(dir, "c0"), img(0), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	attempts(sticky, as) // after it
	attempts(group, asGroup)
	for _, dir := range []string{sticky, group} {
		if got, err := os.Readlink(filepath.Join(dir, "latest")); err != nil || got != "c0" {
			t.Fatalf("%s/latest = %q, %v; want c0", filepath.Base(dir), got, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "latest")); err != nil || !bytes.Equal(b, img(0)) {
			t.Fatalf("reading %s/latest: %v (not root's image)", filepath.Base(dir), err)
		}
	}
	// A latest entry owned by someone else, as a store from before the
	// rule may hold: refused at lookup, never followed.
	old := filepath.Join(d.mnt, "web3")
	os.Mkdir(old, 0o1777)
	latest := filepath.Join(old, "latest")
	if err := os.Symlink("theirs", latest); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "theirs"), img(9), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(old, "theirs"), 65534, 65534)
	if err := os.Lchown(latest, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "c0"), img(0), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the kernel's cached entry (1 s)
	if b, err := os.ReadFile(latest); err == nil {
		t.Fatalf("a latest owned by uid 65534 was followed: read %d bytes", len(b))
	} else if !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("reading a foreign latest: %v, want EACCES", err)
	}
}
