// Package metrics serves a mounted store's figures to Prometheus. It knows
// nothing of stores: the daemon hands it a Source, read at each scrape.
// Counters are cheap and read every time; the store's totals (a walk of
// its chunk keys and inodes) are recomputed when they are MaxAge old, or
// MinAge old and the store changed since (bytes written, images, gc runs).
//
// Every metric, its type and what it counts:
//
//	| metric                               | type    | labels             | what                                                                           |
//	|--------------------------------------|---------|--------------------|--------------------------------------------------------------------------------|
//	| ckptfs_written_bytes_total           | counter |                    | bytes written into files through the mount                                     |
//	| ckptfs_read_bytes_total              | counter |                    | bytes read from files through the mount                                        |
//	| ckptfs_chunks_written_total          | counter | kind               | chunks written: new (stored), dup (already there), zero (all-zero, not stored) |
//	| ckptfs_stored_written_bytes_total    | counter |                    | encoded (compressed) bytes of the new chunks                                   |
//	| ckptfs_images_total                  | counter |                    | whole xl save images committed                                                 |
//	| ckptfs_errors_total                  | counter | op                 | requests failed with EIO (each is logged), by operation (read, write, fsync...) |
//	| ckptfs_image_ingest_seconds          | histogram |                  | xl save images' time from open for writing to commit (write-behind included)   |
//	| ckptfs_corrupt_chunks_total          | counter |                    | chunk reads that failed their BLAKE3 check                                     |
//	| ckptfs_gc_runs_total                 | counter |                    | gc runs (by policy, ckptfs gc, or xen receive's expiry)                        |
//	| ckptfs_gc_expired_files_total        | counter |                    | files gc expired                                                               |
//	| ckptfs_gc_freed_bytes_total          | counter |                    | stored bytes gc freed (chunks deleted)                                         |
//	| ckptfs_spool_files                   | gauge   |                    | files written behind (spooled) whose storing has not ended                     |
//	| ckptfs_spool_bytes                   | gauge   |                    | spooled bytes not yet fed to the store (the write-behind backlog)              |
//	| ckptfs_gc_last_run_timestamp_seconds | gauge   |                    | end of the last gc run (0: none yet)                                           |
//	| ckptfs_logical_bytes                 | gauge   |                    | sum of the sizes of all files                                                  |
//	| ckptfs_stored_bytes                  | gauge   |                    | sum of the encoded sizes of all chunks                                         |
//	| ckptfs_chunks                        | gauge   |                    | chunks stored                                                                  |
//	| ckptfs_store_disk_bytes              | gauge   |                    | bytes of the store's own files on disk (what du of the store says)             |
//	| ckptfs_files                         | gauge   |                    | regular files                                                                  |
//	| ckptfs_guest_generations             | gauge   | guest,uuid,uid,dir | whole xl save images of the guest                                              |
//	| ckptfs_guest_logical_bytes           | gauge   | guest,uuid,uid,dir | their sizes summed                                                             |
//	| ckptfs_guest_new_bytes               | gauge   | guest,uuid,uid,dir | stored bytes the guest's images added when written, summed                     |
//	| ckptfs_guest_newest_timestamp_seconds| gauge   | guest,uuid,uid,dir | modification time of the newest generation: alert on time() - it              |
//	| ckptfs_guest_oldest_timestamp_seconds| gauge   | guest,uuid,uid,dir | modification time of the oldest                                                |
//	| ckptfs_disk_free_bytes               | gauge   |                    | bytes free to the daemon on the store's filesystem                             |
//	| ckptfs_disk_size_bytes               | gauge   |                    | size of the store's filesystem                                                 |
//	| ckptfs_totals_timestamp_seconds      | gauge   |                    | when the totals above were computed (see MaxAge, MinAge)                       |
//	| ckptfs_scrape_error                  | gauge   |                    | 1 if the totals could not be computed at this scrape                           |
//
// The Go runtime's and the process's standard metrics (go_*, process_*)
// are served too, and ckptfs_build_info (version, revision, goversion,
// format labels; value 1). Times are Unix timestamps, as Prometheus's
// conventions have them: alert on time() - ckptfs_guest_newest_timestamp_seconds.
package metrics

import (
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Counters are the daemon's running counts since it started.
type Counters struct {
	WrittenBytes, ReadBytes          int64
	NewChunks, DupChunks, ZeroChunks int64
	StoredWrittenBytes, Images       int64
	Errors                           map[string]int64 // EIO answers by operation
	Corrupt                          int64
	GCRuns, GCExpired, GCFreedBytes  int64
	GCLast                           time.Time // zero: no run yet
	// Write-behind, now (gauges): files spooled whose storing has not
	// ended, and the spooled bytes not yet fed to the store.
	SpoolFiles, SpoolBytes int64
	// ImageIngest is the histogram of xl save images' ingest times, open
	// to commit (fs.ImageBuckets).
	ImageIngest Histogram
}

// Histogram is a histogram's state: Counts per upper bound of Bounds (not
// cumulative), one more past the last, and the sum of the observations.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
}

