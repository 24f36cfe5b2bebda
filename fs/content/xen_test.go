package content

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// writeFile writes data as a new file, reads it back, checks it byte for
// byte, and returns the stored-bytes growth.
func writeFile(t *testing.T, s *Store, x *index.Index, name string, data []byte) int64 {
	t.Helper()
	before := s.stats.StoredBytes.Load()
	in := putFile(t, s, x, name, data)
	got := make([]byte, len(data))
	var c Cursor
	n, err := s.ReadCommitted(&c, in.Ino, in.Ver, s.NewEpoch(), in.Size, got, 0)
	if err != nil || n != len(data) || !bytes.Equal(got, data) {
		t.Fatalf("%s: read back %d bytes (%v), first difference at %d", name, n, err, firstDiff(got[:n], data))
	}
	return s.stats.StoredBytes.Load() - before
}

func defaultStore(t *testing.T) (*Store, *index.Index) {
	s, x, _ := pageModeStore(t)
	return s, x
}

// pageModeStore returns an engine with default parameters in page mode.
func pageModeStore(t *testing.T) (*Store, *index.Index, *chunkstore.Store) {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := DefaultConfig()
	cfg.Pages = xenPages(x, true)
	cfg.Runs = lineage.Of(x)
	s := New(cs, cs, x, cfg)
	t.Cleanup(s.Close)
	return s, x, cs
}

// TestXenSeries stores 10 generations of generated PV and HVM guests at 1%
// and 10% dirty pages. Every generation reads back byte-exact, and what
// generation n+1 adds is its new pages, compressed, plus at most its
// non-page bytes (within 10%).
func TestXenSeries(t *testing.T) {
	for _, tc := range []struct {
		hvm   bool
		dirty float64
	}{{false, 0.01}, {false, 0.10}, {true, 0.01}, {true, 0.10}} {
		t.Run(fmt.Sprintf("hvm=%v/dirty=%.2f", tc.hvm, tc.dirty), func(t *testing.T) {
			s, x := defaultStore(t)
			seen := map[[32]byte]bool{}
			for gen := 0; gen < 10; gen++ {
				g := xentest.Guest{Name: "g", UUID: "u-1", HVM: tc.hvm, Pages: 4096, VCPUs: 2, Seed: 5, Gen: gen, Dirty: tc.dirty}
				img := g.Bytes()
				// What this generation must add: its page contents not stored
				// before (compressed as the store does), and at most its
				// non-page bytes.
				var newPages, pageBytes int64
				sc := xen.NewScanner(xen.Handler{Page: func(p xen.Page) {
					page := img[p.Off : p.Off+xen.PageSize]
					pageBytes += xen.PageSize
					h := sha256.Sum256(page)
					if !seen[h] && !chunkstore.IsZero(page) {
						newPages += int64(chunkstore.EncodedLen(chunkstore.CodecS2, page))
					}
					seen[h] = true
				}})
				sc.Write(img)
				if !sc.Done() {
					t.Fatalf("generated image does not parse: %v", sc.Err())
				}
				nonPage := int64(len(img)) - pageBytes
				growth := writeFile(t, s, x, fmt.Sprint("gen", gen), img)
				if gen == 0 {
					continue
				}
				t.Logf("gen %d: stored +%d bytes; new pages compressed %d, non-page bytes %d", gen, growth, newPages, nonPage)
				if float64(growth) < 0.9*float64(newPages) || float64(growth) > 1.1*float64(newPages+nonPage) {
					t.Errorf("gen %d grew %d bytes, want between %.0f and %.0f", gen, growth, 0.9*float64(newPages), 1.1*float64(newPages+nonPage))
				}
			}
		})
	}
}

