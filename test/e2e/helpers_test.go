// Package e2e runs the real ckptfs binary: mounts, cp and rsync through the
// kernel, kill -9 of the daemon. Build once in TestMain.
package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var bin, hostileBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ckptfs-e2e")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "ckptfs")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ckptfs").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	hostileBin = filepath.Join(dir, "hostile")
	if out, err := exec.Command("go", "build", "-o", hostileBin, "./hostile").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE is required in CI: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
}

// daemon is a running `ckptfs mount`.
type daemon struct {
	cmd    *exec.Cmd
	mnt    string
	stderr *bytes.Buffer
	done   chan error
}

// mount starts `ckptfs mount store mnt` and waits for its ready line. The
// mount is torn down when t ends; a mount left behind fails the test.
func mount(t *testing.T, store, mnt string, extra ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"mount"}, extra...)
	cmd := exec.Command(bin, append(args, store, mnt)...)
	stdout, _ := cmd.StdoutPipe()
	d := &daemon{cmd: cmd, mnt: mnt, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "ready:") {
				ready <- sc.Text()
			}
		}
		d.done <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("ckptfs mount exited before ready: %v\n%s", err, d.stderr)
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ckptfs mount not ready after 20s\n%s", d.stderr)
	}
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop unmounts and waits for the daemon to exit cleanly.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd.ProcessState != nil {
		return
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Errorf("ckptfs mount exited with %v\n%s", err, d.stderr)
		}
		d.done <- err
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		exec.Command("umount", "-l", d.mnt).Run()
		t.Errorf("ckptfs mount did not exit after SIGTERM\n%s", d.stderr)
	}
	if mounted(d.mnt) {
		exec.Command("umount", "-l", d.mnt).Run()
		t.Errorf("mount left behind at %s", d.mnt)
	}
}

// kill kills the daemon with SIGKILL and clears the dead mount.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	d.cmd.Process.Kill()
	<-d.done
	d.done <- nil
	if out, err := exec.Command("umount", "-l", d.mnt).CombinedOutput(); err != nil {
		if out2, err2 := exec.Command("fusermount3", "-u", "-z", d.mnt).CombinedOutput(); err2 != nil {
			t.Fatalf("clearing dead mount: %v %s / %v %s", err, out, err2, out2)
		}
	}
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	abs, _ := filepath.Abs(dir)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == abs {
			return true
		}
	}
	return false
}

// run runs the ckptfs binary and returns its output and exit code.
func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runEnv(t, nil, args...)
}

// treeSums maps every path below root to a digest of its type, mode and
// content (or link target).
func treeSums(t *testing.T, root string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	firstName := map[uint64]string{} // inode -> its first path here (hard links)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			tgt, _ := os.Readlink(p)
			sums[rel] = "link:" + tgt
		case info.IsDir():
			sums[rel] = fmt.Sprintf("dir:%v", info.Mode().Perm())
		case !info.Mode().IsRegular():
			st := info.Sys().(*syscall.Stat_t)
			sums[rel] = fmt.Sprintf("special:%v:%d", info.Mode(), st.Rdev)
		default:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err = io.Copy(h, f); err != nil {
				f.Close()
				return err
			}
			f.Close()
			sums[rel] = fmt.Sprintf("file:%v:%x", info.Mode().Perm(), h.Sum(nil))
			if st := info.Sys().(*syscall.Stat_t); st.Nlink > 1 {
				if first, ok := firstName[st.Ino]; ok {
					sums[rel] += ":same file as " + first
				} else {
					firstName[st.Ino] = rel
					sums[rel] += fmt.Sprintf(":%d names", st.Nlink)
				}
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func sameTree(t *testing.T, a, b string, except ...string) {
	t.Helper()
	sa, sb := treeSums(t, a), treeSums(t, b)
	for _, e := range except {
		delete(sa, e)
	}
	if len(sa) != len(sb) {
		t.Fatalf("%s has %d entries, %s has %d", a, len(sa), b, len(sb))
	}
	for k, v := range sa {
		if sb[k] != v {
			t.Fatalf("%s differs: %s vs %s", k, v, sb[k])
		}
	}
}

// worldDir returns a new directory that other users can reach (t.TempDir
// is 0700), removed when t ends, after the mounts in it are gone
// (cleanups run last first); the test binary's directory is made
// reachable too, for a ckptfs run as another user.
func worldDir(t *testing.T, prefix string) string {
	t.Helper()
	base, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	os.Chmod(filepath.Dir(bin), 0o755)
	return base
}