// Guest is one guest's lineage: its images that one owner (UID) keeps in
// one directory (Dir), as gc groups them; another user's images of the
// same guest are another lineage, never this one's.
type Guest struct {
	Name, UUID     string
	UID            uint32
	Dir            string
	Generations    int
	LogicalBytes   int64
	NewBytes       int64 // stored bytes its images added when written
	Newest, Oldest time.Time
}

// Totals are what the store holds, computed by walking it.
type Totals struct {
	LogicalBytes, StoredBytes, Chunks, DiskBytes, Files int64
	Guests                                              []Guest
}

// Source is what the daemon gives: its counters, its totals, and its
// disk's free and total bytes.
type Source interface {
	Counters() Counters
	Totals() (Totals, error)
	Disk() (free, size uint64, err error)
}

// MaxAge is how long computed totals serve scrapes; MinAge, how long
// they do once the store has changed.
const (
	MaxAge = 5 * time.Minute
	MinAge = time.Second
)

type collector struct {
	src    Source
	maxAge time.Duration
	now    func() time.Time

	mu     sync.Mutex
	totals Totals
	at     time.Time
	key    [3]int64 // the counters that say the store changed, at at
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("ckptfs_"+name, help, labels, nil)
}

var (
	dWritten     = desc("written_bytes_total", "Bytes written into files through the mount.")
	dRead        = desc("read_bytes_total", "Bytes read from files through the mount.")
	dChunks      = desc("chunks_written_total", "Chunks written: new (stored), dup (already stored), zero (all-zero, not stored).", "kind")
	dStoredW     = desc("stored_written_bytes_total", "Encoded bytes of the new chunks written.")
	dImages      = desc("images_total", "Whole xl save images committed.")
	dErrors      = desc("errors_total", "Requests failed with EIO, by operation.", "op")
	dIngest      = desc("image_ingest_seconds", "Time from an xl save image's open for writing to its commit (write-behind included).")
	dCorrupt     = desc("corrupt_chunks_total", "Chunk reads that failed their BLAKE3 check.")
	dGCRuns      = desc("gc_runs_total", "gc runs.")
	dGCExpired   = desc("gc_expired_files_total", "Files gc expired.")
	dGCFreed     = desc("gc_freed_bytes_total", "Stored bytes gc freed.")
	dSpoolFiles  = desc("spool_files", "Files written behind (spooled) whose storing has not ended.")
	dSpoolBytes  = desc("spool_bytes", "Spooled bytes not yet fed to the store.")
	dGCLast      = desc("gc_last_run_timestamp_seconds", "End of the last gc run, 0 if none.")
	dLogical     = desc("logical_bytes", "Sum of the sizes of all files.")
	dStored      = desc("stored_bytes", "Sum of the encoded sizes of all chunks.")
	dChunkCount  = desc("chunks", "Chunks stored.")
	dDisk        = desc("store_disk_bytes", "Bytes of the store's own files on disk (du of the store).")
	dFiles       = desc("files", "Regular files.")
	dGens        = desc("guest_generations", "Whole xl save images of the guest.", "guest", "uuid", "uid", "dir")
	dGuestBytes  = desc("guest_logical_bytes", "Sizes of the guest's images summed.", "guest", "uuid", "uid", "dir")
	dGuestNew    = desc("guest_new_bytes", "Stored bytes the guest's images added when written, summed.", "guest", "uuid", "uid", "dir")
	dNewest      = desc("guest_newest_timestamp_seconds", "Modification time of the guest's newest generation.", "guest", "uuid", "uid", "dir")
	dOldest      = desc("guest_oldest_timestamp_seconds", "Modification time of the guest's oldest generation.", "guest", "uuid", "uid", "dir")
	dFree        = desc("disk_free_bytes", "Bytes free to the daemon on the store's filesystem.")
	dSize        = desc("disk_size_bytes", "Size of the store's filesystem.")
	dTotalsAt    = desc("totals_timestamp_seconds", "When the totals (logical, stored, chunks, guests) were computed.")
	dScrapeError = desc("scrape_error", "1 if the totals could not be computed at this scrape.")
)

