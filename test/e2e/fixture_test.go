package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/test/memimage"
)

// fixtureImage is the content of dom1/c1 in testdata/store-v1.
var fixtureImage = memimage.Image{Seed: 1001, Pages: 300, Mix: memimage.DefaultMix}

// TestFixtureV1 mounts (a copy of) a store written by format version 1 and
// reads its files back: stores of an old format stay readable, and a format
// change must come with a new fixture. CKPTFS_WRITE_FIXTURE=1 regenerates it.
func TestFixtureV1(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join("testdata", "store-v1")
	if os.Getenv("CKPTFS_WRITE_FIXTURE") != "" {
		os.RemoveAll(src)
		d := mount(t, src, filepath.Join(tmp, "gen"))
		os.MkdirAll(filepath.Join(d.mnt, "dom1"), 0o755)
		os.WriteFile(filepath.Join(d.mnt, "dom1/c1"), fixtureImage.Bytes(), 0o644)
		os.Symlink("dom1/c1", filepath.Join(d.mnt, "latest"))
		d.stop(t)
		os.Remove(filepath.Join(src, "LOCK"))
	}
	store := filepath.Join(tmp, "store")
	if err := os.CopyFS(store, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, "fsck", store); code != 0 || !strings.Contains(out, "checked 1 files") {
		t.Fatalf("fsck of the v1 fixture: exit %d\n%s", code, out)
	}
	d := mount(t, store, filepath.Join(tmp, "mnt"), "--read-only")
	got, err := os.ReadFile(filepath.Join(d.mnt, "latest"))
	if err != nil || !bytes.Equal(got, fixtureImage.Bytes()) {
		t.Fatalf("fixture file: %v (%d bytes)", err, len(got))
	}
	if err := os.WriteFile(filepath.Join(d.mnt, "new"), []byte("x"), 0o644); err == nil {
		t.Fatal("write to a --read-only mount succeeded")
	}
	d.stop(t)

	// A read-write mount upgrades the store to the current format: the v1
	// extents get their chunk references, so gc after deleting a new copy
	// keeps the chunks the v1 file shares with it.
	d = mount(t, store, filepath.Join(tmp, "mnt"))
	if err := os.WriteFile(filepath.Join(d.mnt, "copy"), fixtureImage.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(d.mnt, "copy")); err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, "gc", store); code != 0 {
		t.Fatalf("gc of the upgraded fixture: exit %d\n%s", code, out)
	}
	if got, err := os.ReadFile(filepath.Join(d.mnt, "latest")); err != nil || !bytes.Equal(got, fixtureImage.Bytes()) {
		t.Fatalf("v1 file after gc of the upgraded store: %v (%d bytes)", err, len(got))
	}
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck of the upgraded fixture: exit %d\n%s", code, out)
	}
}
