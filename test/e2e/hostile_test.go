package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
	syscall.Chmod(d.mnt, 0o1777)
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

// hostileSource makes a store with web1/c0, web1/c1 and web2/keep (xl save
// images of one guest), unmounted, for a hostile source to serve.
func hostileSource(t *testing.T, tmp string) string {
	t.Helper()
	src := filepath.Join(tmp, "src")
	d := mount(t, src, filepath.Join(tmp, "srcmnt"))
	for _, p := range []string{"web1/c0", "web1/c1", "web2/keep"} {
		os.MkdirAll(filepath.Dir(filepath.Join(d.mnt, p)), 0o755)
		synth(t, filepath.Join(d.mnt, p), 9, len(p)%3, "0.1")
	}
	d.stop(t)
	return src
}

// TestPullHostileManifest: a source that answers the manifest request for
// web1/c0 with a manifest for web2/c0 (root-owned) gets nothing written
// outside the pull's selection: that file is refused with its name, the
// rest of the selection is copied, and the run exits non-zero.
func TestPullHostileManifest(t *testing.T) {
	tmp := t.TempDir()
	src := hostileSource(t, tmp)
	dst := filepath.Join(tmp, "dst")
	ssh := strings.Join([]string{hostileBin, "redirect", src, "web1/c0", "web2/c0"}, " ")
	out, code := run(t, "pull", "--ssh", ssh, "--path", "web1", "ssh://peer/src", dst)
	if code == 0 || !strings.Contains(out, `"web1/c0": refused: the source's manifest does not match its listing (it names "web2/c0")`) {
		t.Fatalf("pull from a lying source: exit %d\n%s", code, out)
	}
	d := mount(t, dst, filepath.Join(tmp, "dstmnt"))
	if _, err := os.Stat(filepath.Join(d.mnt, "web2")); err == nil {
		t.Fatal("the pull wrote outside its selection (web2 exists)")
	}
	sameFileIn(t, src, "web1/c1", filepath.Join(d.mnt, "web1/c1"))
	if _, err := os.Stat(filepath.Join(d.mnt, "web1/c0")); err == nil {
		t.Fatal("the refused file exists")
	}
}

// sameFileIn compares file p of the unmounted store src with got.
func sameFileIn(t *testing.T, src, p, got string) {
	t.Helper()
	d := mount(t, src, filepath.Join(t.TempDir(), "cmp"))
	sameFile(t, filepath.Join(d.mnt, p), got)
	d.stop(t)
}

// TestPullHostileNames: names with control bytes are refused at the
// receiver, each file named, and nothing of them lands.
func TestPullHostileNames(t *testing.T) {
	tmp := t.TempDir()
	src := hostileSource(t, tmp)
	dst := filepath.Join(tmp, "dst")
	out, code := run(t, "pull", "--ssh", hostileBin+" ctlname "+src, "ssh://peer/src", dst)
	if code == 0 || strings.Count(out, `not allowed (a control byte in it)`) != 3 {
		t.Fatalf("pull of control-byte names: exit %d\n%s", code, out)
	}
	d := mount(t, dst, filepath.Join(tmp, "dstmnt"))
	for _, dir := range []string{"", "web1", "web2"} {
		ents, _ := os.ReadDir(filepath.Join(d.mnt, dir))
		for _, e := range ents {
			if strings.ContainsAny(e.Name(), "\x00\x01") {
				t.Fatalf("a name with a control byte arrived: %q", e.Name())
			}
		}
	}
}