// TestXenFallback: page mode follows a stream only while it is an xl save
// image it understands, and stores the rest by content. Every file reads
// back byte-exact, and its bytes are stored as page runs exactly where
// page mode held: all pages of a whole (or page-corrupted: the payload is
// opaque) image, the pages before the cut of a truncated one, the pages
// before an unknown record, none of random data after a header or of a
// file that is not an image, and only the first image's pages of two
// images in one file (the second's pfns are repeats).
func TestXenFallback(t *testing.T) {
	g := xentest.Guest{Name: "g", UUID: "u", Pages: 3000, VCPUs: 1, Seed: 9}
	img := g.Bytes()
	corrupt := append([]byte(nil), img...)
	corrupt[len(corrupt)/2] ^= 0xff // inside page data: still parses
	var mid int64
	xen.NewScanner(xen.Handler{Record: func(r xen.Record) {
		if r.Type == xen.LibxcPageData && r.Off > int64(len(img))/2 && mid == 0 {
			mid = r.Off
		}
	}}).Write(img)
	badRec := append([]byte(nil), img...)
	badRec[mid] = 0x77 // an unknown record type in the middle
	truncated := img[:len(img)*2/3+13]
	all := int64(g.Pages) * PageSize
	s, x := defaultStore(t)
	for _, tc := range []struct {
		name     string
		data     []byte
		min, max int64 // bytes stored as page runs
	}{
		{"whole", img, all, all},
		{"truncated", truncated, pagesBefore(img, int64(len(truncated))) - 1024*PageSize, pagesBefore(img, int64(len(truncated)))},
		{"corrupt page", corrupt, all, all},
		{"bad record", badRec, pagesBefore(img, mid) - 1024*PageSize, pagesBefore(img, mid)},
		{"random after header", append(append([]byte(nil), img[:100]...), chunkstoreRandom(2<<20)...), 0, 0},
		{"two images", append(append([]byte(nil), img...), img...), all, all},
		{"not xen", chunkstoreRandom(3 << 20), 0, 0},
	} {
		writeFile(t, s, x, tc.name, tc.data)
		paged, plain := storedAs(t, x, tc.name)
		if paged < tc.min || paged > tc.max {
			t.Errorf("%s: %d bytes stored as page runs, want %d to %d", tc.name, paged, tc.min, tc.max)
		}
		if paged+plain > int64(len(tc.data)) {
			t.Errorf("%s: extents cover %d bytes of %d", tc.name, paged+plain, len(tc.data))
		}
	}
}

// pagesBefore returns the bytes of the page payloads of img that end by off.
func pagesBefore(img []byte, off int64) int64 {
	var n int64
	xen.NewScanner(xen.Handler{Page: func(p xen.Page) {
		if p.Off+PageSize <= off {
			n += PageSize
		}
	}}).Write(img)
	return n
}

