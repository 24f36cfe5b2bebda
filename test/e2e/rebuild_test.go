package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// removeDatabase removes every file of the store's database (Pebble's),
// as an operator who deleted the wrong files would: segments/ (with the
// journal in it), the spool and the durable marker stay.
func removeDatabase(t *testing.T, store string) {
	t.Helper()
	if n, err := chunkstore.RemoveDatabaseForTest(store); err != nil || n == 0 {
		t.Fatalf("removing the store's database: %v (%d files)", err, n)
	}
}

// TestRebuildAfterDatabaseGone writes what a host keeps through a real
// mount (page-mode generations of two guests, one generation expired by
// gc and its segments compacted, a plain file, a symlink, a directory with
// its own mode), removes the store's whole database, and runs the real
// `ckptfs fsck --rebuild`: every file comes back byte-exact with its name,
// mode and owner, the store mounts, takes a new checkpoint, and fsck
// finds nothing wrong. It logs the rebuild's time per GiB stored and the
// journal's size against the stored bytes.
func TestRebuildAfterDatabaseGone(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	mnt := filepath.Join(tmp, "mnt")
	guest := func(name string, gen int) []byte {
		return xentest.Guest{Name: name, UUID: "9e000000-0000-4000-8000-0000000000" + name[len(name)-2:], Pages: 4096, VCPUs: 1, Seed: uint64(len(name)), Gen: gen, Dirty: 0.05}.Bytes()
	}
	want := map[string][]byte{}
	d := mount(t, store, mnt)
	for _, g := range []string{"vm01", "vm02"} {
		os.Mkdir(filepath.Join(d.mnt, g), 0o750)
		for gen := range 4 {
			p := filepath.Join(g, fmt.Sprintf("c%d", gen))
			b := guest(g, gen)
			if err := os.WriteFile(filepath.Join(d.mnt, p), b, 0o600); err != nil {
				t.Fatal(err)
			}
			want[p] = b
		}
	}
	notes := bytes.Repeat([]byte("operator notes\n"), 10000)
	os.WriteFile(filepath.Join(d.mnt, "notes.txt"), notes, 0o640)
	want["notes.txt"] = notes
	os.Symlink("vm01/c3", filepath.Join(d.mnt, "latest"))
	if out, code := run(t, "fsck", "--rebuild", d.mnt); code != 6 || !strings.Contains(out, "unmount") {
		t.Fatalf("fsck --rebuild of a mounted store: exit %d, want 6\n%s", code, out)
	}
	d.stop(t)
	if out, code := run(t, "gc", "--keep-last", "3", "--compact", store); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	delete(want, "vm01/c0")
	delete(want, "vm02/c0")
	d = mount(t, store, mnt)
	b := guest("vm01", 4)
	if err := os.WriteFile(filepath.Join(d.mnt, "vm01/c4"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	want["vm01/c4"] = b
	d.stop(t)

	stored, _ := storeStats(t, store)
	journal := du(t, filepath.Join(store, chunkstore.JournalDir), false)
	removeDatabase(t, store)
	out, code := run(t, "mount", store, mnt)
	noTrace(t, "mount", out)
	if code == 0 || !strings.Contains(out, "--rebuild") {
		t.Fatalf("mount of a store without its database: exit %d, want a refusal that names fsck --rebuild\n%s", code, out)
	}
	start := time.Now()
	out, code = run(t, "fsck", "--rebuild", store)
	took := time.Since(start)
	noTrace(t, "fsck --rebuild", out)
	if code != 0 || !strings.Contains(out, "no problems found") || !strings.Contains(out, fmt.Sprintf("checked %d files", len(want))) {
		t.Fatalf("fsck --rebuild: exit %d\n%s", code, out)
	}
	t.Logf("%s", out)
	t.Logf("journal %d bytes = %.2f%% of %d stored bytes; rebuild and check %.2f s (%.1f s per GiB stored)",
		journal, 100*float64(journal)/float64(stored), stored, took.Seconds(), took.Seconds()/(float64(stored)/(1<<30)))

	d = mount(t, store, mnt)
	for p, b := range want {
		got, err := os.ReadFile(filepath.Join(d.mnt, p))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s after the rebuild: %v (%d bytes, want %d)", p, err, len(got), len(b))
		}
	}
	for p, mode := range map[string]os.FileMode{"vm01": os.ModeDir | 0o750, "vm01/c4": 0o600, "notes.txt": 0o640} {
		fi, err := os.Stat(filepath.Join(d.mnt, p))
		if err != nil || fi.Mode() != mode || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			t.Fatalf("%s after the rebuild: %v %v, want mode %v", p, err, fi.Mode(), mode)
		}
	}
	if l, err := os.Readlink(filepath.Join(d.mnt, "latest")); err != nil || l != "vm01/c3" {
		t.Fatalf("latest after the rebuild: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(d.mnt, "vm01/c0")); !os.IsNotExist(err) {
		t.Fatalf("vm01/c0, expired before the damage, is back: %v", err)
	}
	// A new generation of the guest, after the rebuild.
	b = guest("vm01", 5)
	if err := os.WriteFile(filepath.Join(d.mnt, "vm01/c5"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(d.mnt, "vm01/c5")); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("new generation after the rebuild: %v", err)
	}
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck after the rebuild and a new generation: exit %d\n%s", code, out)
	}
	out, _ = run(t, "stats", store)
	if !strings.Contains(out, "vm01") || !strings.Contains(out, "what fsck --rebuild reads") {
		t.Fatalf("stats after the rebuild lists no lineage vm01 or no journal:\n%s", out)
	}
}

