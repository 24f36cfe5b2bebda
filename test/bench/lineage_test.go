package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkRestoreLineage writes a lineage of checkpoints of one guest
// (default 256 MiB, 40 generations at 2% dirty pages; CKPTFS_LINEAGE_PAGES,
// CKPTFS_LINEAGE_GENS, CKPTFS_LINEAGE_DIRTY scale it), all kept, through
// each ckptfs mount (and CKPTFS_OLD_BIN's), then reads the first and the
// newest image cold, as xl restore does (1 MiB sequential reads, page
// cache dropped before each). It reports the newest's read speed against
// the first's (the 0.60x at 60 generations on format 3); the plain
// file's two reads are the disk's.
func BenchmarkRestoreLineage(b *testing.B) {
	pages := int64(envInt("CKPTFS_LINEAGE_PAGES", 65536))
	gens := envInt("CKPTFS_LINEAGE_GENS", 40)
	dirty := 0.02
	if d := os.Getenv("CKPTFS_LINEAGE_DIRTY"); d != "" {
		fmt.Sscan(d, &dirty)
	}
	ts := targets(b)
	ts = append(ts, oldTarget(b)...)
	for i := 0; i < b.N; i++ {
		for gen := 0; gen < gens; gen++ {
			g := xentest.Guest{Name: "lineage", UUID: fmt.Sprintf("11e49e00-0000-4000-8000-%012d", i), Pages: pages, VCPUs: 2, Seed: 23, Gen: gen, Dirty: dirty}
			img := g.Bytes()
			for _, t := range ts {
				if t.name == "noop-fuse" || (t.name == "plain" && gen != 0 && gen != gens-1) {
					continue
				}
				if err := os.WriteFile(filepath.Join(t.dir, fmt.Sprintf("l%d-c%03d", i, gen)), img, 0o644); err != nil {
					b.Fatal(err)
				}
			}
		}
		quiesce(ts) // the daemons' compactions after the writes are not the reads'
		for _, t := range ts {
			if t.name == "noop-fuse" {
				continue
			}
			first := readCold(b, filepath.Join(t.dir, fmt.Sprintf("l%d-c%03d", i, 0)))
			last := readCold(b, filepath.Join(t.dir, fmt.Sprintf("l%d-c%03d", i, gens-1)))
			b.Logf("series %d, %s: first %.0f MB/s, newest of %d %.0f MB/s: %.2fx", i, t.name, first, gens, last, last/first)
			b.ReportMetric(last/first, t.name+"-newest-vs-first")
			b.ReportMetric(last, t.name+"-newest-MB/s")
		}
	}
}

// readCold drops the page cache and reads path in 1 MiB reads, returning
// MB/s.
func readCold(b *testing.B, path string) float64 {
	dropCaches()
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}
