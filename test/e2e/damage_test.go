package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// writeFiles writes n files of distinct random content into dir and
// returns them by name.
func writeFiles(t *testing.T, dir string, n int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("f%02d", i)
		data := memimage.Random(100_000+i*3000, uint64(1000+i))
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	return files
}

// filledStore mounts a new store, writes 30 files into it, and ends the
// daemon with end (stop: a clean unmount; kill: kill -9).
func filledStore(t *testing.T, end func(*daemon, *testing.T)) (store, mnt string, files map[string][]byte) {
	t.Helper()
	tmp := t.TempDir()
	store, mnt = filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	d := mount(t, store, mnt)
	files = writeFiles(t, mnt, 30)
	end(d, t)
	return store, mnt, files
}

// storeFiles lists the store's files with the given suffix, newest (by
// Pebble's file number) last.
func storeFiles(t *testing.T, store, suffix string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(store, "*"+suffix))
	sort.Strings(m)
	return m
}

func noTrace(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range []string{"goroutine ", "panic", ".go:", "<corruption detail carrier>"} {
		if strings.Contains(out, s) {
			t.Errorf("%s printed a stack trace or panic (%q):\n%s", what, s, out)
		}
	}
}

// TestWALDamageAfterCleanUnmount: after a clean unmount nothing committed
// depends on the write-ahead log, so damaging or truncating every log file
// loses nothing. A clean unmount leaves no log in the store's directory
// (format 5 keeps them, compressed, in the journal, which only a rebuild
// reads): the journal's logs are damaged instead.
func TestWALDamageAfterCleanUnmount(t *testing.T) {
	store, mnt, files := filledStore(t, (*daemon).stop)
	if live := storeFiles(t, store, ".log"); len(live) != 0 {
		t.Fatalf("log files left in the store's directory after a clean unmount: %v", live)
	}
	logs := storeFiles(t, filepath.Join(store, chunkstore.JournalDir), ".log.zst")
	if len(logs) == 0 {
		t.Fatal("no WAL files in the journal")
	}
	for i, l := range logs {
		st, _ := os.Stat(l)
		if i == len(logs)-1 {
			os.Truncate(l, st.Size()/3)
			continue
		}
		if st.Size() > 100 {
			f, _ := os.OpenFile(l, os.O_RDWR, 0)
			f.WriteAt([]byte{0xde, 0xad}, st.Size()/2)
			f.Close()
		}
	}
	out, code := run(t, "fsck", store)
	noTrace(t, "fsck", out)
	if code != 0 {
		t.Fatalf("fsck after WAL damage: exit %d\n%s", code, out)
	}
	mount(t, store, mnt)
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s after WAL damage: %v (%d bytes)", name, err, len(got))
		}
	}
}

// TestLostWritesDetected: files closed (durable) before kill -9 live in
// the WAL; truncating it loses some. The store notices (its durable
// marker is ahead): a writable mount is refused with exit 7 and one line,
// fsck exits 7 naming the log, a read-only mount serves what is intact,
// and fsck --repair accepts the store as it is.
func TestLostWritesDetected(t *testing.T) {
	store, mnt, files := filledStore(t, (*daemon).kill)
	logs := storeFiles(t, store, ".log")
	last := logs[len(logs)-1]
	st, _ := os.Stat(last)
	if err := os.Truncate(last, st.Size()/3); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, "mount", store, mnt)
	noTrace(t, "mount", out)
	if code != 7 || !strings.Contains(out, "lost writes") || !strings.Contains(out, "fsck") {
		t.Fatalf("writable mount of a store that lost writes: exit %d, want 7 and a plain message:\n%s", code, out)
	}
	if mounted(mnt) {
		t.Fatal("refused mount left a mount behind")
	}
	out, code = run(t, "fsck", store)
	noTrace(t, "fsck", out)
	if code != 7 || !strings.Contains(out, "lost-writes") || !strings.Contains(out, filepath.Base(last)) {
		t.Fatalf("fsck of a store that lost writes: exit %d, want 7 naming %s:\n%s", code, filepath.Base(last), out)
	}
	ro := mount(t, store, mnt, "--read-only")
	intact := 0
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err == nil && len(got) < len(want) && bytes.Equal(got, want[:len(got)]):
			// Its create survived, its close did not: the file as it was.
		case err != nil || !bytes.Equal(got, want):
			t.Fatalf("%s reads wrong on the read-only mount: %v (%d bytes of %d)", name, err, len(got), len(want))
		default:
			intact++
		}
	}
	ro.stop(t)
	t.Logf("%d of %d files intact after the WAL lost its end", intact, len(files))
	if intact == len(files) {
		t.Fatal("the truncation lost nothing: the test does not test")
	}
	if out, code := run(t, "fsck", "--repair", store); code != 7 || !strings.Contains(out, "accepted") {
		t.Fatalf("fsck --repair: exit %d (7: it reports the problem it repairs)\n%s", code, out)
	}
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck after --repair: exit %d\n%s", code, out)
	}
	mount(t, store, mnt)
}

