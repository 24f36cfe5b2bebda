package chunkstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// allKeys returns every key and value of s's database.
func allKeys(t *testing.T, s *Store) map[string]string {
	t.Helper()
	it, err := s.DB().NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	m := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	return m
}

// keysAfterClose returns every key of the closed store in dir.
func keysAfterClose(t *testing.T, dir string, o Options) map[string]string {
	t.Helper()
	o.ReadOnly = true
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return allKeys(t, s)
}

// journalWorkload writes chunks and keys of other owners, overwrites and
// deletes some, across many memtables (so that logs are archived and
// dumps written while it runs), and returns the chunks it kept.
func journalWorkload(t *testing.T, s *Store, rng *rand.Rand, round int) [][]byte {
	t.Helper()
	var kept [][]byte
	for i := range 300 {
		b := s.NewBatch()
		data := make([]byte, 4096)
		for j := range data {
			data[j] = byte(rng.IntN(16))
		}
		if _, _, err := s.Put(b, data); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, data)
		key := fmt.Appendf(nil, "i%d-%03d", round, i)
		val := make([]byte, 2000) // random: the kept logs do not compress away
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		b.Set(key, val, nil)
		if i%7 == 0 && i > 0 {
			b.Delete(fmt.Appendf(nil, "i%d-%03d", round, i-1), nil)
		}
		if i%50 == 49 {
			b.DeleteRange(fmt.Appendf(nil, "i%d-%03d", round, i-10), fmt.Appendf(nil, "i%d-%03d", round, i-5), nil)
		}
		sync := pebble.NoSync
		if i%10 == 0 {
			sync = pebble.Sync
		}
		if err := b.Commit(sync); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	// One batch larger than half a memtable, as gc's 4 MiB batches are:
	// Pebble commits it as a flushable batch, on the store and again in
	// the rebuild.
	b := s.NewBatch()
	for i := range 1500 {
		val := make([]byte, 2000)
		for j := range val {
			val[j] = byte(rng.Uint32())
		}
		b.Set(fmt.Appendf(nil, "big%d-%04d", round, i), val, nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	return kept
}

// TestRebuildFromJournal removes every file of a store's database and
// rebuilds it from the journal: every key comes back with its value, every
// chunk reads, the store opens for writing and takes new chunks, and a
// second rebuild of the rebuilt store works too.
func TestRebuildFromJournal(t *testing.T) {
	defer func(n int64) { JournalDumpBytes = n }(JournalDumpBytes)
	JournalDumpBytes = 16 << 10
	dir := filepath.Join(t.TempDir(), "store")
	o := DefaultOptions()
	o.MemTableBytes = 256 << 10 // many logs
	rng := rand.New(rand.NewPCG(1, 2))
	var chunks [][]byte
	var want map[string]string
	var first []uint64
	for round := range 3 {
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			first, _ = listNums(vfs.Default, filepath.Join(dir, JournalDir), dumpNum)
		}
		chunks = append(chunks, journalWorkload(t, s, rng, round)...)
		// The logs kept meanwhile call for a new dump, written in the
		// background.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			d, _ := listNums(vfs.Default, filepath.Join(dir, JournalDir), dumpNum)
			if len(d) > 0 && d[len(d)-1] > first[0] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no dump after the first (%v) within 20 s: %v", round, first, d)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		want = keysAfterClose(t, dir, o)
	}
	dumps, _ := listNums(vfs.Default, filepath.Join(dir, JournalDir), dumpNum)
	logs, _ := listNums(vfs.Default, filepath.Join(dir, JournalDir), keptNum)
	if len(first) != 1 || len(dumps) != 1 || dumps[0] <= first[0] || len(logs) == 0 {
		t.Fatalf("journal holds dumps %v (the first open wrote %v) and logs %v: want one newer dump and the logs after it", dumps, first, logs)
	}
	for _, n := range logs {
		if n < dumps[0] {
			t.Fatalf("log %d kept before dump %d", n, dumps[0])
		}
	}

	for pass := range 2 {
		removePebble(t, dir)
		rep, err := Rebuild(dir)
		if err != nil {
			t.Fatalf("rebuild %d: %v", pass, err)
		}
		if rep.Dump == "" || rep.Batches == 0 || len(rep.Damaged) != 0 || rep.Aside == "" {
			t.Fatalf("rebuild %d: report %+v", pass, rep)
		}
		s, err := Open(dir, o)
		if err != nil {
			t.Fatalf("open after rebuild %d: %v", pass, err)
		}
		got := allKeys(t, s)
		if len(got) != len(want) {
			t.Errorf("rebuild %d: %d keys, want %d", pass, len(got), len(want))
		}
		for k, v := range want {
			if k == string(durableKey) {
				continue // the rebuild's own open and close count a durable commit
			}
			if got[k] != v {
				t.Fatalf("rebuild %d: key %q: %q, want %q", pass, k, got[k], v)
			}
		}
		for _, c := range chunks {
			if data, err := s.Get(nil, Sum(c)); err != nil || !bytes.Equal(data, c) {
				t.Fatalf("rebuild %d: chunk %x: %v", pass, Sum(c), err)
			}
		}
		chunks = append(chunks, journalWorkload(t, s, rng, 10+pass)...)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		want = keysAfterClose(t, dir, o)
	}
}

// removePebble removes the database's files of the closed store in dir.
func removePebble(t *testing.T, dir string) {
	t.Helper()
	if _, err := RemoveDatabaseForTest(dir); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildRefusals: a store in use, a store without a journal and a
// damaged log each get their error or report, and nothing is lost.
func TestRebuildRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	o := DefaultOptions()
	o.MemTableBytes = 256 << 10
	s, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	journalWorkload(t, s, rand.New(rand.NewPCG(3, 4)), 0)
	if _, err := Rebuild(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("rebuild of an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A log in the middle cut short: the rebuild says so.
	jdir := filepath.Join(dir, JournalDir)
	logs, _ := listNums(vfs.Default, jdir, keptNum)
	if len(logs) < 2 {
		t.Fatalf("journal has %d logs, the test wants 2", len(logs))
	}
	p := filepath.Join(jdir, keptName(logs[0]))
	st, _ := os.Stat(p)
	if err := os.Truncate(p, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	removePebble(t, dir)
	rep, err := Rebuild(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 1 || !strings.Contains(rep.Damaged[0], keptName(logs[0])) {
		t.Fatalf("damaged log not reported: %+v", rep)
	}

	// Not a store.
	if _, err := Rebuild(t.TempDir()); !errors.Is(err, ErrNotStore) {
		t.Fatalf("rebuild of an empty directory: %v", err)
	}

	// No journal at all.
	os.RemoveAll(jdir)
	removePebble(t, dir)
	if _, err := Rebuild(dir); !errors.Is(err, ErrNoJournal) {
		t.Fatalf("rebuild without a journal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SegmentDir)); err != nil {
		t.Fatalf("segments gone after a refused rebuild: %v", err)
	}
}

// FuzzReadDump: a dump's decoder never panics, and what it accepts is
// batches of sets it counted.
func FuzzReadDump(f *testing.F) {
	var good bytes.Buffer
	w := record.NewWriter(&good)
	w.WriteRecord([]byte(dumpMagic + " 7"))
	var b pebble.Batch
	b.Set([]byte("k1"), []byte("v1"), nil)
	b.Set([]byte("k2"), nil, nil)
	w.WriteRecord(b.Repr())
	w.WriteRecord([]byte(dumpEnd + " 2"))
	w.Close()
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		applied := int64(0)
		keys, err := readDump(bytes.NewReader(data), 7, func(repr []byte) error {
			var b pebble.Batch
			if err := b.SetRepr(repr); err != nil {
				t.Fatalf("accepted a batch that does not decode: %v", err)
			}
			applied += int64(b.Count())
			return nil
		})
		if err == nil && keys != applied {
			t.Fatalf("counted %d keys, applied %d", keys, applied)
		}
	})
}

// TestRebuildBoundsLogs: a log record (a committed batch) larger than
// maxLogRecord, and a kept log that unpacks to more than maxLogBytes, are
// named as damage and skipped: the rebuild reads neither into memory nor
// onto the disk whole, and goes on with the rest.
func TestRebuildBoundsLogs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		set       func()
		complaint string
	}{
		{"record", func() { maxLogRecord = 1 << 20 }, "larger than any the store commits"},
		{"log", func() { maxLogBytes = 64 << 10 }, "unpacks to more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(r, b int64) { maxLogRecord, maxLogBytes = r, b }(maxLogRecord, maxLogBytes)
			dir := filepath.Join(t.TempDir(), "store")
			o := DefaultOptions()
			o.MemTableBytes = 256 << 10 // logs kept in the journal
			s, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			journalWorkload(t, s, rand.New(rand.NewPCG(3, 4)), 0) // commits a 3 MiB batch
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			removePebble(t, dir)
			tc.set()
			rep, err := Rebuild(dir)
			if err != nil {
				t.Fatalf("rebuild: %v", err)
			}
			found := false
			for _, d := range rep.Damaged {
				found = found || strings.Contains(d, tc.complaint)
			}
			if !found {
				t.Fatalf("rebuild named %q, want a log that %s", rep.Damaged, tc.complaint)
			}
			s, err = Open(dir, o)
			if err != nil {
				t.Fatalf("open after the rebuild: %v", err)
			}
			s.Close()
		})
	}
}
