package fs

import (
	"bytes"
	"errors"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/test/memimage"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestCorruptChunkIsEIO damages a chunk behind the store's back: reading it
// through the mount fails with EIO (never wrong bytes), and the daemon logs
// the file, the offset and the chunk id.
func TestCorruptChunkIsEIO(t *testing.T) {
	RequireFUSE(t)
	var logs syncBuf
	m, err := MountStore(filepath.Join(t.TempDir(), "store"), filepath.Join(t.TempDir(), "mnt"),
		MountConfig{Config: Config{Logger: log.New(&logs, "", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmount()
	data := memimage.Random(1<<20, 11)
	p := filepath.Join(m.Dir, "victim")
	writeFile(t, p, data)
	// The chunk holding byte 300000.
	in, err := m.Index.Lookup(1, "victim")
	if err != nil {
		t.Fatal(err)
	}
	ext, err := m.Index.Extents(in.Ino, in.Ver, 300000, 1)
	if err != nil || len(ext) != 1 {
		t.Fatalf("extents: %v %v", ext, err)
	}
	id := ext[0].ID
	if err := m.Store.DamageForTest(id); err != nil {
		t.Fatal(err)
	}
	m.Data.CacheForTest().Purge()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	_, err = f.ReadAt(buf, 300000)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of a corrupt chunk: %v, want EIO", err)
	}
	for _, want := range []string{"/victim", "offset", id.String(), "corrupt chunk"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// Bytes in other chunks still read.
	if _, err := f.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:4096]) {
		t.Fatalf("intact chunk: %v", err)
	}
	// The metrics count it as a read's error, and a corrupt chunk.
	st := m.FS.Counters()
	if by := st.ErrorsByOp(); by["read"] == 0 || by["write"] != 0 || st.Corrupt.Load() == 0 {
		t.Errorf("errors by op %v, corrupt %d: want the read counted", by, st.Corrupt.Load())
	}
}

// TestErrorOpsListed: every op the filesystem names when it answers EIO
// (toErrno's first argument, directly or through commitLocked and the
// latest link's current; its first word counts) has its own count in
// ErrorOps, so none hides in "other".
func TestErrorOpsListed(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	re := regexp.MustCompile(`(?:toErrno|commitLocked|current)\("([^" ]+)[^"]*"`)
	seen := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(src, -1) {
			seen++
			if !slices.Contains(ErrorOps[:], string(m[1])) {
				t.Errorf("%s: toErrno(%q) is not in ErrorOps", f, m[1])
			}
		}
	}
	if seen < 10 {
		t.Errorf("found only %d toErrno calls: the pattern no longer matches", seen)
	}
}
