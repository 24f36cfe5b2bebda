package index

import (
	"errors"
	"fmt"
	"reflect"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
)

func TestInodeEncoding(t *testing.T) {
	for _, in := range []Inode{
		{Ino: 1, Mode: syscall.S_IFDIR | 0o755, Nlink: 2},
		{Ino: 7, Mode: syscall.S_IFREG | 0o600, UID: 1000, GID: 100, Nlink: 1, Size: 1 << 40, Ver: 99, Atime: -5, Mtime: 1e18, Ctime: 3},
		{Ino: 8, Mode: syscall.S_IFLNK | 0o777, Nlink: 1, Size: 5, Target: "a/b/c"},
	} {
		got, err := decodeInode(in.Ino, encodeInode(&in))
		if err != nil || !reflect.DeepEqual(got, in) {
			t.Fatalf("round trip %+v: %+v %v", in, got, err)
		}
	}
	if _, err := decodeInode(1, []byte{1, 2, 3}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short inode: %v", err)
	}
}

func TestExtentEncoding(t *testing.T) {
	e := Extent{Off: 1 << 33, Len: 4096, ChunkOff: 100, ID: chunkstore.Sum([]byte("x"))}
	got, err := DecodeExtent(extentKey(5, 6, e.Off), encodeExtentValue(e))
	if err != nil || got != e {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range [][2][]byte{
		{extentKey(5, 6, 0)[:10], encodeExtentValue(e)},
		{extentKey(5, 6, 0), encodeExtentValue(e)[:5]},
		{extentKey(5, 6, 0), encodeExtentValue(Extent{Len: 0, ID: e.ID})},
		{extentKey(5, 6, 0), encodeExtentValue(Extent{Len: chunkstore.MaxChunkSize, ChunkOff: 1, ID: e.ID})},
	} {
		if _, err := DecodeExtent(bad[0], bad[1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("bad extent %x/%x: %v", bad[0], bad[1], err)
		}
	}
}

func FuzzDecodeExtent(f *testing.F) {
	f.Add(extentKey(1, 2, 3), encodeExtentValue(Extent{Off: 3, Len: 10, ID: chunkstore.Sum(nil)}))
	f.Add(extentKey(1, 2, 3), encodeExtentValue(Extent{Off: 3, Len: 3 * PageSize, ChunkOff: 100,
		Run: &PageRun{Lin: 4, Gen: 9, Floor: 7, Ranges: []PfnRange{{0x1000, 2}, {0xff000, 1}}}}))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := DecodeExtent(k, v)
		if err == nil {
			if e.Run != nil {
				if e.Len <= 0 || e.ChunkOff < 0 || e.ChunkOff+e.Len > e.Run.Pages()*PageSize || e.Run.Pages() > MaxRunPages {
					t.Fatalf("decoded an invalid page run %+v %+v", e, *e.Run)
				}
			} else if e.Len <= 0 || e.Off < 0 || e.ChunkOff < 0 || e.ChunkOff+e.Len > chunkstore.MaxChunkSize {
				t.Fatalf("decoded an invalid extent %+v", e)
			}
			back, err := DecodeExtent(extentKey(1, 2, e.Off), encodeExtentValue(e))
			if err != nil || !reflect.DeepEqual(back, e) {
				t.Fatalf("re-encode: %+v %v", back, err)
			}
		}
	})
}

func FuzzDecodeInode(f *testing.F) {
	f.Add(encodeInode(&Inode{Ino: 3, Mode: syscall.S_IFLNK, Target: "t"}))
	f.Fuzz(func(t *testing.T, v []byte) {
		in, err := decodeInode(3, v)
		if err == nil {
			if in.Size < 0 {
				t.Fatal("negative size decoded")
			}
			back, err := decodeInode(3, encodeInode(&in))
			if err != nil || !reflect.DeepEqual(back, in) {
				t.Fatalf("re-encode: %v", err)
			}
		}
	})
}

