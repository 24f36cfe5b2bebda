package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// TestTruncatedTable: a store one of whose database tables is cut short
// (a bad sector, an operator's mistake) costs what that table held, not
// the store. The real binary's fsck exits 7 and says which keys it could
// not read; a writable mount is refused (exit 7), and a --read-only mount
// serves every file whose metadata the other tables hold, byte-exact.
//
// The store is written in-process with small tables (the binary's 2 MiB
// ones would hold a small test store whole).
func TestTruncatedTable(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	o := chunkstore.DefaultOptions()
	o.TableBytes = 16 << 10
	cs, err := chunkstore.Open(store, o)
	if err != nil {
		t.Fatal(err)
	}
	x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
	if err != nil {
		t.Fatal(err)
	}
	x.SetDurable(cs.CommitDurable)
	cfg := content.DefaultConfig()
	cfg.Pages = fs.XenPages(x, true)
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	dir, err := x.Create(index.RootIno, "d", index.Inode{Mode: syscall.S_IFDIR | 0o755, Nlink: 2})
	if err != nil {
		t.Fatal(err)
	}
	const files = 2000
	body := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf("file %d ", i), 1+i%50)) }
	for i := 0; i < files; i++ {
		in, err := x.Create(dir.Ino, fmt.Sprintf("f%05d", i), index.Inode{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		w := data.NewWriter(in)
		if err := w.WriteAt(body(i), 0, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	data.Close()
	if err := cs.DB().Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	levels, err := cs.DB().SSTables()
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	var lo, hi []byte
	for _, l := range levels {
		for _, tb := range l {
			s, l := tb.Smallest.UserKey, tb.Largest.UserKey
			if victim == "" && s[0] == 'd' && l[0] == 'd' && bytes.Contains(s, []byte("f00")) {
				victim = filepath.Join(store, fmt.Sprintf("%s.sst", tb.FileNum))
				lo, hi = bytes.Clone(s), bytes.Clone(l)
			}
		}
	}
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if victim == "" {
		t.Fatal("no table holds only directory entries")
	}
	st, _ := os.Stat(victim)
	if err := os.Truncate(victim, st.Size()/3); err != nil {
		t.Fatal(err)
	}

	out, code := run(t, "fsck", store)
	noTrace(t, "fsck", out)
	if code != 7 || !strings.Contains(out, "keys unreadable") || !strings.Contains(out, filepath.Base(victim)) {
		t.Fatalf("fsck of a store with a truncated table: exit %d, want 7, the table and the keys it held named\n%s", code, out)
	}
	os.Mkdir(filepath.Join(tmp, "rw"), 0o755)
	out, code = run(t, "mount", store, filepath.Join(tmp, "rw"))
	noTrace(t, "mount", out)
	if code != 7 {
		t.Fatalf("writable mount of a damaged store: exit %d, want 7\n%s", code, out)
	}
	d := mount(t, store, filepath.Join(tmp, "mnt"), "--read-only")
	lost, served := 0, 0
	for i := 0; i < files; i++ {
		name := fmt.Sprintf("f%05d", i)
		got, err := os.ReadFile(filepath.Join(d.mnt, "d", name))
		key := append(binary.BigEndian.AppendUint64([]byte{'d'}, dir.Ino), name...)
		if bytes.Compare(key, lo) >= 0 && bytes.Compare(key, hi) <= 0 {
			lost++
			continue
		}
		if err != nil || !bytes.Equal(got, body(i)) {
			t.Fatalf("%s (its table intact): %v, %d bytes", name, err, len(got))
		}
		served++
	}
	// The directory lists the names the intact tables hold.
	ents, err := os.ReadDir(filepath.Join(d.mnt, "d"))
	if err != nil || len(ents) != served {
		t.Fatalf("readdir of a directory a damaged table held part of: %v, %d entries, want the %d intact", err, len(ents), served)
	}
	if lost == 0 || served == 0 {
		t.Fatalf("%d files lost with the table, %d served", lost, served)
	}
	t.Logf("read-only mount: %d files served byte-exact, %d named by the damaged table", served, lost)
	d.stop(t)

	// The journal in segments/ makes the database again: every file is
	// back, the store mounts writable and takes new files.
	out, code = run(t, "fsck", "--rebuild", store)
	noTrace(t, "fsck --rebuild", out)
	if code != 0 || !strings.Contains(out, "rebuild: ") || !strings.Contains(out, "no problems found") || !strings.Contains(out, fmt.Sprintf("checked %d files", files)) {
		t.Fatalf("fsck --rebuild of a store with a truncated table: exit %d\n%s", code, out)
	}
	d = mount(t, store, filepath.Join(tmp, "rw"))
	for i := 0; i < files; i++ {
		got, err := os.ReadFile(filepath.Join(d.mnt, "d", fmt.Sprintf("f%05d", i)))
		if err != nil || !bytes.Equal(got, body(i)) {
			t.Fatalf("f%05d after the rebuild: %v, %d bytes", i, err, len(got))
		}
	}
	if err := os.WriteFile(filepath.Join(d.mnt, "d", "new"), body(1), 0o644); err != nil {
		t.Fatalf("write after the rebuild: %v", err)
	}
	d.stop(t)
	if out, code := run(t, "fsck", store); code != 0 {
		t.Fatalf("fsck after the rebuild and a new file: exit %d\n%s", code, out)
	}
}