// TestPullHostileChunk: a source that answers a chunk request with a
// 1 GiB message (a few KiB on the wire) is refused before the message is
// read; the pull's peak RSS stays small.
func TestPullHostileChunk(t *testing.T) {
	tmp := t.TempDir()
	src := hostileSource(t, tmp)
	// GNU time reports the pull's own peak: a child this test started
	// directly would count the test's memory too (Linux records the
	// parent's high-water mark at the exec of a vfork-ed child).
	cmd := exec.Command("/usr/bin/time", "-f", "maxrss=%M", bin, "pull", "--ssh", hostileBin+" bigchunk "+src, "ssh://peer/src", filepath.Join(tmp, "dst"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "over its limit") {
		t.Fatalf("pull from a source sending a 1 GiB chunk: %v\n%s", err, out)
	}
	_, kb, _ := strings.Cut(string(out), "maxrss=")
	rss, _ := strconv.ParseInt(strings.TrimSpace(kb), 10, 64)
	rss <<= 10
	t.Logf("pull peak RSS %d MiB", rss>>20)
	if rss > 256<<20 {
		t.Fatalf("the pull's peak RSS is %d MiB", rss>>20)
	}
}

// TestPullStalledPeer: a peer that answers the handshake and then says
// nothing makes pull fail within --timeout, saying so.
func TestPullStalledPeer(t *testing.T) {
	tmp := t.TempDir()
	start := time.Now()
	var out string
	var code int
	timed(t, "pull from a stalled peer", 60*time.Second, func() error {
		out, code = run(t, "pull", "--timeout", "2s", "--ssh", hostileBin+" stall", "ssh://peer/src", filepath.Join(tmp, "dst"))
		return nil
	})
	if code == 0 || !strings.Contains(out, "sent nothing for 2s (--timeout)") {
		t.Fatalf("pull from a stalled peer: exit %d after %v\n%s", code, time.Since(start), out)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("pull gave up after %v with --timeout 2s", took)
	}
}

// TestTransferAttacksOnDaemon: the mount daemon, reached through `ckptfs
// serve` (which relays to it), is sent a delta that copies its base a
// thousandfold, a 1 GiB chunk message and a 1 TiB file of zero runs: the
// first two are refused, the third is done in seconds, and the daemon's
// peak RSS stays within its bound.
func TestTransferAttacksOnDaemon(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	os.Mkdir(filepath.Join(d.mnt, "web1"), 0o755)
	synth(t, filepath.Join(d.mnt, "web1", "c0"), 3, 0, "0.1")
	attack := func(args ...string) string {
		t.Helper()
		var out []byte
		timed(t, "attack "+args[0], 120*time.Second, func() error {
			out, _ = exec.Command(hostileBin, append([]string{"apply", bin, store}, args...)...).CombinedOutput()
			return nil
		})
		return string(out)
	}
	if out := attack("copies", "web1/c0"); !strings.Contains(out, "copies more entries than its base can account for") {
		t.Fatalf("a delta copying its base a thousandfold:\n%s", out)
	}
	if out := attack("bigchunk"); strings.Contains(out, "reply a") {
		t.Fatalf("a 1 GiB chunk message was taken:\n%s", out)
	}
	start := time.Now()
	if out := attack("zeros"); !strings.Contains(out, "reply a") {
		t.Fatalf("a 1 TiB file of zero runs:\n%s", out)
	}
	t.Logf("1 TiB of zero runs applied in %v", time.Since(start))
	if st, err := os.Stat(filepath.Join(d.mnt, "zeros")); err != nil || st.Size() < 1<<40 {
		t.Fatalf("zeros: %v %v", st, err)
	}
	rss := peakRSS(t, d.cmd.Process.Pid)
	t.Logf("daemon peak RSS %d MiB", rss>>20)
	if rss > daemonBound {
		t.Fatalf("the daemon's peak RSS is %d MiB, over the %d MiB bound", rss>>20, daemonBound>>20)
	}
}

// TestTransferForgery: a store owned by a user and mounted by root. The
// user, through `ckptfs serve` (relayed to the daemon), cannot make a
// root-owned or setuid file, nor write into root's directories, nor take
// a root directory's latest; what the user may write arrives as theirs.
// Nor can the user remove (push --prune's request) root's files, in root's
// directory or in a sticky one, nor what is not a file; their own file
// goes.
func TestTransferForgery(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	tmp := worldDir(t, "ckptfs-forge")
	store := filepath.Join(tmp, "store")
	os.Mkdir(store, 0o755)
	os.Chown(store, 65534, 65534)
	d := mount(t, store, filepath.Join(tmp, "mnt"), "--allow-other")
	rootDir, shared, theirs := filepath.Join(d.mnt, "web1"), filepath.Join(d.mnt, "shared"), filepath.Join(d.mnt, "theirs")
	os.Mkdir(rootDir, 0o755)
	os.Mkdir(shared, 0o1777)
	syscall.Chmod(shared, 0o1777) // (os.Chmod takes the sticky bit as os.ModeSticky only)
	os.Mkdir(theirs, 0o755)
	os.Chown(theirs, 65534, 65534)
	synth(t, filepath.Join(shared, "c0"), 3, 0, "0.1")
	as := func(path string) string {
		out, _ := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", hostileBin, "apply", bin, store, "forge", path).CombinedOutput()
		return string(out)
	}
	for _, p := range []string{"web1/evil", "web1/sub/evil", "shared/latest", "newdir/evil"} {
		if out := as(p); !strings.Contains(out, "permission denied") {
			t.Fatalf("forging %s as uid 65534:\n%s", p, out)
		}
		if _, err := os.Lstat(filepath.Join(d.mnt, p)); err == nil && !strings.HasSuffix(p, "/latest") {
			t.Fatalf("%s exists", p)
		}
	}
	if got, err := os.Readlink(filepath.Join(shared, "latest")); err != nil || got != "c0" {
		t.Fatalf("shared/latest = %q %v, want root's c0", got, err)
	}
	for _, p := range []string{"theirs/mine", "shared/mine"} {
		if out := as(p); !strings.Contains(out, "reply a") {
			t.Fatalf("writing %s as uid 65534:\n%s", p, out)
		}
		st, err := os.Stat(filepath.Join(d.mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 65534 || st.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			t.Fatalf("%s arrived as uid %d mode %v, want uid 65534 and no setuid", p, sys.Uid, st.Mode())
		}
	}
	synth(t, filepath.Join(rootDir, "c0"), 3, 0, "0.1")
	remove := func(path string) string {
		out, _ := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", hostileBin, "apply", bin, store, "remove", path).CombinedOutput()
		return string(out)
	}
	for p, want := range map[string]string{"web1/c0": "permission denied", "shared/c0": "permission denied", "shared/latest": "", "shared": "not a regular file"} {
		out := remove(p)
		if !strings.Contains(out, "reply E") && !strings.Contains(out, "reply N") || !strings.Contains(out, want) {
			t.Errorf("removing %s as uid 65534: %s", p, out)
		}
		if _, err := os.Lstat(filepath.Join(d.mnt, p)); err != nil {
			t.Errorf("%s is gone after uid 65534 asked to remove it: %v", p, err)
		}
	}
	if out := remove("shared/mine"); !strings.Contains(out, "reply d") {
		t.Errorf("removing their own shared/mine as uid 65534: %s", out)
	}
	if _, err := os.Lstat(filepath.Join(shared, "mine")); err == nil {
		ls, _ := exec.Command("ls", "-la", shared).CombinedOutput()
		t.Errorf("shared/mine is still there (a stale kernel entry) after its owner removed it:\n%s", ls)
	}
}

// TestOpenWritersBounded: a user holds 64 files open for writing, each
// with a few MiB written; the daemon's peak RSS stays within its bound
// (the writers' memory is shared, --writer-memory), every file reads
// back what was written, and root's xl save image written meanwhile is
// whole.
func TestOpenWritersBounded(t *testing.T) {
	tmp := worldDir(t, "ckptfs-writers")
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), "--allow-other", "--writer-memory", "128")
	syscall.Chmod(d.mnt, 0o1777)
	const files = 64
	// One process as uid 65534 opens them all, writes 3 MiB into each
	// (interleaved), then holds them open until told.
	script := fmt.Sprintf(`i=0; while [ $i -lt %d ]; do eval "exec $((i+10))>%s/f$i"; i=$((i+1)); done
for round in 1 2 3; do i=0; while [ $i -lt %d ]; do head -c 1048576 /dev/urandom >&$((i+10)); i=$((i+1)); done; done
echo written; read x`, files, d.mnt, files)
	holder := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", script)
	stdin, _ := holder.StdinPipe()
	stdout, _ := holder.StdoutPipe()
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := stdout.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "written") {
		holder.Process.Kill()
		t.Fatalf("the holder did not write its files: %v %q", err, buf[:n])
	}
	os.Mkdir(filepath.Join(d.mnt, "web1"), 0o755)
	synth(t, filepath.Join(d.mnt, "web1", "c0"), 3, 0, "0.1")
	rss := peakRSS(t, d.cmd.Process.Pid)
	stdin.Close()
	holder.Wait()
	t.Logf("daemon peak RSS %d MiB with %d files open for writing", rss>>20, files)
	if rss > daemonBound {
		t.Fatalf("the daemon's peak RSS is %d MiB with %d files open, over the %d MiB bound", rss>>20, files, daemonBound>>20)
	}
	for i := range files {
		if st, err := os.Stat(filepath.Join(d.mnt, fmt.Sprint("f", i))); err != nil || st.Size() != 3<<20 {
			t.Fatalf("f%d: %v %v", i, st, err)
		}
	}
	if got, err := os.Readlink(filepath.Join(d.mnt, "web1", "latest")); err != nil || got != "c0" {
		t.Fatalf("root's image written meanwhile: latest %q %v", got, err)
	}
}
