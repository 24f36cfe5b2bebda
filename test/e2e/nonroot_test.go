package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestNonRootMount mounts as an unprivileged user through fusermount3 and
// checks that a file written there reads back, and that --allow-other is
// refused by fusermount3 unless /etc/fuse.conf allows it (kernel permission
// checks stay on either way).
func TestNonRootMount(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("fusermount3 is required in CI (package fuse3)")
		}
		t.Skip("no fusermount3")
	}
	if st, err := os.Stat("/dev/fuse"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		// fusermount3 opens /dev/fuse as the calling user; Debian's udev
		// rule makes it 0666, containers often leave it 0600.
		msg := "/dev/fuse is " + st.Mode().Perm().String() + ", not 0666: non-root mounts cannot work (.ci/run sets 0666)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	const uid = 65534
	base := worldDir(t, "ckptfs-nonroot")
	store, mnt := filepath.Join(base, "store"), filepath.Join(base, "mnt")
	for _, d := range []string{store, mnt} {
		os.Mkdir(d, 0o700)
		os.Chown(d, uid, uid)
	}
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", bin, "mount", store, mnt)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME=/")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("non-root daemon exit: %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("non-root daemon did not exit")
		}
		if mounted(mnt) {
			exec.Command("umount", "-l", mnt).Run()
			t.Errorf("mount left behind")
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "ready:") {
		if time.Now().After(deadline) {
			t.Fatalf("non-root mount not ready:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A user who is not root unmounts with fusermount3 -u: the ready line
	// says so.
	if !strings.Contains(out.String(), "'fusermount3 -u "+mnt+"' unmounts") {
		t.Errorf("non-root ready line does not say fusermount3 -u:\n%s", out.String())
	}
	w := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
		"head -c 3000000 /dev/urandom > "+mnt+"/f && cmp "+mnt+"/f "+mnt+"/f && stat -c %U "+mnt+"/f")
	o, err := w.CombinedOutput()
	if err != nil || !strings.Contains(string(o), "nobody") {
		t.Fatalf("write as non-root: %v\n%s", err, o)
	}
}

// syncBuffer is a bytes.Buffer safe for exec's copying goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAllowOtherKeepsPermissions: with --allow-other, another user reaches
// the mount but the kernel still refuses a 0600 file of root's.
func TestAllowOtherKeepsPermissions(t *testing.T) {
	requireFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	base := worldDir(t, "ckptfs-allowother")
	d := mount(t, filepath.Join(base, "store"), filepath.Join(base, "mnt"), "--allow-other")
	os.Chmod(d.mnt, 0o755)
	os.WriteFile(filepath.Join(d.mnt, "secret"), []byte("root only"), 0o600)
	os.WriteFile(filepath.Join(d.mnt, "public"), []byte("everyone"), 0o644)
	as := func(args ...string) (string, error) {
		out, err := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := as("cat", filepath.Join(d.mnt, "public")); err != nil || out != "everyone" {
		t.Fatalf("other user reading a 0644 file: %v %q", err, out)
	}
	if out, err := as("cat", filepath.Join(d.mnt, "secret")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Fatalf("other user read a 0600 file: %v %q", err, out)
	}
}

// TestUmountEndsDaemon: `umount MOUNTPOINT` unmounts and the daemon exits 0.
func TestUmountEndsDaemon(t *testing.T) {
	tmp := t.TempDir()
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))
	os.WriteFile(filepath.Join(d.mnt, "f"), []byte("x"), 0o644)
	if out, err := exec.Command("umount", d.mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			t.Fatalf("daemon exit after umount: %v\n%s", err, d.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon still running 20s after umount")
	}
	if mounted(d.mnt) {
		t.Fatal("still mounted")
	}
}
