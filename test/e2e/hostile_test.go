package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// peakRSS returns the peak resident set (VmHWM) of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM for pid %d", pid)
	return 0
}

// daemonBound is the peak RSS the daemon's documented bound allows while
// the attacks of this file run (docs/safety.md): its steady state plus
// the writer memory and one transfer connection.
const daemonBound = 1 << 30

// TestHugeSparseFile: a user truncates a file to the largest size there
// is; root's push of the mount, stats and gc then take memory and time in
// proportion to what is stored, not to the file's logical size, and the
// copy reads back as the same sparse file.
func TestHugeSparseFile(t *testing.T) {
	tmp := worldDir(t, "ckptfs-sparse")
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), "--allow-other")
	os.Chmod(d.mnt, 0o1777)
	huge := filepath.Join(d.mnt, "huge")
	if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "truncate", "-s", "9223372036854775807", huge).CombinedOutput(); err != nil {
		t.Fatalf("truncate as nobody: %v %s", err, out)
	}
	os.WriteFile(filepath.Join(d.mnt, "small"), []byte("small file"), 0o644)
	dst := filepath.Join(tmp, "dst")
	var pout string
	var code int
	err := timed(t, "push of a huge sparse file", 60e9, func() error {
		pout, code = run(t, "push", d.mnt, dst)
		return nil
	})
	if err != nil || code != 0 {
		t.Fatalf("push: exit %d\n%s", code, pout)
	}
	if rss := peakRSS(t, d.cmd.Process.Pid); rss > daemonBound {
		t.Fatalf("the daemon's peak RSS is %d MiB after the push, over the %d MiB bound", rss>>20, daemonBound>>20)
	}
	store := filepath.Join(tmp, "store")
	sout, code := run(t, "stats", "--json", store)
	if code != 0 || strings.Contains(sout, `"logical_bytes":-`) || strings.Contains(sout, `"dedup_ratio":-`) {
		t.Fatalf("stats: exit %d\n%s", code, sout)
	}
	if out, code := run(t, "gc", "--keep-last", "1", store); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	d2 := mount(t, dst, filepath.Join(tmp, "mnt2"))
	st, err := os.Stat(filepath.Join(d2.mnt, "huge"))
	if err != nil || st.Size() != 9223372036854775807 {
		t.Fatalf("the copy: %v %v", st, err)
	}
	f, err := os.Open(filepath.Join(d2.mnt, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<16)
	for _, off := range []int64{0, 1 << 40, 9223372036854775807 - 1<<16} {
		if n, err := f.ReadAt(buf, off); n == 0 && err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		for _, c := range buf {
			if c != 0 {
				t.Fatalf("a non-zero byte at %d of the sparse copy", off)
			}
		}
	}
}
