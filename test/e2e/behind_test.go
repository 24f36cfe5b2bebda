package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// spoolMarkers returns the spools in store that record a close(2).
func spoolMarkers(t *testing.T, store string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(store, "spool", "*.spool.closed"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWriteBehindKill9AfterClose: xl save images whose close(2) returned
// while their bytes were still spooled (write-behind) survive a kill -9 of
// the daemon: the next mount stores them from the spool, byte-exact, as
// whole images (latest names the newest), and leaves no spool behind. A
// file still open at the kill is dropped, as the synchronous path drops it.
func TestWriteBehindKill9AfterClose(t *testing.T) {
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	d := mount(t, store, mnt)
	dir := filepath.Join(mnt, "web")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	var spooled []string
	for try := 0; try < 3 && len(spooled) == 0; try++ {
		if try > 0 {
			d = mount(t, store, mnt)
		}
		// A writer that never closes.
		open, err := os.Create(filepath.Join(dir, fmt.Sprintf("unclosed%d.xl", try)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := open.Write(xentest.Guest{Name: "web", UUID: "6c9d3a1e-0000-4000-8000-00000000wb01", Pages: 1024, VCPUs: 2, Seed: 99}.Bytes()); err != nil {
			t.Fatal(err)
		}
		// Three generations closed back to back, then the kill: the
		// engine is still storing the last ones (it stores a first
		// generation slower than the transport delivers it).
		for gen := 0; gen < 3; gen++ {
			g := xentest.Guest{Name: "web", UUID: "6c9d3a1e-0000-4000-8000-00000000wb01", Pages: 65536, VCPUs: 2, Seed: 7 + uint64(try), Gen: gen, Dirty: 0.5}
			b := g.Bytes()
			name := fmt.Sprintf("t%d-gen%d.xl", try, gen)
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
			want[name] = b
		}
		d.kill(t)
		open.Close()
		spooled = spoolMarkers(t, store) // what the dead daemon left
	}
	if len(spooled) == 0 {
		t.Fatal("every file was stored before the test could kill the daemon: write-behind was not exercised")
	}
	t.Logf("killed with %d closed files still spooled", len(spooled))
	if out, code := run(t, "stats", store); code != 0 || !strings.Contains(out, fmt.Sprintf("spooled      %d closed files not stored yet", len(spooled))) {
		t.Errorf("stats of the killed daemon's store: exit %d, no word of its %d spooled files:\n%s", code, len(spooled), out)
	}
	if out, code := run(t, "fsck", store); code != 0 || !strings.Contains(out, fmt.Sprintf("spooled: %d closed files not stored yet", len(spooled))) {
		t.Errorf("fsck of the killed daemon's store: exit %d, no word of its %d spooled files:\n%s", code, len(spooled), out)
	}

	d2 := mount(t, store, filepath.Join(tmp, "mnt2"))
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(d2.mnt, "web", name))
		if err != nil || !bytes.Equal(got, b) {
			d2.stop(t)
			t.Fatalf("%s after kill -9 and recovery: %v (%d bytes, want %d); spooled %v; the recovering mount's log:\n%s", name, err, len(got), len(b), spooled, d2.stderr.String())
		}
	}
	if got, err := os.Readlink(filepath.Join(d2.mnt, "web", "latest")); err != nil || !strings.HasSuffix(got, "-gen2.xl") {
		t.Errorf("latest after recovery: %q %v, want a gen2 image", got, err)
	}
	if fi, err := os.Stat(filepath.Join(d2.mnt, "web", "unclosed0.xl")); err != nil || fi.Size() != 0 {
		t.Errorf("the file open at the kill: %v, size %v; want it empty, as created", err, fi)
	}
	if m := spoolMarkers(t, store); len(m) != 0 {
		t.Errorf("spools left after recovery: %v", m)
	}
	d2.stop(t) // its log is read once it has exited
	logs := d2.stderr.String()
	if n := strings.Count(logs, "recovered /web/"); n < len(spooled) {
		t.Errorf("%d spools had a close, the mount recovered %d:\n%s", len(spooled), n, logs)
	}
	if !strings.Contains(logs, ".xl was being written when the daemon stopped") {
		t.Errorf("the unclosed file's spool was not reported dropped:\n%s", logs)
	}
	if out, code := run(t, "fsck", store); code != 0 || strings.Contains(out, "spooled:") {
		t.Fatalf("fsck after recovery: exit %d (or spooled files named)\n%s", code, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(store, "spool")); len(ents) != 0 {
		t.Errorf("spool directory not empty after a clean unmount: %d entries", len(ents))
	}
}

// TestWriteBehindReadersWait: a reader that opens a file right after its
// writer's close(2) returned gets the whole file, and latest names it,
// although the engine stores it behind the writer; the close returned
// before the commit (the file was still spooled).
func TestWriteBehindReadersWait(t *testing.T) {
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	mount(t, store, mnt)
	behind := 0
	for gen := 0; gen < 4; gen++ {
		b := xentest.Guest{Name: "db", UUID: "6c9d3a1e-0000-4000-8000-00000000wb02", Pages: 32768, VCPUs: 2, Seed: 3, Gen: gen, Dirty: 0.2}.Bytes()
		name := fmt.Sprintf("db-%d.xl", gen)
		if err := os.WriteFile(filepath.Join(mnt, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if len(spoolMarkers(t, store)) > 0 {
			behind++
		}
		start := time.Now()
		target, err := os.Readlink(filepath.Join(mnt, "latest"))
		if err != nil || target != name {
			t.Fatalf("latest right after close of %s: %q %v", name, target, err)
		}
		got, err := os.ReadFile(filepath.Join(mnt, "latest"))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("reading %s through latest right after close: %v (%d bytes, want %d)", name, err, len(got), len(b))
		}
		t.Logf("%s: read back %v after close", name, time.Since(start))
	}
	if behind == 0 {
		t.Fatal("no close returned before its file was stored: write-behind was not exercised")
	}
}