// TestRebuildAfterKill: the daemon is killed (kill -9) after files were
// written and fsynced, then the store's whole database is removed, its
// live log too. The journal holds a second name of every live log (a hard
// link made when Pebble created it), so `fsck --rebuild` brings back every
// fsynced file.
func TestRebuildAfterKill(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	want := map[string][]byte{}
	for i := range 6 {
		p := fmt.Sprintf("f%d", i)
		b := bytes.Repeat([]byte(fmt.Sprintf("file %d, fsynced before the kill\n", i)), 1000*(i+1))
		f, err := os.Create(filepath.Join(d.mnt, p))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil { // waits for the commit
			t.Fatal(err)
		}
		f.Close()
		want[p] = b
	}
	d.kill(t)
	live, _ := filepath.Glob(filepath.Join(store, "*.log"))
	linked, _ := filepath.Glob(filepath.Join(store, chunkstore.JournalDir, "*.log"))
	if len(live) == 0 || len(linked) == 0 {
		t.Fatalf("after kill -9: live logs %v, linked in the journal %v: want both", live, linked)
	}
	removeDatabase(t, store)
	// --json: one object, fsck's report with the rebuild's in it.
	out, code := run(t, "fsck", "--rebuild", "--json", store)
	var rep struct {
		Files   int `json:"files"`
		Rebuild *struct {
			Logs []string `json:"logs"`
		} `json:"rebuild"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&rep); code != 0 || err != nil || dec.More() {
		t.Fatalf("fsck --rebuild --json after kill -9 and the database removed: exit %d, %v (want one JSON object)\n%s", code, err, out)
	}
	if rep.Files != len(want) || rep.Rebuild == nil || len(rep.Rebuild.Logs) == 0 {
		t.Fatalf("fsck --rebuild --json: %d files (want %d), rebuild %+v\n%s", rep.Files, len(want), rep.Rebuild, out)
	}
	d = mount(t, store, filepath.Join(tmp, "mnt"))
	defer d.stop(t)
	for p, b := range want {
		if got, err := os.ReadFile(filepath.Join(d.mnt, p)); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s after the rebuild: %v (%d bytes, want %d)", p, err, len(got), len(b))
		}
	}
}
