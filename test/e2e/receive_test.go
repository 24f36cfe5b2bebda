package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// receive runs `ckptfs xen receive args...` with stream on stdin and
// returns its stdout, stderr and exit code.
func receive(t *testing.T, stream []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"xen", "receive"}, args...)...)
	cmd.Stdin = bytes.NewReader(stream)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestXenReceive: a generated xl remus stream (5 checkpoints, of which the
// last is cut short, as when the sender stops) through `ckptfs xen
// receive`, on an unmounted store and through a mounted store's daemon with
// --keep-last 2. The banner comes first on stdout; every published
// generation is byte for byte the plain save of its state; the cut
// checkpoint is not published and the command says so (exit 1).
func TestXenReceive(t *testing.T) {
	g := xentest.Guest{Name: "web", UUID: "5e1f0000-0000-4000-8000-0000000000aa", Pages: 4096, VCPUs: 2, Seed: 8, Dirty: 0.05}
	var b bytes.Buffer
	if err := g.WriteRemus(&b, 4); err != nil {
		t.Fatal(err)
	}
	stream := b.Bytes()[:b.Len()-100] // the sender stopped inside checkpoint 4
	plain := func(gen int) []byte {
		c := g
		c.Gen = gen
		return c.Bytes()
	}
	check := func(dir string, gens []int) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != len(gens) {
			t.Fatalf("%s: %v, %d entries, want %d", dir, err, len(ents), len(gens))
		}
		for i, e := range ents {
			if !strings.HasPrefix(e.Name(), "00000"+string(rune('0'+gens[i]))+"-") {
				t.Fatalf("%s: entry %q, want checkpoint %d", dir, e.Name(), gens[i])
			}
			got, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil || !bytes.Equal(got, plain(gens[i])) {
				t.Fatalf("%s: not the plain save of generation %d (%v)", e.Name(), gens[i], err)
			}
		}
	}
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")

	out, errOut, code := receive(t, stream, "--store", store, "--into", "guests/web")
	if out != "xl migration receiver ready, send binary domain data.\n" {
		t.Fatalf("stdout %q, want the banner only", out)
	}
	if code != 1 || strings.Count(errOut, " published (") != 4 || !strings.Contains(errOut, "4 checkpoints published, intact") {
		t.Fatalf("offline receive: exit %d\n%s", code, errOut)
	}
	// stats: every pfn in checkpoint 0's map, then about the dirty 5%
	js, code := run(t, "stats", "--json", store)
	var st gc.Stats
	if err := json.Unmarshal([]byte(js), &st); err != nil || code != 0 || len(st.Lineages) != 1 {
		t.Fatalf("stats: exit %d, %v\n%s", code, err, js)
	}
	if l := st.Lineages[0]; l.Generations != 4 || len(l.Pages) != 4 || l.Pages[0] != int64(g.Pages) || l.PerSecond <= 0 ||
		slices.ContainsFunc(l.Pages[1:], func(n int64) bool { return n < 100 || n > 300 }) {
		t.Fatalf("received lineage: %+v", l)
	}
	t.Logf("received lineage: pages per generation %v, new bytes %v, %.1f checkpoints/s", st.Lineages[0].Pages, st.Lineages[0].NewBytes, st.Lineages[0].PerSecond)
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	check(filepath.Join(d.mnt, "guests/web"), []int{0, 1, 2, 3})

	_, errOut, code = receive(t, stream, "--into", filepath.Join(d.mnt, "guests/web2"), "--keep-last", "2")
	if code != 1 || strings.Count(errOut, " published (") != 4 {
		t.Fatalf("receive through the daemon: exit %d\n%s", code, errOut)
	}
	// Both directories hold the same guest, but a lineage is one owner's
	// images of a guest in one directory: --keep-last 2 keeps the 2 newest
	// of the second receive and leaves the first directory alone.
	check(filepath.Join(d.mnt, "guests/web2"), []int{2, 3})
	check(filepath.Join(d.mnt, "guests/web"), []int{0, 1, 2, 3})
	if _, _, code := receive(t, []byte("not a stream"), "--into", filepath.Join(tmp, "elsewhere")); code != 2 {
		t.Fatalf("--into outside a ckptfs mount: exit %d, want 2", code)
	}
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck: exit %d\n%s", code, out)
	}
}

