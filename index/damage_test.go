package index

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// TestDamagedTableCostsWhatItHeld: a store whose database has one
// truncated table (a bad sector, a file cut short) opens read-only past it
// (a writable open still refuses it); every directory entry the other
// tables hold is walked and looked up, the walk says which keys it
// skipped, and only the names that table held are lost.
func TestDamagedTableCostsWhatItHeld(t *testing.T) {
	for _, how := range []string{"truncated", "deleted"} {
		t.Run(how, func(t *testing.T) { testDamagedTable(t, how) })
	}
}

func testDamagedTable(t *testing.T, how string) {
	dir := t.TempDir()
	o := chunkstore.DefaultOptions()
	o.TableBytes = 16 << 10 // many small tables
	cs, err := chunkstore.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	x, err := Open(cs.DB(), 1, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	const files = 3000
	for i := 0; i < files; i++ {
		if _, err := x.Create(RootIno, fmt.Sprintf("file-%05d", i), Inode{Mode: syscall.S_IFREG | 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := cs.DB().Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	// A table in the middle of the directory entries, not the root's.
	levels, err := cs.DB().SSTables()
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	var lost chunkstore.KeyRange
	for _, l := range levels {
		for _, tb := range l {
			lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey
			if victim == "" && lo[0] == prefixDirent && hi[0] == prefixDirent && bytes.Compare(lo, direntKey(RootIno, "file-00100")) > 0 {
				victim = filepath.Join(dir, fmt.Sprintf("%s.sst", tb.FileNum))
				lost = chunkstore.KeyRange{Smallest: bytes.Clone(lo), Largest: bytes.Clone(hi)}
			}
		}
	}
	if victim == "" {
		t.Fatalf("no table holds only directory entries: %v", levels)
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(victim)
	if err != nil {
		t.Fatal(err)
	}
	if how == "deleted" {
		err = os.Remove(victim)
	} else {
		err = os.Truncate(victim, st.Size()/2)
	}
	if err != nil {
		t.Fatal(err)
	}

	if _, err := chunkstore.Open(dir, chunkstore.DefaultOptions()); !errors.Is(err, chunkstore.ErrDamaged) {
		t.Fatalf("writable open of a damaged store: %v, want ErrDamaged", err)
	}
	ro := chunkstore.DefaultOptions()
	ro.ReadOnly = true
	cs, err = chunkstore.Open(dir, ro)
	if err != nil {
		t.Fatalf("read-only open past a damaged table: %v", err)
	}
	defer cs.Close()
	if !cs.Degraded() || len(cs.DamagedRanges()) != 1 {
		t.Fatalf("degraded %v, damaged ranges %v", cs.Degraded(), cs.DamagedRanges())
	}
	x, err = OpenReadOnly(cs.DB())
	if err != nil {
		t.Fatal(err)
	}
	x.SetDamaged(cs.DamagedRanges)
	seen := map[string]bool{}
	err = x.WalkDirents(func(parent uint64, d Dirent) error { seen[d.Name] = true; return nil })
	var dmg *DamagedError
	if !errors.As(err, &dmg) || len(dmg.Ranges) != 1 {
		t.Fatalf("walk: %v, want a DamagedError naming one range", err)
	}
	missing := 0
	for i := 0; i < files; i++ {
		name := fmt.Sprintf("file-%05d", i)
		held := bytes.Compare(direntKey(RootIno, name), lost.Smallest) >= 0 && bytes.Compare(direntKey(RootIno, name), lost.Largest) <= 0
		if held {
			missing++
			continue
		}
		if !seen[name] {
			t.Fatalf("%s: not walked, though its table is intact", name)
		}
		if _, err := x.Lookup(RootIno, name); err != nil {
			t.Fatalf("%s: lookup: %v", name, err)
		}
	}
	if missing == 0 || missing > files/2 {
		t.Fatalf("%d names in the damaged table", missing)
	}
	t.Logf("%d of %d names lost with the damaged table, the rest served", missing, files)
}
