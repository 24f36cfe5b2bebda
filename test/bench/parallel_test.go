package bench

import (
	"fmt"
	"os"
	"path/filepath"
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
