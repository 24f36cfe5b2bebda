package content

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// benchStore returns an engine on a new on-disk store, closed when tb ends.
// pages stores xl save images page by page (else by content, their guest
// recorded).
func benchStore(tb testing.TB, o chunkstore.Options, cfg Config, pages bool) (*Store, *index.Index) {
	tb.Helper()
	cs, err := chunkstore.Open(filepath.Join(tb.TempDir(), "s"), o)
	if err != nil {
		tb.Fatal(err)
	}
	x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Pages = xenPages(x, pages)
	cfg.Runs = lineage.Of(x)
	s := New(cs, cs, x, cfg)
	tb.Cleanup(func() { s.Close(); cs.Close() })
	return s, x
}

// putFile writes data as a new file in 1 MiB writes and commits it.
func putFile(tb testing.TB, s *Store, x *index.Index, name string, data []byte) index.Inode {
	tb.Helper()
	in, err := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		tb.Fatal(err)
	}
	w := s.NewWriter(in)
	defer w.Close()
	for off := 0; off < len(data); off += 1 << 20 {
		if err := w.WriteAt(data[off:min(len(data), off+1<<20)], int64(off), 1); err != nil {
			tb.Fatal(err)
		}
	}
	in, err = w.Commit()
	if err != nil {
		tb.Fatal(err)
	}
	return in
}

// readAll reads a committed file in 128 KiB pieces (the kernel's usual
// read size) with the chunk cache emptied first.
func readAll(tb testing.TB, s *Store, in index.Inode) {
	s.CacheForTest().Purge()
	if os.Getenv("CKPTFS_BENCH_COLD") != "" {
		syscall.Sync()
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
	}
	buf := make([]byte, 128<<10)
	var c Cursor
	defer s.CloseCursor(&c)
	for off := int64(0); off < in.Size; off += int64(len(buf)) {
		if _, err := s.ReadCommitted(&c, in.Ino, in.Ver, 1, in.Size, buf, off); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkEngineWrite writes 256 MiB through a Writer on an on-disk store
// in 1 MiB pieces, without FUSE: the engine's own ceiling.
func BenchmarkEngineWrite(b *testing.B) {
	data := memimage.Random(256<<20, 1)
	for _, vsep := range []bool{false, true} {
		b.Run(map[bool]string{false: "inline", true: "vsep"}[vsep], func(b *testing.B) {
			o := chunkstore.DefaultOptions()
			o.ValueSeparation = vsep
			s, x := benchStore(b, o, DefaultConfig(), true)
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				data[0] = byte(i) // a new file, not a duplicate
				putFile(b, s, x, fmt.Sprint("f", i), data)
			}
		})
	}
}

// BenchmarkEngineRead reads 256 MiB back through ReadCommitted, without FUSE.
func BenchmarkEngineRead(b *testing.B) {
	s, x := benchStore(b, chunkstore.DefaultOptions(), DefaultConfig(), true)
	in := putFile(b, s, x, "f", memimage.Random(256<<20, 1))
	b.SetBytes(in.Size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		readAll(b, s, in)
	}
	b.ReportMetric(float64(s.stats.CacheHits.Load())/float64(s.stats.CacheHits.Load()+s.stats.CacheMisses.Load()), "hit-rate")
}

// xenBenchModes are page mode and, for comparison, plain CDC (the image
// behind one extra byte, which hides its xl header).
var xenBenchModes = []string{"page", "cdc"}

func xenBenchImage(mode string, g xentest.Guest) []byte {
	img := g.Bytes()
	if mode == "cdc" {
		img = append([]byte{1}, img...)
	}
	return img
}

// BenchmarkEngineXen writes generation 0 (all pages new) and generation 1
// (1% dirty, after generation 0) of a 128 MiB generated PV image.
func BenchmarkEngineXen(b *testing.B) {
	for _, mode := range xenBenchModes {
		for _, gen := range []int{0, 1} {
			b.Run(fmt.Sprintf("%s/gen%d", mode, gen), func(b *testing.B) {
				g := xentest.Guest{Name: "g", UUID: "u", Pages: 32768, VCPUs: 1, Seed: 3, Dirty: 0.01}
				img0 := xenBenchImage(mode, g)
				g.Gen = gen
				img := xenBenchImage(mode, g)
				b.SetBytes(int64(len(img)))
				b.ResetTimer() // not the images' making
				var busy cpuMeter
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					s, x := benchStore(b, chunkstore.DefaultOptions(), DefaultConfig(), mode == "page")
					if gen > 0 {
						putFile(b, s, x, "base", img0)
					}
					runtime.GC()
					b.StartTimer()
					busy.start()
					putFile(b, s, x, "img", img)
					busy.stop()
				}
				busy.report(b, int64(len(img))*int64(b.N))
			})
		}
	}
}