var all = []*prometheus.Desc{dWritten, dRead, dChunks, dStoredW, dImages, dErrors, dIngest, dCorrupt,
	dGCRuns, dGCExpired, dGCFreed, dGCLast, dSpoolFiles, dSpoolBytes, dLogical, dStored, dChunkCount, dDisk, dFiles,
	dGens, dGuestBytes, dGuestNew, dNewest, dOldest, dFree, dSize, dTotalsAt, dScrapeError}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	cnt := func(d *prometheus.Desc, v int64, labels ...string) {
		m(d, prometheus.CounterValue, float64(v), labels...)
	}
	k := c.src.Counters()
	cnt(dWritten, k.WrittenBytes)
	cnt(dRead, k.ReadBytes)
	cnt(dChunks, k.NewChunks, "new")
	cnt(dChunks, k.DupChunks, "dup")
	cnt(dChunks, k.ZeroChunks, "zero")
	cnt(dStoredW, k.StoredWrittenBytes)
	cnt(dImages, k.Images)
	for _, op := range slices.Sorted(maps.Keys(k.Errors)) {
		cnt(dErrors, k.Errors[op], op)
	}
	cnt(dCorrupt, k.Corrupt)
	if h := k.ImageIngest; len(h.Counts) == len(h.Bounds)+1 {
		cum, total := map[float64]uint64{}, uint64(0)
		for i, b := range h.Bounds {
			total += h.Counts[i]
			cum[b] = total
		}
		total += h.Counts[len(h.Bounds)]
		ch <- prometheus.MustNewConstHistogram(dIngest, total, h.Sum, cum)
	}
	cnt(dGCRuns, k.GCRuns)
	cnt(dGCExpired, k.GCExpired)
	cnt(dGCFreed, k.GCFreedBytes)
	last := 0.0
	if !k.GCLast.IsZero() {
		last = unixSeconds(k.GCLast)
	}
	m(dGCLast, prometheus.GaugeValue, last)
	m(dSpoolFiles, prometheus.GaugeValue, float64(k.SpoolFiles))
	m(dSpoolBytes, prometheus.GaugeValue, float64(k.SpoolBytes))

	now := c.now()
	t, at, err := c.current(now, [3]int64{k.WrittenBytes, k.Images, k.GCRuns})
	g := func(d *prometheus.Desc, v float64, labels ...string) { m(d, prometheus.GaugeValue, v, labels...) }
	if err != nil {
		g(dScrapeError, 1)
	} else {
		g(dScrapeError, 0)
	}
	if !at.IsZero() {
		g(dLogical, float64(t.LogicalBytes))
		g(dStored, float64(t.StoredBytes))
		g(dChunkCount, float64(t.Chunks))
		g(dDisk, float64(t.DiskBytes))
		g(dFiles, float64(t.Files))
		for _, gu := range t.Guests {
			g(dGens, float64(gu.Generations), gu.Name, gu.UUID, strconv.FormatUint(uint64(gu.UID), 10), gu.Dir)
			g(dGuestBytes, float64(gu.LogicalBytes), gu.Name, gu.UUID, strconv.FormatUint(uint64(gu.UID), 10), gu.Dir)
			g(dGuestNew, float64(gu.NewBytes), gu.Name, gu.UUID, strconv.FormatUint(uint64(gu.UID), 10), gu.Dir)
			g(dNewest, unixSeconds(gu.Newest), gu.Name, gu.UUID, strconv.FormatUint(uint64(gu.UID), 10), gu.Dir)
			g(dOldest, unixSeconds(gu.Oldest), gu.Name, gu.UUID, strconv.FormatUint(uint64(gu.UID), 10), gu.Dir)
		}
		g(dTotalsAt, unixSeconds(at))
	}
	if free, size, err := c.src.Disk(); err == nil {
		g(dFree, float64(free))
		g(dSize, float64(size))
	}
}

// current returns the totals, recomputed if older than maxAge, or than
// MinAge with key (counters) changed; at is when they were computed (zero
// if never).
func (c *collector) current(now time.Time, key [3]int64) (Totals, time.Time, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	age := now.Sub(c.at)
	if !c.at.IsZero() && age < c.maxAge && (key == c.key || age < MinAge) {
		return c.totals, c.at, nil
	}
	t, err := c.src.Totals()
	if err != nil {
		return c.totals, c.at, err
	}
	c.totals, c.at, c.key = t, now, key
	return t, now, nil
}

// Handler serves src's metrics, with the Go runtime's and the process's,
// in Prometheus's text format.
func Handler(src Source) http.Handler {
	return handler(src, MaxAge, time.Now)
}

func handler(src Source, maxAge time.Duration, now func() time.Time) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{src: src, maxAge: maxAge, now: now}, buildInfoGauge(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// unixSeconds is t as a Prometheus timestamp: seconds since the epoch.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
