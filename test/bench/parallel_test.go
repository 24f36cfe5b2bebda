package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkIngestParallel checkpoints four guests at once (4 x 256 MiB by
// default, the hourly cron of a host; CKPTFS_PAR_GUESTS and
// CKPTFS_PAR_PAGES scale it), three generations at 1% dirty, each image
// written in 4 MiB writes and closed as xl save does, into each target;
// it reports the aggregate throughput of ckptfs (and CKPTFS_OLD_BIN's)
// against the no-op FUSE server and plain files in the same run, as the
// ratio of the plain files' wall time to ckptfs's (below 1: slower).
// GOMAXPROCS of the daemon is the environment's (run it with
// GOMAXPROCS=1 to compare).
func BenchmarkIngestParallel(b *testing.B) {
	guests := envInt("CKPTFS_PAR_GUESTS", 4)
	pages := int64(envInt("CKPTFS_PAR_PAGES", 65536))
	ts := targets(b)
	ts = append(ts, oldTarget(b)...)
	for i := 0; i < b.N; i++ {
		for gen := 0; gen < 3; gen++ {
			imgs := make([][]byte, guests)
			for k := range imgs {
				imgs[k] = xentest.Guest{Name: fmt.Sprint("par", k), UUID: fmt.Sprintf("9a7a1100-0000-4000-8000-%06d%06d", i, k),
					Pages: pages, VCPUs: 2, Seed: uint64(100 + k), Gen: gen, Dirty: 0.01}.Bytes()
			}
			total := float64(guests) * float64(len(imgs[0])) / 1e6
			secs := map[string]float64{}
			for _, t := range ts {
				quiesce(ts)
				start := time.Now()
				var wg sync.WaitGroup
				for k, img := range imgs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						name := filepath.Join(t.dir, fmt.Sprintf("s%d-g%d-c%d", i, k, gen))
						if err := writeImage(name, img, t.sync); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				secs[t.name] = time.Since(start).Seconds()
				for k := range imgs {
					awaitCommit(filepath.Join(t.dir, fmt.Sprintf("s%d-g%d-c%d", i, k, gen)))
				}
				secs[t.name+"/committed"] = time.Since(start).Seconds()
				if !isCkptfs(t) {
					for k := range imgs {
						os.Remove(filepath.Join(t.dir, fmt.Sprintf("s%d-g%d-c%d", i, k, gen)))
					}
				}
			}
			for _, name := range []string{"ckptfs", "ckptfs-sync", "ckptfs-old"} {
				s, ok := secs[name]
				if !ok {
					continue
				}
				b.Logf("series %d gen %d, %d guests: %s %.0f MB/s aggregate to the last close (%.0f to the last commit); no-op %.0f, plain %.0f: plain's time / %s's %.2f, no-op's %.2f",
					i, gen, guests, name, total/s, total/secs[name+"/committed"], total/secs["noop-fuse"], total/secs["plain"], name, secs["plain"]/s, secs["noop-fuse"]/s)
				kind := "gen0"
				if gen > 0 {
					kind = "later"
				}
				b.ReportMetric(secs["plain"]/s, kind+"-"+name+"-speed-vs-plain")
			}
		}
	}
}

// writeImage writes data to path in 4 MiB writes (xl save's page
// batches), fsyncs if asked (the plain file: ckptfs's close is durable),
// and closes it.
func writeImage(path string, data []byte, sync bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	for off := 0; off < len(data); off += 4 << 20 {
		if _, err := f.Write(data[off:min(len(data), off+4<<20)]); err != nil {
			f.Close()
			return err
		}
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// BenchmarkRestoreParallel restores four guests at once (a host coming
// back after a crash): each guest's newest checkpoint (generation 1, 5% of
// its pages dirtied after generation 0; 4 x 256 MiB by default, scaled as
// BenchmarkIngestParallel), page cache dropped, read by four readers at
// once in 1 MiB reads (as xl restore and dd bs=1M read) from each target.
// It reports the aggregate as the ratio of the plain files' wall time to
// ckptfs's (issue 24: >= 1.0) and of the no-op server's, and fairness:
// the slowest reader's time over the fastest's (1.0: all equal).
func BenchmarkRestoreParallel(b *testing.B) {
	guests := envInt("CKPTFS_PAR_GUESTS", 4)
	pages := int64(envInt("CKPTFS_PAR_PAGES", 65536))
	ts := targets(b)
	ts = append(ts, oldTarget(b)...)
	name := func(k, gen int) string { return fmt.Sprintf("r-g%d-c%d", k, gen) }
	var total float64
	for gen := 0; gen < 2; gen++ {
		for k := 0; k < guests; k++ {
			img := xentest.Guest{Name: fmt.Sprint("rest", k), UUID: fmt.Sprintf("9a7a1100-0000-4000-8000-%012d", 900+k),
				Pages: pages, VCPUs: 2, Seed: uint64(200 + k), Gen: gen, Dirty: 0.05}.Bytes()
			for _, t := range ts {
				if gen == 0 && !isCkptfs(t) {
					continue // the lineage lives in ckptfs only
				}
				if err := writeImage(filepath.Join(t.dir, name(k, gen)), img, false); err != nil {
					b.Fatal(err)
				}
				awaitCommit(filepath.Join(t.dir, name(k, gen)))
			}
			if gen == 1 {
				total += float64(len(img)) / 1e6
			}
		}
	}
	for i := 0; i < b.N; i++ {
		secs, spread := map[string]float64{}, map[string]float64{}
		for _, t := range append(ts, ts[:2]...) { // baselines before and after: the faster counts
			quiesce(ts)
			dropCaches()
			each := make([]float64, guests)
			start := time.Now()
			var wg sync.WaitGroup
			for k := 0; k < guests; k++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					if err := readFile(filepath.Join(t.dir, name(k, 1))); err != nil {
						b.Error(err)
					}
					each[k] = time.Since(t0).Seconds()
				}()
			}
			wg.Wait()
			s := time.Since(start).Seconds()
			if old, ok := secs[t.name]; !ok || s < old {
				secs[t.name] = s
				spread[t.name] = slices.Max(each) / slices.Min(each)
			}
		}
		for _, n := range []string{"ckptfs", "ckptfs-old"} {
			s, ok := secs[n]
			if !ok {
				continue
			}
			b.Logf("run %d, %d guests restored at once: %s %.0f MB/s aggregate (slowest reader %.2fx the fastest); no-op %.0f (%.2fx), plain %.0f (%.2fx): plain's time / %s's %.2f, no-op's %.2f",
				i, guests, n, total/s, spread[n], total/secs["noop-fuse"], spread["noop-fuse"], total/secs["plain"], spread["plain"], n, secs["plain"]/s, secs["noop-fuse"]/s)
			b.ReportMetric(secs["plain"]/s, n+"-speed-vs-plain")
			b.ReportMetric(secs["noop-fuse"]/s, n+"-speed-vs-noop")
			b.ReportMetric(spread[n], n+"-slowest-vs-fastest")
		}
	}
}

// readFile reads path to its end in 1 MiB reads.
func readFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
