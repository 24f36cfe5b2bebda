package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// fixtureImage is the content of dom1/c1 in testdata/store-v1.
var fixtureImage = memimage.Image{Seed: 1001, Pages: 300, Mix: memimage.DefaultMix}

// fixtureGuest's generations 0, 2 and 3 are dom1/c0, c2 and c3 in
// testdata/store-v2 (page mode); c1 was written and deleted before a gc.
func fixtureGuest(gen int) []byte {
	return xentest.Guest{Name: "fix", UUID: "f1c70000-0000-4000-8000-0000000000f2", Pages: 600, VCPUs: 1, Seed: 2002, Gen: gen, Dirty: 0.1}.Bytes()
}

// fixtureStore is a store written by an old format version, what it holds
// and how it was made (CKPTFS_WRITE_FIXTURE=1 regenerates one, with the
// code of that version only).
type fixtureStore struct {
	name  string
	files map[string][]byte // path -> content, read through the link "latest"
	write func(t *testing.T, mnt string)
}

var fixtureStores = []fixtureStore{
	{
		name:  "store-v1",
		files: map[string][]byte{"latest": fixtureImage.Bytes(), "dom1/c1": fixtureImage.Bytes()},
		write: func(t *testing.T, mnt string) {
			os.MkdirAll(filepath.Join(mnt, "dom1"), 0o755)
			os.WriteFile(filepath.Join(mnt, "dom1/c1"), fixtureImage.Bytes(), 0o644)
			os.Symlink("dom1/c1", filepath.Join(mnt, "latest"))
		},
	},
	{
		// Written by format version 2 (ckptfs ad4de15) with --xen-pages:
		// page-mode generations of one guest, one deleted and collected,
		// a plain file and symlinks.
		name: "store-v2",
		files: map[string][]byte{
			"dom1/c0": fixtureGuest(0), "dom1/c2": fixtureGuest(2), "dom1/c3": fixtureGuest(3),
			"latest": fixtureGuest(3), "notes.txt": []byte(strings.Repeat("checkpoint notes\n", 5000)),
		},
		write: writePageFixture,
	},
	{
		// Written by format version 3 (ckptfs 00813fb) with --xen-pages,
		// as store-v2 is: page entries, by-generation keys and a
		// reference key per page, chunk bytes in segments.
		name: "store-v3",
		files: map[string][]byte{
			"dom1/c0": fixtureGuest(0), "dom1/c2": fixtureGuest(2), "dom1/c3": fixtureGuest(3),
			"latest": fixtureGuest(3), "notes.txt": []byte(strings.Repeat("checkpoint notes\n", 5000)),
		},
		write: writePageFixture,
	},
	{
		// Written by format version 4 (ckptfs f1bd5c2) with --xen-pages,
		// as store-v3 is: page map blocks, no journal in segments/.
		name: "store-v4",
		files: map[string][]byte{
			"dom1/c0": fixtureGuest(0), "dom1/c2": fixtureGuest(2), "dom1/c3": fixtureGuest(3),
			"latest": fixtureGuest(3), "notes.txt": []byte(strings.Repeat("checkpoint notes\n", 5000)),
		},
		write: writePageFixture,
	},
}

// writePageFixture writes store-v2's and store-v3's files: page-mode
// generations of one guest (one deleted), a plain file and a symlink.
func writePageFixture(t *testing.T, mnt string) {
	os.MkdirAll(filepath.Join(mnt, "dom1"), 0o755)
	for g := 0; g < 4; g++ {
		if err := os.WriteFile(filepath.Join(mnt, "dom1", "c"+string(rune('0'+g))), fixtureGuest(g), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(mnt, "notes.txt"), []byte(strings.Repeat("checkpoint notes\n", 5000)), 0o644)
	os.Remove(filepath.Join(mnt, "dom1/c1"))
	os.Symlink("dom1/c3", filepath.Join(mnt, "latest"))
}

// TestFixtures mounts (a copy of) each store written by an old format
// version and reads its files back: stores of an old format stay readable
// read-only, a read-write mount upgrades them in place, and gc and fsck of
// the upgraded store keep every file. A format change must come with a new
// fixture.
func TestFixtures(t *testing.T) {
	for _, fx := range fixtureStores {
		t.Run(fx.name, func(t *testing.T) { testFixture(t, fx) })
	}
}

func testFixture(t *testing.T, fx fixtureStore) {
	tmp := t.TempDir()
	src := filepath.Join("testdata", fx.name)
	if os.Getenv("CKPTFS_WRITE_FIXTURE") == fx.name {
		os.RemoveAll(src)
		d := mount(t, src, filepath.Join(tmp, "gen"), "--xen-pages")
		fx.write(t, d.mnt)
		d.stop(t)
		if out, code := run(t, "gc", src); code != 0 {
			t.Fatalf("gc: %s", out)
		}
		os.Remove(filepath.Join(src, "LOCK"))
	}
	store := filepath.Join(tmp, "store")
	if err := os.CopyFS(store, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	n := len(fx.files) - 1 // "latest" is a link
	check := func(what, mnt string) {
		t.Helper()
		for p, want := range fx.files {
			got, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: %v (%d bytes, want %d)", what, p, err, len(got), len(want))
			}
		}
	}
	if out, code := run(t, "fsck", store); code != 0 || !strings.Contains(out, "checked "+strconv.Itoa(n)+" files") {
		t.Fatalf("fsck of %s: exit %d\n%s", fx.name, code, out)
	}
	d := mount(t, store, filepath.Join(tmp, "mnt"), "--read-only")
	check("read-only mount", d.mnt)
	if err := os.WriteFile(filepath.Join(d.mnt, "new"), []byte("x"), 0o644); err == nil {
		t.Fatal("write to a --read-only mount succeeded")
	}
	d.stop(t)

	// A read-write mount upgrades the store to the current format in
	// place; gc after deleting a new copy keeps what the old files share
	// with it.
	d = mount(t, store, filepath.Join(tmp, "mnt"))
	check("upgraded store", d.mnt)
	for p, want := range fx.files {
		cp := filepath.Join(d.mnt, "copy-"+filepath.Base(p))
		if err := os.WriteFile(cp, want, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(cp); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := run(t, "gc", store); code != 0 {
		t.Fatalf("gc of the upgraded %s: exit %d\n%s", fx.name, code, out)
	}
	check("upgraded store after gc", d.mnt)
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 || !strings.Contains(out, "checked "+strconv.Itoa(n)+" files") {
		t.Fatalf("fsck of the upgraded %s: exit %d\n%s", fx.name, code, out)
	}
	d = mount(t, store, filepath.Join(tmp, "mnt"), "--read-only")
	check("upgraded store, remounted", d.mnt)
	d.stop(t)

	// The upgrade gave the store a journal: its database comes back from
	// segments/ alone.
	removeDatabase(t, store)
	if out, code := run(t, "fsck", "--rebuild", store); code != 0 || !strings.Contains(out, "checked "+strconv.Itoa(n)+" files") {
		t.Fatalf("fsck --rebuild of the upgraded %s without its database: exit %d\n%s", fx.name, code, out)
	}
	d = mount(t, store, filepath.Join(tmp, "mnt"), "--read-only")
	check("upgraded store, rebuilt", d.mnt)
	d.stop(t)
}
