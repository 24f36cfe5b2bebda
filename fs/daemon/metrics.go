package daemon

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/fs/metrics"
	"github.com/ckptfs/ckptfs/gc"
)

// mountMetrics is the mount daemon as a metrics.Source.
type mountMetrics struct {
	d     *Daemon
	store string
	data  *content.Store
}

// serveMetrics serves src's metrics at /metrics on ln until stop is
// called; stop waits for scrapes in progress (they read the store).
func serveMetrics(ln net.Listener, src metrics.Source) (stop func()) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Handler(src))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.Error(w, "ckptfs serves its metrics at /metrics", http.StatusNotFound)
			return
		}
		// A landing page, as Prometheus exporters have.
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		b := metrics.Build()
		fmt.Fprintf(w, "<html><head><title>ckptfs</title></head><body><h1>ckptfs</h1><p>%s (store format %d)</p><p><a href=\"/metrics\">Metrics</a></p></body></html>\n",
			html.EscapeString(b.Version), b.Format)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
}

func (m *mountMetrics) Counters() metrics.Counters {
	c, f := m.data.Counters(), m.d.FS.Counters()
	runs, expired, freed, last := m.d.GCCounters()
	spoolFiles, spoolBytes := m.d.FS.Backlog()
	counts, sum := f.ImageIngest()
	return metrics.Counters{
		ImageIngest: metrics.Histogram{Bounds: fs.ImageBuckets[:], Counts: counts, Sum: sum},
		SpoolFiles:  int64(spoolFiles), SpoolBytes: spoolBytes,
		WrittenBytes: c.BytesWritten.Load(), ReadBytes: f.ReadBytes.Load(),
		NewChunks: c.ChunksNew.Load(), DupChunks: c.ChunksDup.Load(), ZeroChunks: c.ChunksZero.Load(),
		StoredWrittenBytes: c.StoredBytes.Load(), Images: c.Images.Load(),
		Errors: f.ErrorsByOp(), Corrupt: f.Corrupt.Load(),
		GCRuns: runs, GCExpired: expired, GCFreedBytes: freed, GCLast: last,
	}
}

func (m *mountMetrics) Totals() (metrics.Totals, error) {
	s, err := gc.ComputeStats(m.d.Chunks, m.d.Index)
	if err != nil {
		return metrics.Totals{}, err
	}
	t := metrics.Totals{LogicalBytes: s.LogicalBytes, StoredBytes: s.StoredBytes, Chunks: s.Chunks,
		DiskBytes: s.DiskBytes, Files: s.Files}
	for _, l := range s.Lineages {
		var added int64
		for _, n := range l.NewBytes {
			added += n
		}
		t.Guests = append(t.Guests, metrics.Guest{Name: l.Name, UUID: l.UUID, UID: l.UID, Dir: l.Dir, Generations: l.Generations,
			LogicalBytes: l.LogicalBytes, NewBytes: added, Newest: time.Unix(0, l.Newest), Oldest: time.Unix(0, l.Oldest)})
	}
	return t, nil
}

func (m *mountMetrics) Disk() (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.store, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", m.store, errors.Unwrap(err))
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
