package metrics

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

type fake struct {
	c      Counters
	t      Totals
	err    error
	totals int // Totals calls
}

func (f *fake) Counters() Counters { return f.c }
func (f *fake) Totals() (Totals, error) {
	f.totals++
	return f.t, f.err
}
func (f *fake) Disk() (uint64, uint64, error) { return 1 << 30, 4 << 30, nil }

func get(t *testing.T, src Source, maxAge time.Duration, now func() time.Time) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	handler(src, maxAge, now).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, rec.Body)
	}
	return fams
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestMetrics(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	src := &fake{
		c: Counters{WrittenBytes: 100, ReadBytes: 50, NewChunks: 3, DupChunks: 4, ZeroChunks: 5, StoredWrittenBytes: 40,
			Images: 2, Errors: map[string]int64{"read": 1, "write": 0}, Corrupt: 1,
			ImageIngest: Histogram{Bounds: []float64{1, 10}, Counts: []uint64{2, 1, 1}, Sum: 33.5}, GCRuns: 6, GCExpired: 7, GCFreedBytes: 8, GCLast: now.Add(-time.Minute)},
		t: Totals{LogicalBytes: 1000, StoredBytes: 250, Chunks: 9, DiskBytes: 300, Files: 4,
			Guests: []Guest{{Name: "web1", UUID: "u1", Generations: 3, LogicalBytes: 900, NewBytes: 120, Newest: now.Add(-10 * time.Second), Oldest: now.Add(-time.Hour)}}},
	}
	fams := get(t, src, time.Minute, func() time.Time { return now })
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ckptfs_written_bytes_total", nil, 100},
		{"ckptfs_read_bytes_total", nil, 50},
		{"ckptfs_chunks_written_total", []string{"kind", "new"}, 3},
		{"ckptfs_chunks_written_total", []string{"kind", "dup"}, 4},
		{"ckptfs_chunks_written_total", []string{"kind", "zero"}, 5},
		{"ckptfs_stored_written_bytes_total", nil, 40},
		{"ckptfs_images_total", nil, 2},
		{"ckptfs_errors_total", []string{"op", "read"}, 1},
		{"ckptfs_errors_total", []string{"op", "write"}, 0},
		{"ckptfs_corrupt_chunks_total", nil, 1},
		{"ckptfs_gc_runs_total", nil, 6},
		{"ckptfs_gc_expired_files_total", nil, 7},
		{"ckptfs_gc_freed_bytes_total", nil, 8},
		{"ckptfs_gc_last_run_timestamp_seconds", nil, float64(now.Unix() - 60)},
		{"ckptfs_logical_bytes", nil, 1000},
		{"ckptfs_stored_bytes", nil, 250},
		{"ckptfs_chunks", nil, 9},
		{"ckptfs_store_disk_bytes", nil, 300},
		{"ckptfs_files", nil, 4},
		{"ckptfs_guest_generations", []string{"guest", "web1", "uuid", "u1"}, 3},
		{"ckptfs_guest_logical_bytes", []string{"guest", "web1"}, 900},
		{"ckptfs_guest_new_bytes", []string{"guest", "web1"}, 120},
		{"ckptfs_guest_newest_timestamp_seconds", []string{"guest", "web1"}, float64(now.Unix() - 10)},
		{"ckptfs_guest_oldest_timestamp_seconds", []string{"guest", "web1"}, float64(now.Unix() - 3600)},
		{"ckptfs_disk_free_bytes", nil, 1 << 30},
		{"ckptfs_disk_size_bytes", nil, 4 << 30},
		{"ckptfs_scrape_error", nil, 0},
		{"ckptfs_totals_timestamp_seconds", nil, float64(now.Unix())},
	} {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	// The ingest histogram: cumulative buckets, every observation counted.
	if f := fams["ckptfs_image_ingest_seconds"]; f == nil || len(f.Metric) != 1 || f.Metric[0].Histogram == nil {
		t.Errorf("no ckptfs_image_ingest_seconds histogram: %v", f)
	} else {
		h := f.Metric[0].Histogram
		var got []string
		for _, b := range h.Bucket {
			got = append(got, fmt.Sprintf("le=%g:%d", b.GetUpperBound(), b.GetCumulativeCount()))
		}
		if h.GetSampleCount() != 4 || h.GetSampleSum() != 33.5 || strings.Join(got, " ") != "le=1:2 le=10:3 le=+Inf:4" {
			t.Errorf("ingest histogram: count %d, sum %g, buckets %v; want 4, 33.5, [le=1:2 le=10:3 le=+Inf:4]", h.GetSampleCount(), h.GetSampleSum(), got)
		}
	}
}

// The totals walk the store: they are computed again once maxAge old, or
// MinAge old when the counters say the store changed; a failed walk keeps
// the last totals and says so.
func TestMetricsTotalsCached(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	src := &fake{t: Totals{Chunks: 1}}
	h := handler(src, time.Minute, clock)
	scrapeOnce := func() map[string]*dto.MetricFamily {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var p expfmt.TextParser
		fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	scrapeOnce()
	now = now.Add(30 * time.Second)
	src.t.Chunks = 2
	fams := scrapeOnce()
	if src.totals != 1 || value(t, fams, "ckptfs_chunks") != 1 || value(t, fams, "ckptfs_totals_timestamp_seconds") != float64(now.Unix()-30) {
		t.Errorf("within maxAge, unchanged: %d walks, chunks %v", src.totals, value(t, fams, "ckptfs_chunks"))
	}
	src.c.WrittenBytes = 1 // the store changed
	if fams = scrapeOnce(); src.totals != 2 || value(t, fams, "ckptfs_chunks") != 2 {
		t.Errorf("changed, older than MinAge: %d walks, chunks %v", src.totals, value(t, fams, "ckptfs_chunks"))
	}
	src.c.WrittenBytes = 2
	now = now.Add(MinAge / 2)
	if scrapeOnce(); src.totals != 2 {
		t.Errorf("changed, younger than MinAge: %d walks", src.totals)
	}
	src.t.Chunks = 1
	now = now.Add(61 * time.Second)
	src.err = errors.New("disk on fire")
	fams = scrapeOnce()
	if src.totals != 3 || value(t, fams, "ckptfs_scrape_error") != 1 || value(t, fams, "ckptfs_chunks") != 2 {
		t.Errorf("failed walk: %d walks, error %v, chunks %v", src.totals, value(t, fams, "ckptfs_scrape_error"), value(t, fams, "ckptfs_chunks"))
	}
	src.err = nil
	fams = scrapeOnce()
	if value(t, fams, "ckptfs_chunks") != 1 || value(t, fams, "ckptfs_scrape_error") != 0 {
		t.Errorf("after recovery: chunks %v", value(t, fams, "ckptfs_chunks"))
	}
}

// TestMetricsLint: every metric follows Prometheus's naming conventions
// (promlint, what promtool check metrics runs): units in names, _total on
// counters, no ratio that is not 0-1.
func TestMetricsLint(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	src := &fake{t: Totals{Chunks: 1, Guests: []Guest{{Name: "web1", UUID: "u1", Generations: 1, Newest: now, Oldest: now}}}}
	problems, err := testutil.CollectAndLint(&collector{src: src, maxAge: time.Minute, now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
