package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/test/memimage"
)

func makeSource(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "dom1"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "empty"), 0o700))
	img := memimage.Image{Seed: 11, Pages: 8192, Mix: memimage.DefaultMix}
	must(os.WriteFile(filepath.Join(dir, "dom1/c1"), img.Bytes(), 0o600))
	img.Gen, img.Dirty = 1, 0.05
	must(os.WriteFile(filepath.Join(dir, "dom1/c2"), img.Bytes(), 0o644))
	for _, n := range []int{0, 1, 4095, 4097, 1<<20 + 1} {
		must(os.WriteFile(filepath.Join(dir, fmt.Sprint("f", n)), memimage.Random(n, uint64(n)), 0o644))
	}
	must(os.Symlink("dom1/c2", filepath.Join(dir, "latest")))
	// What cp -a, rsync -aH and tar of ordinary trees carry: hard links,
	// FIFOs, device nodes, sockets, a file nobody may read.
	must(os.Link(filepath.Join(dir, "dom1/c1"), filepath.Join(dir, "dom1/c1.hard")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o640))
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(syscall.Mknod(filepath.Join(dir, "sock"), syscall.S_IFSOCK|0o755, 0))
	}
	must(os.WriteFile(filepath.Join(dir, "locked"), []byte("secret"), 0o600))
	must(os.Chmod(filepath.Join(dir, "locked"), 0))
	old := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "f1"), old, old))
}

func TestCpAndRsync(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	makeSource(t, src)
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))

	cmd := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	// into the mount
	cmd("cp", "-a", src, filepath.Join(d.mnt, "cp"))
	sameTree(t, src, filepath.Join(d.mnt, "cp"))
	cmd("rsync", "-aH", src+"/", filepath.Join(d.mnt, "rs")+"/")
	sameTree(t, src, filepath.Join(d.mnt, "rs"))
	cmd("mkdir", filepath.Join(d.mnt, "tar"))
	cmd("sh", "-c", "tar -C '"+src+"' -cf - . | tar -C '"+filepath.Join(d.mnt, "tar")+"' -xpf -")
	sameTree(t, src, filepath.Join(d.mnt, "tar"), "sock") // tar leaves sockets out
	// a second rsync transfers nothing
	out := cmd("rsync", "-aH", "--stats", src+"/", filepath.Join(d.mnt, "rs")+"/")
	if m := regexp.MustCompile(`Number of regular files transferred: (\d+)`).FindStringSubmatch(out); m == nil || m[1] != "0" {
		t.Fatalf("second rsync transferred files:\n%s", out)
	}
	// out of the mount
	cmd("rsync", "-aH", filepath.Join(d.mnt, "rs")+"/", filepath.Join(tmp, "back-rs")+"/")
	sameTree(t, src, filepath.Join(tmp, "back-rs"))
	cmd("cp", "-a", filepath.Join(d.mnt, "cp"), filepath.Join(tmp, "back-cp"))
	sameTree(t, src, filepath.Join(tmp, "back-cp"))

	// stats and fsck go through the daemon while mounted
	out, code := run(t, "fsck", filepath.Join(tmp, "store"))
	if code != 0 || !strings.Contains(out, "no problems found") {
		t.Fatalf("fsck while mounted: exit %d\n%s", code, out)
	}
	out, code = run(t, "stats", filepath.Join(tmp, "store"))
	if code != 0 || !strings.Contains(out, "dedup ratio") {
		t.Fatalf("stats while mounted: exit %d\n%s", code, out)
	}
	mountedStats := out
	d.stop(t)
	out, _ = run(t, "stats", filepath.Join(tmp, "store"))
	strip := regexp.MustCompile(`(?m)^(on disk|journal) .*$`) // the unmount keeps the live logs in the journal
	if strip.ReplaceAllString(out, "") != strip.ReplaceAllString(mountedStats, "") {
		t.Fatalf("stats differ mounted vs unmounted:\n%s\nvs\n%s", mountedStats, out)
	}
}

// TestKill9DuringWrite: files closed before the daemon is killed read back
// intact after a remount, and fsck is clean.
func TestKill9DuringWrite(t *testing.T) {
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	d := mount(t, store, mnt)
	want := map[string][]byte{}
	for i := range 5 {
		b := memimage.Image{Seed: uint64(i), Pages: 2048, Mix: memimage.DefaultMix}.Bytes()
		p := fmt.Sprint("closed", i)
		if err := os.WriteFile(filepath.Join(mnt, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[p] = b
	}
	// Rewrite closed0 without closing: its committed content must survive.
	f, err := os.OpenFile(filepath.Join(mnt, "closed0"), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(memimage.Random(3<<20, 1))
	// A writer in flight.
	g, err := os.Create(filepath.Join(mnt, "inflight"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		buf := memimage.Random(1<<20, 2)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := g.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	d.kill(t)
	close(stop)
	f.Close()
	g.Close()

	d2 := mount(t, store, filepath.Join(tmp, "mnt2"))
	for p, b := range want {
		got, err := os.ReadFile(filepath.Join(d2.mnt, p))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s after kill -9: %v (%d bytes, want %d)", p, err, len(got), len(b))
		}
	}
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck after kill -9: exit %d\n%s", code, out)
	}
}

func TestMountErrors(t *testing.T) {
	requireFUSE(t)
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	notDir := filepath.Join(tmp, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	os.WriteFile(filepath.Join(tmp, "junk"), []byte("x"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"mount", store}, 2, "want 2 arguments"},
		{[]string{"mount", "--nope", store, tmp}, 2, "unknown flag"},
		{[]string{"mount", store, filepath.Join(tmp, "missing")}, 4, "no such file"},
		{[]string{"mount", store, notDir}, 4, "not a directory"},
		{[]string{"mount", tmp, filepath.Join(tmp, "x")}, 4, ""},
		{[]string{"mount", "--codec", "lzma", store, tmp}, 2, "unknown codec"},
		{[]string{"stats", tmp}, 5, "not a ckptfs store"},
		{[]string{"fsck", filepath.Join(tmp, "nothing")}, 5, "no such file"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	} {
		out, code := run(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.msg) || strings.Contains(out, "goroutine") {
			t.Errorf("ckptfs %v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.msg, out)
		}
		if n := strings.Count(strings.TrimSpace(out), "\n"); n > 0 && tc.code != 2 {
			t.Errorf("ckptfs %v: want a one-line error, got %d lines", tc.args, n+1)
		}
	}
	// busy mountpoint, and a store in use
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	if out, code := run(t, "mount", filepath.Join(tmp, "other"), d.mnt); code != 4 || !strings.Contains(out, "busy") {
		t.Errorf("busy mountpoint: exit %d\n%s", code, out)
	}
	os.MkdirAll(filepath.Join(tmp, "mnt3"), 0o755)
	if out, code := run(t, "mount", store, filepath.Join(tmp, "mnt3")); code != 6 {
		t.Errorf("store in use: exit %d, want 6\n%s", code, out)
	}
}
