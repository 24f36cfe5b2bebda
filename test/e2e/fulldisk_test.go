package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/memimage"
)

// loopDisk makes a small ext4 filesystem on a loop device, mounted on a
// temporary directory until t ends.
func loopDisk(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	tmp := t.TempDir()
	img, dir := filepath.Join(tmp, "disk.img"), filepath.Join(tmp, "disk")
	os.Mkdir(dir, 0o755)
	for _, c := range [][]string{{"truncate", "-s", size, img}, {"mkfs.ext4", "-q", "-F", img}, {"mount", "-o", "loop", img, dir}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s (make deps installs e2fsprogs)", c, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			exec.Command("umount", "-l", dir).Run()
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// timed runs fn and fails the test if it takes longer than limit (a hang
// is the bug this guards against: fn runs on, the test reports it).
func timed(t *testing.T, what string, limit time.Duration, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s still running after %v", what, limit)
		return nil
	}
}

func writeWhole(p string, data []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// TestFullDisk: the store on a 256 MiB filesystem. Writing until it is
// full ends with ENOSPC within seconds (never a hang in write or close),
// rm and ckptfs gc still work and make room for new writes, the daemon's
// log stays short, SIGTERM unmounts, a remount on the full disk works,
// and every file closed before the disk filled reads back exactly.
func TestFullDisk(t *testing.T) {
	disk := loopDisk(t, "256M")
	store, mnt := filepath.Join(disk, "store"), filepath.Join(t.TempDir(), "mnt")
	d := mount(t, store, mnt)
	kept := map[string][]byte{}
	fill := func(round int) {
		t.Helper()
		for i := 0; ; i++ {
			if i > 30 {
				t.Fatal("256 MiB filesystem never filled")
			}
			name := fmt.Sprintf("r%d-f%02d", round, i)
			data := memimage.Random(24<<20, uint64(round*100+i))
			err := timed(t, "writing "+name, 60*time.Second, func() error { return writeWhole(filepath.Join(mnt, name), data) })
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("%s: %v, want ENOSPC", name, err)
				}
				t.Logf("round %d: %d files of 24 MiB, then %v", round, i, err)
				return
			}
			kept[name] = data
		}
	}
	check := func(when string) {
		t.Helper()
		for name, want := range kept {
			if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: %v (%d bytes of %d)\ndaemon log:\n%s", when, name, err, len(got), len(want), d.stderr)
			}
		}
	}
	fill(0)
	check("disk full")
	// Making room: rm, then gc, then a write succeeds again.
	var victims []string
	for name := range kept {
		victims = append(victims, name)
		if len(victims) == 3 {
			break
		}
	}
	for _, name := range victims {
		if err := timed(t, "rm on a full disk", 10*time.Second, func() error { return os.Remove(filepath.Join(mnt, name)) }); err != nil {
			t.Fatalf("rm on a full disk: %v", err)
		}
		delete(kept, name)
	}
	var out string
	var code int
	timed(t, "gc on a full disk", 120*time.Second, func() error { out, code = run(t, "gc", store); return nil })
	if code != 0 {
		t.Fatalf("gc on a full disk: exit %d\n%s", code, out)
	}
	fill(1)
	check("full again after gc")
	d.stop(t) // SIGTERM must unmount
	if n := strings.Count(d.stderr.String(), "\n"); n > 100 {
		t.Errorf("daemon logged %d lines filling the disk twice:\n%s", n, d.stderr.String()[:4000])
	}
	noTrace(t, "daemon", d.stderr.String())
	timed(t, "remount on a full disk", 60*time.Second, func() error { d = mount(t, store, mnt); return nil })
	check("after remount on the full disk")
	d.stop(t)
	// The refused writes' chunks went to gc: nothing is left unreferenced.
	if out, code := run(t, "gc", store); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	if out, code := run(t, "fsck", store); code != 0 || !strings.Contains(out, "unreferenced chunks: 0") {
		t.Fatalf("fsck: exit %d\n%s", code, out)
	}
}

// TestPushFullDisk: a push into an unmounted store on a nearly full disk
// goes through the same disk-full guard as writes through a mount: it
// fails with "disk is full" (no panic, no hang), leaves the guard's margin
// free, and the destination still opens and checks clean.
func TestPushFullDisk(t *testing.T) {
	disk := loopDisk(t, "128M")
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(disk, "dst")
	d := mount(t, src, filepath.Join(tmp, "mnt"))
	rnd := make([]byte, 8<<20)
	for i := range 24 { // 192 MiB that neither compresses nor dedups
		if _, err := rand.Read(rnd); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.mnt, fmt.Sprintf("f%02d", i)), rnd, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d.stop(t)
	var out string
	var code int
	timed(t, "push onto a full disk", 120*time.Second, func() error {
		out, code = run(t, "push", src, dst)
		return nil
	})
	if code == 0 || !strings.Contains(out, "disk is full") || strings.Contains(out, "goroutine ") {
		t.Fatalf("push onto a full disk: exit %d\n%s", code, out)
	}
	var st syscall.Statfs_t
	syscall.Statfs(disk, &st)
	if free := int64(st.Bavail) * st.Bsize; free < 4<<20 {
		t.Fatalf("the push left %d bytes free: the guard's margin is gone", free)
	}
	if out, code := run(t, "fsck", dst); code != 0 {
		t.Fatalf("fsck of the destination: exit %d\n%s", code, out)
	}
}