// BenchmarkEngineXenRead reads a 128 MiB generated image back, stored in
// page mode and by CDC.
func BenchmarkEngineXenRead(b *testing.B) {
	for _, mode := range xenBenchModes {
		b.Run(mode, func(b *testing.B) {
			s, x := benchStore(b, chunkstore.DefaultOptions(), DefaultConfig(), mode == "page")
			in := putFile(b, s, x, "f", xenBenchImage(mode, xentest.Guest{Name: "g", UUID: "u", Pages: 32768, VCPUs: 1, Seed: 3}))
			b.SetBytes(in.Size)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				readAll(b, s, in)
			}
		})
	}
}

// BenchmarkEngineXenWriteAmp writes three generations of a 1 GiB generated
// PV guest (5% dirty; CKPTFS_WA_PAGES scales it) through the engine and
// reports, per generation, what Pebble wrote (WAL, flushes, compactions:
// the metadata) against the chunk bytes the segments got.
func BenchmarkEngineXenWriteAmp(b *testing.B) {
	pages := int64(262144)
	if v, err := strconv.Atoi(os.Getenv("CKPTFS_WA_PAGES")); err == nil && v > 0 {
		pages = int64(v)
	}
	for i := 0; i < b.N; i++ {
		s, x := benchStore(b, chunkstore.DefaultOptions(), DefaultConfig(), true)
		var stored int64
		for gen := 0; gen < 3; gen++ {
			img := xentest.Guest{Name: "g", UUID: "u", Pages: pages, VCPUs: 1, Seed: 7, Gen: gen, Dirty: 0.05}.Bytes()
			before := s.stats.StoredBytes.Load()
			putFile(b, s, x, fmt.Sprint("gen", gen), img)
			stored += s.stats.StoredBytes.Load() - before
			db := s.db.(*chunkstore.Store).DB()
			db.Flush()
			m := db.Metrics()
			var fl, co uint64
			for _, l := range m.Levels {
				fl += l.TableBytesFlushed
				co += l.TableBytesCompacted
			}
			b.Logf("after gen %d: chunk bytes %.1f MB; Pebble wrote WAL %.1f MB, flushes %.1f MB, compactions %.1f MB (%.2f per chunk byte)",
				gen, float64(stored)/1e6, float64(m.WAL.BytesWritten)/1e6, float64(fl)/1e6, float64(co)/1e6,
				float64(m.WAL.BytesWritten+fl+co)/float64(stored))
			if gen == 2 {
				b.ReportMetric(float64(m.WAL.BytesWritten+fl+co)/float64(stored), "metadata-bytes/chunk-byte")
			}
		}
	}
}

// BenchmarkPageIngest writes a generated PV image (512 MiB: more pages
// than the store's LRU of recent chunks holds;
// CKPTFS_PI_PAGES scales it) through the engine after generation 0 of the
// same guest, once with every page as in generation 0 ("unchanged") and
// once with every page rewritten ("changed"), at GOMAXPROCS 1 and 2, and
// reports nanoseconds per page of the image (zero pages included).
func BenchmarkPageIngest(b *testing.B) {
	pages := int64(131072)
	if v, err := strconv.Atoi(os.Getenv("CKPTFS_PI_PAGES")); err == nil && v > 0 {
		pages = int64(v)
	}
	g := xentest.Guest{Name: "g", UUID: "u", Pages: pages, VCPUs: 1, Seed: 5}
	img0 := g.Bytes()
	changed := g
	changed.Gen, changed.Dirty = 1, 1
	imgs := map[string][]byte{"unchanged": img0, "changed": changed.Bytes()}
	for _, kind := range []string{"unchanged", "changed"} {
		for _, procs := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/procs=%d", kind, procs), func(b *testing.B) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				img := imgs[kind]
				b.SetBytes(int64(len(img)))
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					s, x := benchStore(b, chunkstore.DefaultOptions(), DefaultConfig(), true)
					putFile(b, s, x, "gen0", img0)
					b.StartTimer()
					putFile(b, s, x, "gen1", img)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(pages), "ns/page")
			})
		}
	}
}