// TestDamagedSegment: a truncated segment file (chunk records) never
// panics the daemon or fsck: reads of what it held fail with EIO,
// everything else reads exactly, and fsck exits 7 naming the affected
// files.
func TestDamagedSegment(t *testing.T) {
	store, mnt, files := filledStore(t, (*daemon).stop)
	segs := storeFiles(t, filepath.Join(store, chunkstore.SegmentDir), ".seg")
	if len(segs) == 0 {
		t.Fatal("no segment files")
	}
	st, _ := os.Stat(segs[0])
	os.Truncate(segs[0], st.Size()/2)
	out, code := run(t, "fsck", store)
	noTrace(t, "fsck", out)
	if code != 7 || !strings.Contains(out, "PROBLEM corrupt-chunk file=/f") {
		t.Fatalf("fsck of a truncated segment: exit %d, want 7 naming files:\n%s", code, out)
	}
	d := mount(t, store, mnt)
	bad := 0
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		switch {
		case errors.Is(err, syscall.EIO):
			bad++
		case err != nil || !bytes.Equal(got, want):
			t.Fatalf("%s: %v (wrong bytes are never returned)", name, err)
		}
	}
	if bad == 0 || bad == len(files) {
		t.Fatalf("%d of %d files unreadable", bad, len(files))
	}
	if _, err := os.Stat(filepath.Join(mnt, "f00")); err != nil {
		t.Fatalf("daemon gone after reading damage: %v", err)
	}
	d.stop(t)
	noTrace(t, "daemon", d.stderr.String())
}

// TestDamagedTable: flipped bytes in the table that holds the namespace:
// fsck exits 7 and goes on, a mount is refused with one line and exit 7
// and leaves nothing mounted.
func TestDamagedTable(t *testing.T) {
	store, mnt, _ := filledStore(t, (*daemon).stop)
	for _, s := range storeFiles(t, store, ".sst") {
		st, _ := os.Stat(s)
		f, _ := os.OpenFile(s, os.O_RDWR, 0)
		f.WriteAt([]byte("garbagegarbage"), st.Size()/2)
		f.Close()
	}
	out, code := run(t, "fsck", store)
	noTrace(t, "fsck", out)
	if code != 7 {
		t.Fatalf("fsck of damaged tables: exit %d, want 7\n%s", code, out)
	}
	if !strings.Contains(out, "PROBLEM") && !strings.Contains(out, "damaged: pebble: file ") {
		t.Errorf("fsck of damaged tables names no problem and no file:\n%s", out)
	}
	out, code = run(t, "mount", store, mnt)
	noTrace(t, "mount", out)
	if code != 7 {
		t.Fatalf("mount of damaged tables: exit %d, want 7\n%s", code, out)
	}
	if mounted(mnt) {
		exec.Command("umount", "-l", mnt).Run()
		t.Fatal("refused mount left a mount behind")
	}
}

// TestDurableAfterKill: what was reported done survives kill -9: a rename
// made durable by fsync of its directory, a mass rm once the mount's sync
// interval has passed, and every generation xen receive reported
// published.
func TestDurableAfterKill(t *testing.T) {
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	d := mount(t, store, mnt)
	writeFiles(t, mnt, 3)
	if err := os.Mkdir(filepath.Join(mnt, "many"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		os.WriteFile(filepath.Join(mnt, "many", fmt.Sprint(i)), []byte{byte(i)}, 0o644)
	}
	for i := 0; i < 300; i++ {
		os.Remove(filepath.Join(mnt, "many", fmt.Sprint(i)))
	}
	time.Sleep(2500 * time.Millisecond) // two sync intervals
	if err := os.Rename(filepath.Join(mnt, "f00"), filepath.Join(mnt, "renamed")); err != nil {
		t.Fatal(err)
	}
	dir, _ := os.Open(mnt)
	if err := dir.Sync(); err != nil {
		t.Fatalf("fsync of a directory: %v", err)
	}
	dir.Close()
	g := xentest.Guest{Name: "web", UUID: "6c9d3a1e-0000-4000-8000-0000000dur01", Pages: 2048, VCPUs: 1, Seed: 8, Dirty: 0.02}
	var stream bytes.Buffer
	g.WriteRemus(&stream, 3)
	_, errOut, _ := receive(t, stream.Bytes(), "--into", filepath.Join(mnt, "guests/web"))
	published := strings.Count(errOut, " published (")
	d.kill(t)

	mount(t, store, mnt)
	if _, err := os.Stat(filepath.Join(mnt, "renamed")); err != nil {
		t.Errorf("rename fsync-ed before kill -9 is gone: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "f00")); err == nil {
		t.Errorf("renamed file came back under its old name")
	}
	if left, _ := os.ReadDir(filepath.Join(mnt, "many")); len(left) != 0 {
		t.Errorf("%d of 300 removed files came back after kill -9", len(left))
	}
	gens, _ := os.ReadDir(filepath.Join(mnt, "guests/web"))
	if published == 0 || len(gens) != published {
		t.Errorf("xen receive reported %d generations published, %d survived kill -9", published, len(gens))
	}
	for i, e := range gens {
		got, _ := os.ReadFile(filepath.Join(mnt, "guests/web", e.Name()))
		c := g
		c.Gen = i
		if !bytes.Equal(got, c.Bytes()) {
			t.Errorf("generation %s differs after kill -9", e.Name())
		}
	}
}