// storedAs returns how many bytes of file name are stored as page runs
// (page mode) and as plain extents (by content; holes are neither).
func storedAs(t *testing.T, x *index.Index, name string) (paged, plain int64) {
	t.Helper()
	in, err := x.Lookup(index.RootIno, name)
	if err != nil {
		t.Fatal(err)
	}
	err = x.WalkExtents(in.Ino, in.Ver, func(e index.Extent) error {
		switch {
		case e.Run != nil:
			paged += e.Len
		case e.ID != (chunkstore.ID{}):
			plain += e.Len
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paged, plain
}

func chunkstoreRandom(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7919 + i>>9)
	}
	return b
}

// TestXenDeltaGC: in page mode each generation's page map is a delta
// (entries only for the pages that changed); deleting the first, a middle
// and the last generation and collecting keeps every other generation
// byte-exact, leaves no unreferenced chunk, and a new generation still
// deltas against the newest live one.
func TestXenDeltaGC(t *testing.T) {
	s, x, cs := pageModeStore(t)
	const pages, dirty = 4096, 0.05
	guest := func(gen int) xentest.Guest {
		return xentest.Guest{Name: "g", UUID: "u-delta", Pages: pages, VCPUs: 2, Seed: 11, Gen: gen, Dirty: dirty}
	}
	inos := map[int]index.Inode{}
	for gen := 0; gen <= 9; gen++ {
		byTag, zero := s.Counters().PagesByTag.Load(), s.Counters().ChunksZero.Load()
		writeFile(t, s, x, fmt.Sprint("gen", gen), guest(gen).Bytes())
		// A later generation's unchanged pages (not all zero) are proven
		// so by their keyed tag, not hashed (a few at write boundaries
		// may not be).
		zero = s.Counters().ChunksZero.Load() - zero
		if n, want := s.Counters().PagesByTag.Load()-byTag, (1-dirty)*pages-float64(zero); gen > 0 && float64(n) < 0.9*want {
			t.Fatalf("gen %d: %d pages proven unchanged by tag, want most of the %.0f unchanged non-zero pages", gen, n, want)
		}
		in, err := x.Lookup(index.RootIno, fmt.Sprint("gen", gen))
		if err != nil {
			t.Fatal(err)
		}
		inos[gen] = in
		var entries int
		err = lineage.Of(x).ImageGens(in.Ino, func(lin, g uint64) error {
			entries, err = lineage.Of(x).GenEntries(lin, g)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gen %d: %d page entries for %d pages", gen, entries, pages)
		lo, hi := 0.5*dirty*pages, 1.2*dirty*pages+16
		if gen == 0 {
			lo, hi = 0.9*pages, pages+16
		}
		if float64(entries) < lo || float64(entries) > hi {
			t.Fatalf("gen %d: %d page entries, want %.0f..%.0f", gen, entries, lo, hi)
		}
	}
	before, err := gc.ComputeStats(cs, x)
	if err != nil {
		t.Fatal(err)
	}
	for _, gen := range []int{0, 4, 9} {
		if _, err := x.Unlink(index.RootIno, fmt.Sprint("gen", gen), 2); err != nil {
			t.Fatal(err)
		}
		if err := x.Purge(inos[gen].Ino); err != nil {
			t.Fatal(err)
		}
		delete(inos, gen)
	}
	res, err := gc.Collect(cs, x, true)
	if err != nil {
		t.Fatal(err)
	}
	after, err := gc.ComputeStats(cs, x)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gc: %+v; stored %d -> %d bytes", res, before.StoredBytes, after.StoredBytes)
	if res.GensReclaimed != 3 || res.ChunksDeleted == 0 || after.StoredBytes >= before.StoredBytes {
		t.Fatalf("gc reclaimed %d generations and %d chunks", res.GensReclaimed, res.ChunksDeleted)
	}
	rep, err := gc.Fsck(cs, x)
	if err != nil || !rep.OK() || rep.Unreferenced != 0 {
		t.Fatalf("fsck after gc: %v %+v", err, rep)
	}
	s.cache.Purge()
	for gen, in := range inos {
		want := guest(gen).Bytes()
		got := make([]byte, len(want))
		var c Cursor
		if n, err := s.ReadCommitted(&c, in.Ino, in.Ver, s.NewEpoch(), in.Size, got, 0); err != nil || n != len(want) || !bytes.Equal(got, want) {
			t.Fatalf("gen %d after gc: %v, first difference at %d", gen, err, firstDiff(got, want))
		}
	}
	writeFile(t, s, x, "gen10", guest(10).Bytes())
	if res, err := gc.Collect(cs, x, false); err != nil || res.ChunksDeleted != 0 {
		t.Fatalf("second gc with nothing deleted: %+v %v", res, err)
	}
}

// TestGCWhileWriting runs gc.Collect in a loop while generations of two
// guests are written (page mode), read back and deleted, the oldest first:
// no collection ever takes a chunk or page entry a live or in-flight
// generation needs. Run with -race.
func TestGCWhileWriting(t *testing.T) {
	s, x, cs := pageModeStore(t)
	stop := make(chan struct{})
	gcDone := make(chan error, 1)
	collections := 0
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			if _, err := gc.Collect(cs, x, false); err != nil {
				gcDone <- err
				return
			}
			collections++
		}
	}()
	guest := func(uuid string, gen int) xentest.Guest {
		return xentest.Guest{Name: uuid, UUID: uuid, Pages: 1024, VCPUs: 1, Seed: 3, Gen: gen, Dirty: 0.1}
	}
	live := map[string]index.Inode{}
	for gen := 0; gen < 12; gen++ {
		for _, uuid := range []string{"a", "b"} {
			name := fmt.Sprintf("%s-%d", uuid, gen)
			writeFile(t, s, x, name, guest(uuid, gen).Bytes())
			in, err := x.Lookup(index.RootIno, name)
			if err != nil {
				t.Fatal(err)
			}
			live[name] = in
			if gen >= 3 { // keep the last 3
				old := fmt.Sprintf("%s-%d", uuid, gen-3)
				if _, err := x.Unlink(index.RootIno, old, 1); err != nil {
					t.Fatal(err)
				}
				if err := x.Purge(live[old].Ino); err != nil {
					t.Fatal(err)
				}
				delete(live, old)
			}
		}
		s.cache.Purge()
		for name, in := range live {
			var uuid string
			var g int
			fmt.Sscanf(name, "%1s-%d", &uuid, &g)
			want := guest(uuid, g).Bytes()
			got := make([]byte, len(want))
			var c Cursor
			if _, err := s.ReadCommitted(&c, in.Ino, in.Ver, s.NewEpoch(), in.Size, got, 0); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s while gc runs: %v, first difference at %d", name, err, firstDiff(got, want))
			}
		}
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	if _, err := gc.Collect(cs, x, false); err != nil {
		t.Fatal(err)
	}
	rep, err := gc.Fsck(cs, x)
	if err != nil || !rep.OK() || rep.Unreferenced != 0 {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
	t.Logf("%d collections ran meanwhile", collections)
}

// xlLikeStream builds an xl-like stream from fuzz input: a generated PV or
// HVM image, or a remus stream (pfns resent in later checkpoints), with
// live-migration precopy rounds (stale pages and XTAB entries first).
func xlLikeStream(kind byte, seed uint64) []byte {
	g := xentest.Guest{Name: "g", UUID: "u-fuzz", Pages: 256 + int64(seed%512), VCPUs: 1, Seed: seed, Dirty: 0.1}
	g.HVM = kind&1 != 0
	g.Precopy = kind&2 != 0
	if kind&4 == 0 {
		return g.Bytes()
	}
	var b bytes.Buffer
	if err := g.WriteRemus(&b, 1+int(kind>>3)%4); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// TestXenRepeatedPFNs: a file in which pfns repeat (an xl remus stream, or
// live-migration precopy rounds, written as one file) reads back exactly in
// page mode; only the first copy of a pfn goes into the page map: the
// bytes stored as page runs are at most one page per distinct pfn, and
// every repeat is stored as a plain extent.
func TestXenRepeatedPFNs(t *testing.T) {
	s, x := defaultStore(t)
	repeats := 0
	for kind := byte(0); kind < 32; kind++ {
		data := xlLikeStream(kind, 7+uint64(kind))
		name := fmt.Sprint("kind", kind)
		writeFile(t, s, x, name, data)
		pfns := map[uint64]bool{}
		r := 0 // repeats that are not all zeros (a hole is neither)
		xen.NewScanner(xen.Handler{Page: func(p xen.Page) {
			if pfns[p.PFN] && !chunkstore.IsZero(data[p.Off:p.Off+PageSize]) {
				r++
			}
			pfns[p.PFN] = true
		}}).Write(data)
		paged, plain := storedAs(t, x, name)
		if paged > int64(len(pfns))*PageSize {
			t.Errorf("%s: %d bytes as page runs, more than its %d distinct pfns' pages", name, paged, len(pfns))
		}
		if paged == 0 {
			t.Errorf("%s: no page stored as a page run", name)
		}
		if r > 0 {
			repeats++
			if plain < int64(r)*PageSize {
				t.Errorf("%s: %d repeated pages, but only %d bytes stored as plain extents", name, r, plain)
			}
		}
	}
	if repeats == 0 {
		t.Error("no stream repeated a pfn: the test tests nothing")
	}
}

// FuzzXenPages is the page path's round trip: an xl-like stream (repeated
// pfns, XTAB entries, precopy rounds), written in pieces of fuzzed sizes,
// possibly truncated and rewritten or cut short, reads back exactly what
// was written, through the writer and after commit.
func FuzzXenPages(f *testing.F) {
	f.Add(byte(4), uint64(1), []byte{0, 0, 1, 0})
	f.Add(byte(6), uint64(2), []byte{5, 0, 200, 1, 3})
	f.Add(byte(1), uint64(3), []byte{7, 7, 7})
	f.Add(byte(13), uint64(4), []byte{})
	f.Fuzz(func(t *testing.T, kind byte, seed uint64, ops []byte) {
		m := newPageModel(t)
		data := xlLikeStream(kind, seed%64)
		off := 0
		for i := 0; off < len(data); i++ {
			n := 1 << 20
			if i < len(ops) {
				n = 1 + int(ops[i])*4099
			}
			n = min(n, len(data)-off)
			if i < len(ops) && ops[i] == 0xff { // cut the stream short, start again
				m.truncate(int64(off / 2))
				off /= 2
				continue
			}
			m.write(int64(off), data[off:off+n])
			off += n
		}
		if len(ops) > 0 && ops[0]&1 == 1 {
			m.truncate(int64(len(data)) * int64(ops[0]) / 256)
		}
		m.check("fuzz")
		m.commit()
	})
}

// newPageModel is newModel over an engine in page mode with small batches
// and windows, so that streams cross their boundaries often.
func newPageModel(t testing.TB) *model {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := Config{Params: Params{Min: 1024, Max: 8192, AvgBits: 11}, Window: 64 << 10, BatchBytes: 32 << 10, CacheChunks: 16, ReadAhead: 64 << 10, Pages: xenPages(x, true), Runs: lineage.Of(x)}
	s := New(cs, cs, x, cfg)
	t.Cleanup(s.Close)
	in, err := x.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	return &model{t: t, s: s, x: x, ino: in.Ino, w: s.NewWriter(in)}
}