// TestXenReceiveCommandKilled: `ckptfs xen receive` into a mount hands its
// stdin to the daemon; when the command is killed (SIGKILL) while xl still
// has the pipe open, the daemon closes the stream, keeps the checkpoints
// that were complete, leaves nothing half-written and serves the next
// receive.
func TestXenReceiveCommandKilled(t *testing.T) {
	g := xentest.Guest{Name: "db", UUID: "5e1f0000-0000-4000-8000-0000000000bb", Pages: 2048, VCPUs: 1, Seed: 11, Dirty: 0.05}
	var b bytes.Buffer
	if err := g.WriteRemus(&b, 2); err != nil {
		t.Fatal(err)
	}
	stream := b.Bytes()
	tmp := t.TempDir()
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))
	dir := filepath.Join(d.mnt, "db")
	cmd := exec.Command(bin, "xen", "receive", "--into", dir)
	pw, err := cmd.StdinPipe() // the sender keeps its end open
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Everything but the last 100 bytes: checkpoints 0 and 1 complete.
	if _, err := pw.Write(stream[:len(stream)-100]); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	for i := 0; len(names()) < 2 && i < 200; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The daemon closed its copy of the stream: the sender's writes fail
	// once the pipe has no reader left.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := pw.Write(make([]byte, 64<<10)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the daemon still reads the stream after the command was killed")
		}
	}
	pw.Close()
	if got := names(); len(got) != 2 || !strings.HasPrefix(got[0], "000000-") || !strings.HasPrefix(got[1], "000001-") {
		t.Fatalf("after the kill: %q, want checkpoints 0 and 1 only\n%s", got, errb.String())
	}
	// The newest published generation is db/latest (not listed: the mount
	// has no --list-latest).
	if got, err := os.Readlink(filepath.Join(dir, "latest")); err != nil || got != names()[1] {
		t.Fatalf("db/latest = %q, %v; want %s", got, err, names()[1])
	}
	for i, name := range names() {
		want := g
		want.Gen = i
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s: not the plain save of generation %d (%v)", name, i, err)
		}
	}
	// Staging names (a generation being built) are reserved.
	if err := os.WriteFile(filepath.Join(dir, ".ckptfs-staging.x"), []byte("x"), 0o644); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("creating a staging name through the mount: %v, want EPERM", err)
	}
	// The daemon still serves receives.
	if _, errOut, code := receive(t, stream, "--into", filepath.Join(d.mnt, "db2")); code != 1 || strings.Count(errOut, " published (") != 3 {
		t.Fatalf("receive after the kill: exit %d\n%s", code, errOut)
	}
	d.stop(t)
}

// TestXenReceiveNoGuest: a remus stream whose config names no guest UUID
// (a broken or hostile sender) is refused by the real command with a
// clear error and exit 1, no panic, and nothing is published.
func TestXenReceiveNoGuest(t *testing.T) {
	g := xentest.Guest{Name: "anon", Pages: 256, VCPUs: 1, Seed: 3, Dirty: 0.1}
	var b bytes.Buffer
	if err := g.WriteRemus(&b, 2); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	_, stderr, code := receive(t, b.Bytes(), "--store", store, "--into", "g")
	if code != 1 || !strings.Contains(stderr, "no guest UUID in the stream's config") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("exit %d, want 1 with a clear error:\n%s", code, stderr)
	}
	if out, code := run(t, "stats", store); code != 0 || !strings.Contains(out, "files        0\n") {
		t.Fatalf("stats after the refused stream: exit %d, want no file published:\n%s", code, out)
	}
}
