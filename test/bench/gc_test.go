package bench

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkGCDeleteOne deletes the oldest generation of a guest from a store
// of 2 and from a store of 20 generations (page mode, 5% dirty) and
// collects, reporting time and peak heap of each and their ratio. The
// guest has CKPTFS_GC_PAGES pages (default 131072: 512 MiB; the issue's
// 4 GiB is 1048576).
func BenchmarkGCDeleteOne(b *testing.B) {
	pages := int64(envInt("CKPTFS_GC_PAGES", 131072))
	type result struct {
		collect, compact time.Duration
		peak             uint64
		res              gc.Result
	}
	measure := func(gens int) result {
		dir := filepath.Join(b.TempDir(), "store")
		cs, err := chunkstore.Open(dir, chunkstore.DefaultOptions())
		if err != nil {
			b.Fatal(err)
		}
		defer cs.Close()
		x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
		if err != nil {
			b.Fatal(err)
		}
		cfg := content.DefaultConfig()
		cfg.Pages = fs.XenPages(x, true)
		cfg.Runs = lineage.Of(x)
		s := content.New(cs, cs, x, cfg)
		defer s.Close()
		var first index.Inode
		for g := 0; g < gens; g++ {
			img := xentest.Guest{Name: "big", UUID: "u-gc", Pages: pages, VCPUs: 2, Seed: 1, Gen: g, Dirty: 0.05}.Bytes()
			in, err := x.Create(index.RootIno, fmt.Sprint("gen", g), index.Inode{Mode: syscall.S_IFREG | 0o644})
			if err != nil {
				b.Fatal(err)
			}
			w := s.NewWriter(in)
			for off := 0; off < len(img); off += 1 << 20 {
				if err := w.WriteAt(img[off:min(len(img), off+1<<20)], int64(off), 1); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Commit(); err != nil {
				b.Fatal(err)
			}
			w.Close()
			if g == 0 {
				first = in
			}
		}
		if _, err := gc.Collect(cs, x, true); err != nil { // settle the store first
			b.Fatal(err)
		}
		if _, err := x.Unlink(index.RootIno, "gen0", 2); err != nil {
			b.Fatal(err)
		}
		if err := x.Purge(first.Ino); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		go func() {
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > base.HeapAlloc && m.HeapAlloc-base.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc - base.HeapAlloc)
				}
			}
		}()
		t0 := time.Now()
		res, err := gc.Collect(cs, x, false)
		collect := time.Since(t0)
		close(stop)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := gc.Collect(cs, x, true); err != nil {
			b.Fatal(err)
		}
		return result{collect, time.Since(t1), peak.Load(), res}
	}
	for b.Loop() {
		small, big := measure(2), measure(20)
		for _, r := range []struct {
			n string
			r result
		}{{"2 generations", small}, {"20 generations", big}} {
			b.Logf("%s: collect %.2fs (%d page entries, %d chunks deleted, %d bytes freed), peak heap +%.1f MiB; compaction after %.2fs",
				r.n, r.r.collect.Seconds(), r.r.res.PageEntries, r.r.res.ChunksDeleted, r.r.res.StoredFreed, float64(r.r.peak)/(1<<20), r.r.compact.Seconds())
		}
		b.ReportMetric(big.collect.Seconds()/small.collect.Seconds(), "time-ratio-20/2")
		b.ReportMetric(float64(big.peak)/float64(max(small.peak, 1)), "mem-ratio-20/2")
		b.ReportMetric(big.compact.Seconds()/small.compact.Seconds(), "compact-ratio-20/2")
	}
}
