package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyMedia: a store whose directory cannot be written (a backup
// disk, a snapshot: here a read-only bind mount) can be read: stats and
// fsck work, `mount --read-only` serves every file byte-exact, readers
// share it, and a writer is kept out while a reader has it (and the other
// way round).
func TestReadOnlyMedia(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a read-only bind mount")
	}
	tmp := t.TempDir()
	src, ro := filepath.Join(tmp, "store"), filepath.Join(tmp, "ro")
	d := mount(t, src, filepath.Join(tmp, "mnt"))
	os.Mkdir(filepath.Join(d.mnt, "web1"), 0o755)
	synth(t, filepath.Join(d.mnt, "web1", "c0"), 6, 0, "0.1")
	want, _ := os.ReadFile(filepath.Join(d.mnt, "web1", "c0"))
	d.stop(t)
	os.Mkdir(ro, 0o755)
	for _, c := range [][]string{{"mount", "--bind", src, ro}, {"mount", "-o", "remount,bind,ro", ro}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", c, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("umount", ro).Run() })
	if err := os.WriteFile(filepath.Join(ro, "probe"), nil, 0o644); err == nil {
		t.Fatal("the bind mount is writable")
	}
	for _, cmd := range [][]string{{"stats", ro}, {"fsck", ro}} {
		if out, code := run(t, cmd...); code != 0 {
			t.Fatalf("%s on read-only media: exit %d\n%s", cmd[0], code, out)
		}
	}
	r := mount(t, ro, filepath.Join(tmp, "rmnt"), "--read-only")
	if got, err := os.ReadFile(filepath.Join(r.mnt, "web1", "c0")); err != nil || string(got) != string(want) {
		t.Fatalf("reading from read-only media: %v", err)
	}
	if out, code := run(t, "stats", ro); code != 0 {
		t.Fatalf("a second reader beside the read-only mount: exit %d\n%s", code, out)
	}
	// The writable store itself (same directory) is kept out meanwhile.
	os.Mkdir(filepath.Join(tmp, "wmnt"), 0o755)
	os.Mkdir(filepath.Join(tmp, "rmnt2"), 0o755)
	out, code := run(t, "mount", src, filepath.Join(tmp, "wmnt"))
	if code != 6 || !strings.Contains(out, "in use") {
		t.Fatalf("a writable mount while a reader has the store: exit %d\n%s", code, out)
	}
	r.stop(t)
	w := mount(t, src, filepath.Join(tmp, "wmnt"))
	os.WriteFile(filepath.Join(w.mnt, "new"), []byte("x"), 0o644)
	if out, code := run(t, "mount", "--read-only", ro, filepath.Join(tmp, "rmnt2")); code != 6 || !strings.Contains(out, "in use") {
		t.Fatalf("a read-only mount while a writer has the store: exit %d\n%s", code, out)
	}
}
