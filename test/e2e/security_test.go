package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// smallImage is a tiny xl save image of guest uuid.
func smallImage(uuid string, gen int) []byte {
	return xentest.Guest{Name: "g", UUID: uuid, Pages: 32, VCPUs: 1, Seed: 3, Gen: gen, Dirty: 0.5}.Bytes()
}

// writeAged writes data at p with mtime base+i minutes.
func writeAged(t *testing.T, p string, data []byte, i int) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2026, 11, 1, 0, i, 0, 0, time.UTC)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// TestGCSymlinkSwap: while gc removes expired images of a directory, its
// owner swaps the directory for a symlink to a directory outside the mount
// holding files of the same names, again and again. gc removes by inode
// and directory entry in the store's namespace, so every file outside
// stays, and the expired images go wherever their directory was moved.
func TestGCSymlinkSwap(t *testing.T) {
	tmp := t.TempDir()
	store, mnt, outside := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), filepath.Join(tmp, "etc")
	mount(t, store, mnt)
	u := filepath.Join(mnt, "u")
	d := filepath.Join(u, "d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(outside, 0o755)
	const n = 300
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("img%03d", i)
		writeAged(t, filepath.Join(d, name), smallImage("6c9d3a1e-0000-4000-8000-0000000swap1", i%4), i)
		if err := os.WriteFile(filepath.Join(outside, name), []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	swaps := 0
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if os.Rename(d, d+".old") != nil {
				continue
			}
			os.Symlink(outside, d)
			time.Sleep(time.Millisecond)
			os.Remove(d)
			os.Rename(d+".old", d)
			swaps++
			time.Sleep(time.Millisecond)
		}
	}()
	out, code := run(t, "gc", "--keep-last", "1", store)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps during gc", swaps)
	if got := len(names(t, outside)); got != n {
		t.Fatalf("gc deleted %d files outside the mount", n-got)
	}
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	left := names(t, d)
	if len(left) != 1 || left[0] != fmt.Sprintf("img%03d", n-1) {
		t.Fatalf("after gc --keep-last 1 the directory holds %d files (%v...), want the newest only", len(left), left[:min(3, len(left))])
	}
}

// TestRetentionOwners: retention judges each owner's images of a guest in
// a directory on their own, and expires only xl save images unless asked.
// Another user's images with root's guest UUID (newer than root's) must
// not expire root's images, nor do root's expire theirs; ordinary files
// stay unless --expire-all-files.
func TestRetentionOwners(t *testing.T) {
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	mount(t, store, mnt)
	const guest = "6c9d3a1e-0000-4000-8000-00000000own1"
	root, user, plain := filepath.Join(mnt, "root"), filepath.Join(mnt, "user"), filepath.Join(mnt, "notes")
	for _, dir := range []string{root, user, plain} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		writeAged(t, filepath.Join(root, fmt.Sprint("c", i)), smallImage(guest, i), i)
	}
	os.Chown(user, 65534, 65534)
	for i := 0; i < 2; i++ {
		p := filepath.Join(user, fmt.Sprint("copy", i))
		writeAged(t, p, smallImage(guest, i), 10+i)
		if err := os.Lchown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		writeAged(t, filepath.Join(plain, fmt.Sprint("note", i)), []byte(fmt.Sprint("note ", i)), i)
	}
	out, code := run(t, "gc", "--keep-last", "2", store)
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	if got := strings.Join(names(t, root), " "); got != "c1 c2" {
		t.Errorf("root's images after --keep-last 2: %s, want c1 c2\n%s", got, out)
	}
	if got := strings.Join(names(t, user), " "); got != "copy0 copy1" {
		t.Errorf("user's images after --keep-last 2: %s, want both\n%s", got, out)
	}
	if got := len(names(t, plain)); got != 4 {
		t.Errorf("gc expired %d ordinary files without --expire-all-files\n%s", 4-got, out)
	}
	out, code = run(t, "gc", "--keep-last", "1", "--expire-all-files", store)
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	if got := strings.Join(names(t, plain), " "); got != "note3" {
		t.Errorf("ordinary files after --keep-last 1 --expire-all-files: %s, want note3\n%s", got, out)
	}
	if got := strings.Join(names(t, user), " "); got != "copy1" {
		t.Errorf("user's images after --keep-last 1: %s, want copy1\n%s", got, out)
	}
	if got := strings.Join(names(t, root), " "); got != "c2" {
		t.Errorf("root's images after --keep-last 1: %s, want c2\n%s", got, out)
	}
}

// asNobody runs the ckptfs binary as uid 65534.
func asNobody(t *testing.T, args ...string) (string, int) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv is needed (make deps installs util-linux)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
	cmd.Env = append(os.Environ(), "HOME=/")
	b, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(b), code
}

// TestControlSocketPeers: the control socket is 0600 from the moment it
// has its name, and the daemon checks who connects (SO_PEERCRED): another
// user is told plainly that they may not control the store (exit 9), both
// when the kernel refuses the connection and when the daemon does (the
// socket opened to all, as it was for a moment before), and gc does not run.
func TestControlSocketPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	base := worldDir(t, "ckptfs-peer")
	store, mnt := filepath.Join(base, "store"), filepath.Join(base, "mnt")
	os.Mkdir(store, 0o755)
	mount(t, store, mnt)
	sock := filepath.Join(store, "ckptfs.sock")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(store, ".ckptfs-ctl-*")); len(left) > 0 {
		t.Errorf("socket staging left behind: %v", left)
	}
	dir := filepath.Join(mnt, "g")
	os.Mkdir(dir, 0o755)
	for i := 0; i < 3; i++ {
		writeAged(t, filepath.Join(dir, fmt.Sprint("c", i)), smallImage("6c9d3a1e-0000-4000-8000-0000000peer1", i), i)
	}
	for _, open := range []bool{false, true} {
		if open {
			os.Chmod(sock, 0o666) // what another user could reach before
		}
		out, code := asNobody(t, "gc", "--keep-last", "1", store)
		if code != 9 || !strings.Contains(out, "uid 65534 may not control this store") || strings.Contains(out, "goroutine") {
			t.Errorf("socket open=%v: gc as another user: exit %d, want 9 and a plain refusal:\n%s", open, code, out)
		}
		if got := len(names(t, dir)); got != 3 {
			t.Fatalf("socket open=%v: another user's gc removed %d images", open, 3-got)
		}
	}
	if out, code := run(t, "stats", store); code != 0 {
		t.Fatalf("stats as root: exit %d\n%s", code, out)
	}
}