// BenchmarkKnownFilter writes generation 0 of a generated PV image (all
// pages new) into a store that already holds another guest's 256 MiB of
// pages (so Pebble has tables to look in), with the chunk store's filter
// of stored ids on and off: the dedup check of a new page with and without
// a Pebble Get. CKPTFS_KF_PAGES scales the image.
func BenchmarkKnownFilter(b *testing.B) {
	pages := int64(32768)
	if v, err := strconv.Atoi(os.Getenv("CKPTFS_KF_PAGES")); err == nil && v > 0 {
		pages = int64(v)
	}
	other := xentest.Guest{Name: "o", UUID: "other", Pages: 65536, VCPUs: 1, Seed: 9}.Bytes()
	img := xentest.Guest{Name: "g", UUID: "u", Pages: pages, VCPUs: 1, Seed: 3}.Bytes()
	for _, filter := range []string{"on", "off"} {
		b.Run("filter="+filter, func(b *testing.B) {
			o := chunkstore.DefaultOptions()
			o.NoKnownFilter = filter == "off"
			b.SetBytes(int64(len(img)))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s, x := benchStore(b, o, DefaultConfig(), true)
				putFile(b, s, x, "other", other)
				b.StartTimer()
				putFile(b, s, x, fmt.Sprint("img", i), img)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(pages), "ns/page")
		})
	}
}

// cpuMeter adds up the process's CPU time and the wall time between start
// and stop, and reports cores busy and core-seconds per GiB.
type cpuMeter struct {
	cpu, wall time.Duration
	c0        time.Duration
	t0        time.Time
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *cpuMeter) start() { m.c0, m.t0 = processCPU(), time.Now() }
func (m *cpuMeter) stop() {
	m.cpu += processCPU() - m.c0
	m.wall += time.Since(m.t0)
}

func (m *cpuMeter) report(b *testing.B, bytes int64) {
	if m.wall > 0 && bytes > 0 {
		b.ReportMetric(m.cpu.Seconds()/m.wall.Seconds(), "cores")
		b.ReportMetric(m.cpu.Seconds()/(float64(bytes)/(1<<30)), "core-s/GiB")
	}
}

// BenchmarkJournal writes a guest's series (generation 0, then five at 5%
// dirty; 128 MiB each) in page mode with the journal (format 5) and
// without it (NoJournal), alternately in one run, and reports the
// ingest's MB/s and core-seconds per GiB, the journal's size as a share
// of the stored chunk bytes, and the rebuild's seconds per GiB stored.
func BenchmarkJournal(b *testing.B) {
	var imgs [][]byte
	for gen := range 6 {
		g := xentest.Guest{Name: "g", UUID: "u", Pages: 32768, VCPUs: 1, Seed: 3, Gen: gen, Dirty: 0.05}
		imgs = append(imgs, g.Bytes())
	}
	var total int64
	for _, img := range imgs {
		total += int64(len(img))
	}
	for _, journal := range []string{"on", "off"} {
		b.Run("journal="+journal, func(b *testing.B) {
			b.SetBytes(total)
			var busy cpuMeter
			var share, rebuild, rebuildLogical float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := filepath.Join(b.TempDir(), "s")
				o := chunkstore.DefaultOptions()
				o.NoJournal = journal == "off"
				cs, err := chunkstore.Open(dir, o)
				if err != nil {
					b.Fatal(err)
				}
				x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
				if err != nil {
					b.Fatal(err)
				}
				cfg := DefaultConfig()
				cfg.Pages = xenPages(x, true)
				cfg.Runs = lineage.Of(x)
				s := New(cs, cs, x, cfg)
				runtime.GC()
				b.StartTimer()
				busy.start()
				for g, img := range imgs {
					putFile(b, s, x, fmt.Sprint("c", g), img)
				}
				busy.stop()
				b.StopTimer()
				s.Close()
				if err := cs.Close(); err != nil {
					b.Fatal(err)
				}
				if journal == "off" {
					continue
				}
				seg := dirBytes(filepath.Join(dir, chunkstore.SegmentDir), ".seg")
				share += float64(dirBytes(filepath.Join(dir, chunkstore.JournalDir), "")) / float64(seg)
				if _, err := chunkstore.RemoveDatabaseForTest(dir); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if _, err := chunkstore.Rebuild(dir); err != nil {
					b.Fatal(err)
				}
				took := time.Since(t0).Seconds()
				rebuild += took / (float64(seg) / (1 << 30))
				rebuildLogical += took / (float64(total) / (1 << 30))
			}
			busy.report(b, total*int64(b.N))
			if journal == "on" {
				b.ReportMetric(100*share/float64(b.N), "journal-%-of-stored")
				b.ReportMetric(rebuild/float64(b.N), "rebuild-s/GiB-stored")
				b.ReportMetric(rebuildLogical/float64(b.N), "rebuild-s/GiB-logical")
			}
		})
	}
}

// dirBytes sums the sizes of the files in dir whose names end in suffix.
func dirBytes(dir, suffix string) int64 {
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && !e.IsDir() && strings.HasSuffix(e.Name(), suffix) {
			n += fi.Size()
		}
	}
	return n
}
