package fs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
)

// TestOpenDefaults: an option set alone keeps every other default (a
// caller that sets BatchBytes does not lose the reorder window), and a nil
// page hook is the xl save one.
func TestOpenDefaults(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "s"), OpenOptions{Content: content.Config{BatchBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, want := st.Data.Config(), content.DefaultConfig()
	if got.BatchBytes != 1<<20 {
		t.Errorf("BatchBytes %d, want the 1 MiB set", got.BatchBytes)
	}
	if got.Window != want.Window || got.Params != want.Params || got.CacheChunks != want.CacheChunks ||
		got.ReadAhead != want.ReadAhead || got.WriterMemory != want.WriterMemory {
		t.Errorf("setting BatchBytes dropped defaults: %+v", got)
	}
	if got.Pages == nil {
		t.Error("no page hook: xl save images would not be stored page by page")
	}
}

// TestOpenWiring: a writable Open wires the durable marker (a synced
// namespace change moves it), a read-only Open of the same store refuses
// changes, and a second writable Open waits OpenOptions.Wait for the
// first, then fails with ErrLocked.
func TestOpenWiring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	st, err := Open(dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	marker := func() []byte {
		b, err := os.ReadFile(filepath.Join(dir, chunkstore.DurableFile))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := marker()
	if _, err := st.Index.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG | 0o644}); err != nil {
		t.Fatal(err)
	}
	if err := st.Index.SyncPending(); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, marker()) {
		t.Error("a synced namespace change left the durable marker as it was: SetDurable not wired")
	}

	start := time.Now()
	if _, err := Open(dir, OpenOptions{Wait: 200 * time.Millisecond}); !errors.Is(err, chunkstore.ErrLocked) {
		t.Errorf("second writable open: %v, want ErrLocked", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("second writable open gave up after %v, before its Wait", el)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := Open(dir, OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Index.Lookup(index.RootIno, "f"); err != nil {
		t.Errorf("read-only open does not find the file: %v", err)
	}
	if _, err := ro.Index.Create(index.RootIno, "g", index.Inode{Mode: syscall.S_IFREG | 0o644}); err == nil {
		t.Error("a read-only open took a change")
	}
}