func TestNamespace(t *testing.T) {
	x, _ := TestIndex(t, nil)
	file := func(mode uint32) Inode { return Inode{Mode: syscall.S_IFREG | mode} }
	dir := Inode{Mode: syscall.S_IFDIR | 0o755}
	a, err := x.Create(RootIno, "a", dir)
	if err != nil {
		t.Fatal(err)
	}
	f1, _ := x.Create(a.Ino, "f1", file(0o644))
	f2, _ := x.Create(a.Ino, "f2", file(0o600))
	b, _ := x.Create(RootIno, "b", dir)

	for _, tc := range []struct {
		name string
		err  error
		op   func() error
	}{
		{"create existing", ErrExist, func() error { _, err := x.Create(a.Ino, "f1", file(0)); return err }},
		{"create in a file", ErrNotDir, func() error { _, err := x.Create(f1.Ino, "x", file(0)); return err }},
		{"lookup missing", ErrNotFound, func() error { _, err := x.Lookup(a.Ino, "nope"); return err }},
		{"unlink a directory", ErrIsDir, func() error { _, err := x.Unlink(RootIno, "a", 1); return err }},
		{"rmdir a file", ErrNotDir, func() error { return x.Rmdir(a.Ino, "f1", 1) }},
		{"rmdir non-empty", ErrNotEmpty, func() error { return x.Rmdir(RootIno, "a", 1) }},
		{"rename file over dir", ErrIsDir, func() error { _, err := x.Rename(a.Ino, "f1", RootIno, "b", false, 1); return err }},
		{"rename dir over file", ErrNotDir, func() error { _, err := x.Rename(RootIno, "b", a.Ino, "f1", false, 1); return err }},
		{"rename noreplace", ErrExist, func() error { _, err := x.Rename(a.Ino, "f1", a.Ino, "f2", true, 1); return err }},
		{"rename missing", ErrNotFound, func() error { _, err := x.Rename(a.Ino, "zz", a.Ino, "f2", false, 1); return err }},
	} {
		if err := tc.op(); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	// rename over an existing file: the replaced inode becomes an orphan
	replaced, err := x.Rename(a.Ino, "f1", a.Ino, "f2", false, 2)
	if err != nil || replaced.Ino != f2.Ino || replaced.Nlink != 0 {
		t.Fatalf("rename over: %+v %v", replaced, err)
	}
	if got, _ := x.Lookup(a.Ino, "f2"); got.Ino != f1.Ino {
		t.Fatalf("f2 is inode %d, want %d", got.Ino, f1.Ino)
	}
	// move a directory: link counts follow
	if _, err := x.Rename(RootIno, "b", a.Ino, "b", false, 3); err != nil {
		t.Fatal(err)
	}
	root, _ := x.Get(RootIno)
	ad, _ := x.Get(a.Ino)
	if root.Nlink != 3 || ad.Nlink != 3 {
		t.Fatalf("nlink root %d (want 3) a %d (want 3)", root.Nlink, ad.Nlink)
	}
	ents, _ := x.ReadDir(a.Ino)
	if fmt.Sprint(ents) != fmt.Sprintf("[{b %d %d} {f2 %d %d}]", b.Ino, b.Mode, f1.Ino, f1.Mode) {
		t.Fatalf("readdir: %v", ents)
	}
	// orphans are purged at the next open
	if err := x.Rmdir(a.Ino, "b", 4); err != nil {
		t.Fatal(err)
	}
	x2, err := Open(x.db, 5, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x2.Get(f2.Ino); !errors.Is(err, ErrNotFound) {
		t.Fatalf("orphan survived reopen: %v", err)
	}
}

// TestPunch covers extent splitting, table-driven over the resulting map.
func TestPunch(t *testing.T) {
	id := chunkstore.Sum([]byte("c"))
	base := []Extent{{Off: 0, Len: 100, ID: id}, {Off: 100, Len: 100, ID: id}, {Off: 300, Len: 50, ID: id}}
	for _, tc := range []struct {
		from, to int64
		want     string
	}{
		{0, 10, "[10+90@10 100+100@0 300+50@0]"},
		{50, 150, "[0+50@0 150+50@50 300+50@0]"},
		{20, 30, "[0+20@0 30+70@30 100+100@0 300+50@0]"},
		{0, 1000, "[]"},
		{200, 300, "[0+100@0 100+100@0 300+50@0]"},
		{340, 1 << 62, "[0+100@0 100+100@0 300+40@0]"},
	} {
		t.Run(fmt.Sprint(tc.from, "-", tc.to), func(t *testing.T) {
			x, _ := TestIndex(t, nil)
			b := x.db.NewBatch()
			for _, e := range base {
				x.AddExtent(b, 9, 1, e)
			}
			b.Commit(pebble.Sync)
			b = x.db.NewBatch()
			if err := x.Punch(b, 9, 1, tc.from, tc.to); err != nil {
				t.Fatal(err)
			}
			b.Commit(pebble.Sync)
			var got []string
			x.WalkExtents(9, 1, func(e Extent) error {
				got = append(got, fmt.Sprintf("%d+%d@%d", e.Off, e.Len, e.ChunkOff))
				return nil
			})
			if s := fmt.Sprint(got); s != tc.want && !(len(got) == 0 && tc.want == "[]") {
				t.Fatalf("got %s, want %s", s, tc.want)
			}
		})
	}
}

// TestStagedVersionDroppedOnOpen: a version staged but never committed (a
// crash mid-write) is deleted by Open; the committed one stays.
func TestStagedVersionDroppedOnOpen(t *testing.T) {
	x, _ := TestIndex(t, nil)
	in, _ := x.Create(RootIno, "f", Inode{Mode: syscall.S_IFREG | 0o644})
	id := chunkstore.Sum([]byte("c"))
	b := x.db.NewBatch()
	x.AddExtent(b, in.Ino, in.Ver, Extent{Off: 0, Len: 10, ID: id})
	b.Commit(pebble.Sync)
	if _, err := x.Commit(in.Ino, in.Ver, 10, 1); err != nil {
		t.Fatal(err)
	}
	b = x.db.NewBatch()
	ver, _ := x.Stage(b, in.Ino, in.Ver, 10)
	x.AddExtent(b, in.Ino, ver, Extent{Off: 10, Len: 10, ID: id})
	b.Commit(pebble.Sync)
	x2, err := Open(x.db, 2, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ext, _ := x2.Extents(in.Ino, ver, 0, 10); len(ext) != 0 {
		t.Fatalf("staged version survived: %v", ext)
	}
	if ext, _ := x2.Extents(in.Ino, in.Ver, 0, 10); len(ext) != 1 {
		t.Fatalf("committed version lost: %v", ext)
	}
}

// TestStagingNamesDroppedOnOpen: a file left under a staging name (a
// generation whose build a crash cut short) is removed by Open, with its
// extents and references; other names, even alike, stay.
func TestStagingNamesDroppedOnOpen(t *testing.T) {
	x, _ := TestIndex(t, nil)
	dir, _ := x.Create(RootIno, "guest", Inode{Mode: syscall.S_IFDIR | 0o755})
	id := chunkstore.Sum([]byte("c"))
	var inos []uint64
	for _, name := range []string{StagingPrefix + "000003-t", ".ckptfs-staging", "000002-t"} {
		in, err := x.Create(dir.Ino, name, Inode{Mode: syscall.S_IFREG | 0o444})
		if err != nil {
			t.Fatal(err)
		}
		b := x.db.NewBatch()
		x.AddExtent(b, in.Ino, in.Ver, Extent{Off: 0, Len: 10, ID: id})
		b.Commit(pebble.Sync)
		inos = append(inos, in.Ino)
	}
	x2, err := Open(x.db, 2, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := x2.ReadDir(dir.Ino)
	if got := fmt.Sprint(ents); len(ents) != 2 || ents[0].Name != ".ckptfs-staging" || ents[1].Name != "000002-t" {
		t.Fatalf("after Open: %s", got)
	}
	if _, err := x2.Get(inos[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the staged file's inode: %v, want gone", err)
	}
	n := 0
	x2.InodeRefs(inos[0], func(chunkstore.ID, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("the staged file's %d references survived", n)
	}
}

// TestPageRunEncoding: a run round-trips; damaged runs are ErrCorrupt.
func TestPageRunEncoding(t *testing.T) {
	e := Extent{Off: 8192, Len: 2*PageSize + 5, ChunkOff: 7, Run: &PageRun{Lin: 1, Gen: 5, Floor: 2, Ranges: []PfnRange{{10, 2}, {40, 1}}}}
	got, err := DecodeExtent(extentKey(5, 6, e.Off), encodeExtentValue(e))
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if p := e.Run.Pfns(nil, 0, 3); !reflect.DeepEqual(p, []uint64{10, 11, 40}) {
		t.Fatalf("pfns %v", p)
	}
	v := encodeExtentValue(e)
	for name, bad := range map[string][]byte{
		"truncated":       v[:len(v)-1],
		"trailing":        append(append([]byte(nil), v...), 0),
		"len past pages":  encodeExtentValue(Extent{Len: 4 * PageSize, Run: e.Run}),
		"floor above gen": encodeExtentValue(Extent{Len: 1, Run: &PageRun{Gen: 1, Floor: 2, Ranges: e.Run.Ranges}}),
		"no ranges":       encodeExtentValue(Extent{Len: 1, Run: &PageRun{Gen: 1}}),
	} {
		if _, err := DecodeExtent(extentKey(5, 6, 0), bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
