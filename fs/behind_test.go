package fs

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/test/memimage"
)

// spooling reports whether the file at path is being written behind.
func spooling(m *Mounted, path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	n := m.FS.node(fi.Sys().(*syscall.Stat_t).Ino)
	return n != nil && n.behind() != nil
}

// TestWriteBehindPatterns: the ways a writer leaves the spooled sequence
// (a write behind the end, a write past it, a truncate, an fsync, a read
// through the same handle, a second open) end write-behind for the file
// and lose no byte: every file reads back as a plain file written the same
// way does, and the spool directory is empty at the end.
func TestWriteBehindPatterns(t *testing.T) {
	m := TestMount(t, "")
	plain := t.TempDir()
	data := memimage.Random(24<<20, 5)
	type step func(f *os.File) error
	at := func(off int64, b []byte) step {
		return func(f *os.File) error { _, err := f.WriteAt(b, off); return err }
	}
	seq := func(b []byte) step { return func(f *os.File) error { _, err := f.Write(b); return err } }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"sequential", []step{seq(data[:8<<20]), seq(data[8<<20:])}},
		{"rewrite-behind", []step{seq(data[:16<<20]), at(4096, data[1<<20:2<<20]), seq(data[16<<20:])}},
		{"hole-ahead", []step{seq(data[:4<<20]), at(12<<20, data[:1<<20])}},
		{"truncate", []step{seq(data[:8<<20]), func(f *os.File) error { return f.Truncate(3 << 20) }, at(3<<20, data[:5<<20])}},
		{"fsync", []step{seq(data[:8<<20]), func(f *os.File) error { return f.Sync() }, seq(data[8<<20:])}},
		{"read-own", []step{seq(data[:8<<20]), func(f *os.File) error {
			b := make([]byte, 4096)
			_, err := f.ReadAt(b, 100)
			if err == nil && !bytes.Equal(b, data[100:4196]) {
				t.Errorf("read through the writing handle differs")
			}
			return err
		}, seq(data[8<<20:])}},
		{"second-open", []step{seq(data[:8<<20]), func(f *os.File) error {
			g, err := os.Open(f.Name())
			if err != nil {
				return err
			}
			defer g.Close()
			b := make([]byte, 8<<20)
			if _, err := g.ReadAt(b, 0); err != nil || !bytes.Equal(b, data[:8<<20]) {
				t.Errorf("a second handle read %v, or other bytes", err)
			}
			return nil
		}, seq(data[8<<20:])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, dir := range []string{m.Dir, plain} {
				f, err := os.OpenFile(filepath.Join(dir, tc.name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range tc.steps {
					if err := s(f); err != nil {
						t.Fatalf("%s step %d: %v", dir, i, err)
					}
					if i == 0 && dir == m.Dir && !spooling(m, f.Name()) {
						t.Errorf("the first sequential write was not spooled")
					}
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(filepath.Join(plain, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			mustEqualFile(t, filepath.Join(m.Dir, tc.name), want)
		})
	}
	m.FS.WaitCommitted()
	if ents, _ := os.ReadDir(filepath.Join(m.StoreDir, SpoolDir)); len(ents) != 0 {
		t.Errorf("spool directory holds %d entries after every file was read back", len(ents))
	}
}

// TestWriteBehindStatRightAfterClose: stat and read right after close(2)
// see the whole file while it is committed behind its writer. All-zero
// files are stored fast, so their commit and release land while the
// kernel looks the name up again; a lookup then gets a new Node from
// go-fuse, which must still know the file is being written behind (it
// reported size 0 once, when the write-behind state lived on the Node).
func TestWriteBehindStatRightAfterClose(t *testing.T) {
	m := TestMount(t, "")
	n := 64<<20 + 3
	data := make([]byte, n)
	for i := range 6 {
		p := filepath.Join(m.Dir, "zero"+string(rune('a'+i)))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(p); err != nil || st.Size() != int64(n) {
			t.Fatalf("stat right after close: %v, size %d, want %d", err, st.Size(), n)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read right after close: %v, %d bytes, want %d", err, len(got), n)
		}
	}
}
