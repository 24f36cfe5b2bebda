package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountFlags returns the per-mount flags of the mount at dir as
// /proc/self/mountinfo shows them (rw,nosuid,nodev,...).
func mountFlags(t *testing.T, dir string) []string {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/mountinfo")
	abs, _ := filepath.Abs(dir)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == abs {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("%s is not mounted", dir)
	return nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// TestMountFlags: -o noexec is honoured (a script in the mount does not
// run), a mount is nosuid and nodev unless -o suid/dev says otherwise, and
// options ckptfs cannot honour (sync) are refused, not dropped.
func TestMountFlags(t *testing.T) {
	tmp := t.TempDir()
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), "-o", "noexec")
	if fl := mountFlags(t, d.mnt); !hasFlag(fl, "noexec") || !hasFlag(fl, "nosuid") || !hasFlag(fl, "nodev") {
		t.Fatalf("-o noexec mount has flags %v, want noexec, nosuid, nodev", fl)
	}
	script := filepath.Join(d.mnt, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(script).CombinedOutput(); err == nil || strings.Contains(string(out), "ran") {
		t.Fatalf("a script ran in a noexec mount: %v %s", err, out)
	}
	d.stop(t)

	d2 := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt2"))
	if fl := mountFlags(t, d2.mnt); hasFlag(fl, "noexec") || !hasFlag(fl, "nosuid") || !hasFlag(fl, "nodev") {
		t.Fatalf("a default mount has flags %v, want nosuid and nodev, exec", fl)
	}
	if out, err := exec.Command(filepath.Join(d2.mnt, "run.sh")).CombinedOutput(); err != nil || !strings.Contains(string(out), "ran") {
		t.Fatalf("a script in a default mount: %v %s", err, out)
	}
	d2.stop(t)

	for _, opt := range []string{"sync", "dirsync", "strictatime"} {
		out, code := run(t, "mount", "-o", opt, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt3"))
		if code != 2 || !strings.Contains(out, "-o "+opt+": not supported") {
			t.Fatalf("mount -o %s: exit %d\n%s", opt, code, out)
		}
		if mounted(filepath.Join(tmp, "mnt3")) {
			t.Fatalf("mounted with -o %s", opt)
		}
	}
}

// TestCommandRightAfterUmount: a command run at once after umount(8)
// waits for the daemon to release the store instead of failing with
// "in use" (exit 6).
func TestCommandRightAfterUmount(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	for i := range 4 {
		d := mount(t, store, filepath.Join(tmp, "mnt"))
		os.WriteFile(filepath.Join(d.mnt, "f"), []byte{byte(i)}, 0o644)
		if out, err := exec.Command("umount", d.mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v %s", err, out)
		}
		if out, code := run(t, "stats", store); code != 0 {
			t.Fatalf("round %d: stats right after umount: exit %d\n%s", i, code, out)
		}
		if err := <-d.done; err != nil {
			t.Fatalf("daemon: %v", err)
		}
		d.done <- nil
	}
}
