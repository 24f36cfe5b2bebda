package e2e

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

const gcPages, gcDirty = 8192, 0.2

func gcGuest(gen int) xentest.Guest {
	return xentest.Guest{Name: "web", UUID: "6c9d3a1e-0000-4000-8000-00000000gc01", Pages: gcPages, VCPUs: 2, Seed: 42, Gen: gen, Dirty: gcDirty}
}

// pageSet maps the content hash of every non-zero page of img to its
// stored (compressed) size.
func pageSet(img []byte) map[[32]byte]int64 {
	out := map[[32]byte]int64{}
	xen.NewScanner(xen.Handler{Page: func(p xen.Page) {
		pg := img[p.Off : p.Off+xen.PageSize]
		if !chunkstore.IsZero(pg) {
			out[sha256.Sum256(pg)] = int64(chunkstore.EncodedLen(chunkstore.CodecS2, pg))
		}
	}}).Write(img)
	return out
}

func storeStats(t *testing.T, store string) (stored int64, chunks int64) {
	t.Helper()
	out, code := run(t, "stats", "--json", store)
	if code != 0 {
		t.Fatalf("stats: exit %d\n%s", code, out)
	}
	var s struct {
		StoredBytes int64 `json:"stored_bytes"`
		Chunks      int64 `json:"chunks"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	return s.StoredBytes, s.Chunks
}

// du sums the sizes of the files below dir; without WAL files (*.log) if
// noWAL. Pebble's WAL is a bounded overhead (recycled log files, a few
// memtables' worth) that gc does not shrink.
func du(t *testing.T, dir string, noWAL bool) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if noWAL && strings.HasSuffix(p, ".log") || filepath.Base(p) == chunkstore.ReserveFile {
			return nil // the reserve file is space kept free for gc, not data
		}
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// pageMount mounts a fresh store in page mode with a directory "web".
func pageMount(t *testing.T) (d *daemon, store, dir string) {
	tmp := t.TempDir()
	store = filepath.Join(tmp, "store")
	d = mount(t, store, filepath.Join(tmp, "mnt"), "--xen-pages")
	dir = filepath.Join(d.mnt, "web")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return d, store, dir
}

func checkGens(t *testing.T, dir string, gens []int) {
	t.Helper()
	for _, g := range gens {
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("gen%02d", g)))
		if err != nil || !bytes.Equal(got, gcGuest(g).Bytes()) {
			t.Fatalf("gen%02d: %v (%d bytes)", g, err, len(got))
		}
	}
}

// TestGCThroughMount: 10 generations of a guest in page mode; delete the
// first, a middle and the last through the mount; `ckptfs gc` (online,
// through the daemon) brings stored bytes down by the deleted generations'
// unique pages, and du of the store down too; every other generation reads
// back byte-exact; fsck is clean with nothing unreferenced. Then a policy:
// --dry-run changes nothing, --keep-last 3 keeps the 3 newest.
func TestGCThroughMount(t *testing.T) {
	d, store, dir := pageMount(t)
	sets := map[int]map[[32]byte]int64{}
	for g := 0; g < 10; g++ {
		img := gcGuest(g).Bytes()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("gen%02d", g)), img, 0o644); err != nil {
			t.Fatal(err)
		}
		sets[g] = pageSet(img)
		// Distinct mtimes for the policy below.
		mt := time.Date(2026, 11, 22, 10, g, 0, 0, time.UTC)
		os.Chtimes(filepath.Join(dir, fmt.Sprintf("gen%02d", g)), mt, mt)
	}
	deleted, kept := []int{0, 4, 9}, []int{1, 2, 3, 5, 6, 7, 8}
	var unique int64 // stored bytes of pages only the deleted generations have
	seen := map[[32]byte]bool{}
	for _, g := range deleted {
		for h, n := range sets[g] {
			inKept := false
			for _, k := range kept {
				if _, ok := sets[k][h]; ok {
					inKept = true
					break
				}
			}
			if !inKept && !seen[h] {
				unique += n
				seen[h] = true
			}
		}
	}
	// A gc with nothing to do first: it flushes and compacts, so that du
	// compares like with like.
	if out, code := run(t, "gc", store); code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	stored0, _ := storeStats(t, store)
	for _, g := range deleted {
		if err := os.Remove(filepath.Join(dir, fmt.Sprintf("gen%02d", g))); err != nil {
			t.Fatal(err)
		}
	}
	du0, data0 := du(t, store, false), du(t, store, true)
	out, code := run(t, "gc", store)
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s", code, out)
	}
	stored1, _ := storeStats(t, store)
	du1, data1 := du(t, store, false), du(t, store, true)
	t.Logf("gc:\n%sstored %d -> %d (-%d); unique pages of the deleted generations %d; du %d -> %d (-%d), without WAL %d -> %d (-%d)",
		out, stored0, stored1, stored0-stored1, unique, du0, du1, du0-du1, data0, data1, data0-data1)
	if drop := stored0 - stored1; float64(drop) < 0.9*float64(unique) || float64(drop) > 1.1*float64(unique)+256<<10 {
		t.Errorf("stored bytes dropped by %d, want %d within 10%%", drop, unique)
	}
	if os.Getenv("CKPTFS_DEBUG_DU") != "" {
		ents, _ := os.ReadDir(store)
		for _, e := range ents {
			fi, _ := e.Info()
			t.Logf("%s %d", e.Name(), fi.Size())
		}
	}
	// Pebble rewrites the blob files that held deleted chunks (gc waits for
	// that), so the data files shrink by the unique bytes; the WAL does not.
	if drop := data0 - data1; float64(drop) < 0.9*float64(unique) || float64(drop) > 1.1*float64(unique)+1<<20 {
		t.Errorf("store files without WAL dropped by %d, want %d within 10%%", drop, unique)
	}
	if du1 >= du0 {
		t.Errorf("du of the store did not drop: %d -> %d", du0, du1)
	}
	checkGens(t, dir, kept)
	out, code = run(t, "fsck", "--json", store)
	if code != 0 || !strings.Contains(out, `"unreferenced_chunks":0`) {
		t.Fatalf("fsck after gc: exit %d\n%s", code, out)
	}

	out, code = run(t, "gc", "--keep-last", "3", "--dry-run", store)
	if code != 0 || strings.Count(out, "would expire web/") != 4 || !strings.Contains(out, "would free") ||
		!strings.Contains(out, "(guest web (6c9d3a1e-0000-4000-8000-00000000gc01), uid ") {
		t.Fatalf("gc --dry-run (each image with its guest's name): exit %d\n%s", code, out)
	}
	checkGens(t, dir, kept)
	var dry, real struct {
		Expired   []json.RawMessage `json:"expired"`
		WouldFree int64             `json:"would_free"`
		Result    struct {
			StoredFreed int64 `json:"stored_bytes_freed"`
		} `json:"result"`
	}
	out, code = run(t, "gc", "--keep-last", "3", "--dry-run", "--json", store)
	if code != 0 || json.Unmarshal([]byte(out), &dry) != nil || len(dry.Expired) != 4 {
		t.Fatalf("gc --dry-run --json: exit %d\n%s", code, out)
	}
	out, code = run(t, "gc", "--keep-last", "3", "--json", store)
	if code != 0 || json.Unmarshal([]byte(out), &real) != nil || len(real.Expired) != 4 {
		t.Fatalf("gc --keep-last 3: exit %d\n%s", code, out)
	}
	// The dry run's figure is what the real run then frees.
	t.Logf("dry run: would free %d; gc freed %d", dry.WouldFree, real.Result.StoredFreed)
	if f, w := float64(real.Result.StoredFreed), float64(dry.WouldFree); w < 0.9*f || w > 1.1*f || f == 0 {
		t.Errorf("dry run said %d bytes would be freed, gc freed %d", dry.WouldFree, real.Result.StoredFreed)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("after --keep-last 3: %d files", len(ents))
	}
	checkGens(t, dir, []int{6, 7, 8})
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck: exit %d\n%s", code, out)
	}
}

// TestKill9DuringGC: kill -9 of an offline gc at random points, over
// several seeds. Each time fsck passes and the surviving generations read
// back byte-exact; the last gc finishes the job (nothing unreferenced).
func TestKill9DuringGC(t *testing.T) {
	d, store, dir := pageMount(t)
	mnt := d.mnt
	for g := 0; g < 8; g++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("gen%02d", g)), gcGuest(g).Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []int{0, 2, 3, 7} {
		os.Remove(filepath.Join(dir, fmt.Sprintf("gen%02d", g)))
	}
	d.stop(t)
	rng := rand.New(rand.NewPCG(7, 9))
	for seed := 0; seed < 5; seed++ {
		cmd := exec.Command(bin, "gc", store)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		if out, code := run(t, "fsck", store); code != 0 {
			t.Fatalf("seed %d: fsck after kill -9 of gc: exit %d\n%s", seed, code, out)
		}
	}
	if out, code := run(t, "gc", store); code != 0 {
		t.Fatalf("final gc: exit %d\n%s", code, out)
	}
	if out, code := run(t, "fsck", "--json", store); code != 0 || !strings.Contains(out, `"unreferenced_chunks":0`) {
		t.Fatalf("fsck after the final gc: exit %d\n%s", code, out)
	}
	d2 := mount(t, store, mnt)
	checkGens(t, filepath.Join(d2.mnt, "web"), []int{1, 4, 5, 6})
}

// TestGCGivesBackDisk: a gc that frees bytes sharing a segment with live
// ones says plainly that they stay on disk, why and how to get them back;
// `gc --compact` then gives back at least 80% of what it freed (du of the
// store after unmount).
func TestGCGivesBackDisk(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	big := make([]byte, 40<<20)
	small := make([]byte, 3<<20)
	crand.Read(big)
	crand.Read(small)
	if err := os.WriteFile(filepath.Join(d.mnt, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.mnt, "small"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d.mnt, "small")); err != nil {
		t.Fatal(err)
	}
	d.stop(t)
	du := func() int64 {
		out, err := exec.Command("du", "-sb", store).Output()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		return n
	}
	out, code := run(t, "gc", store)
	if code != 0 || !strings.Contains(out, "of freed bytes stay on disk in 1 segments: less than 10% of each is freed") || !strings.Contains(out, "ckptfs gc --compact") {
		t.Fatalf("gc of bytes sharing a segment: exit %d\n%s", code, out)
	}
	before := du()
	out, code = run(t, "gc", "--compact", store)
	if code != 0 || strings.Contains(out, "stay on disk") {
		t.Fatalf("gc --compact: exit %d\n%s", code, out)
	}
	after := du()
	t.Logf("du %d -> %d after gc --compact (3 MiB freed)", before, after)
	if before-after < 3<<20*8/10 {
		t.Fatalf("gc --compact gave back %d bytes of the 3 MiB freed", before-after)
	}
	d2 := mount(t, store, filepath.Join(tmp, "mnt2"))
	if got, err := os.ReadFile(filepath.Join(d2.mnt, "big")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("big after the rewrite: %v", err)
	}
}

// TestStatsAgreesWithDu: while a store is mounted (its reserve file and
// write-ahead log on disk) and after, `stats` says what du says.
func TestStatsAgreesWithDu(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	data := make([]byte, 8<<20)
	crand.Read(data)
	os.WriteFile(filepath.Join(d.mnt, "f"), data, 0o644)
	time.Sleep(1500 * time.Millisecond) // the mount's periodic sync
	check := func(when string) {
		t.Helper()
		out, err := exec.Command("du", "-sb", store).Output()
		if err != nil {
			t.Fatal(err)
		}
		du, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		js, code := run(t, "stats", "--json", store)
		var st struct {
			Disk int64 `json:"disk_bytes"`
		}
		if code != 0 || json.Unmarshal([]byte(js), &st) != nil {
			t.Fatalf("stats: exit %d\n%s", code, js)
		}
		if diff := du - st.Disk; diff < 0 || diff > 1<<20 {
			t.Fatalf("%s: du says %d bytes, stats %d", when, du, st.Disk)
		}
	}
	check("mounted")
	d.stop(t)
	check("after unmount")
}
