package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/metrics"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func scrapeMetrics(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return fams
}

// metric returns the value of the sample of name whose labels include
// labels (name=value pairs); -1 if there is none.
func metric(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, l := range m.Label {
				ok = ok || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
			}
			if !ok {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()) // observations
		}
		return m.Gauge.GetValue()
	}
	return -1
}

// TestMetrics: a mount with -o metrics=ADDR serves Prometheus metrics that
// follow what is written, read and collected.
func TestMetrics(t *testing.T) {
	tmp := t.TempDir()
	addr := freePort(t)
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"), "-o", "metrics="+addr)
	fams := scrapeMetrics(t, addr)
	if metric(fams, "ckptfs_written_bytes_total") != 0 || metric(fams, "ckptfs_disk_free_bytes") <= 0 {
		t.Fatalf("fresh mount: written %v, disk free %v", metric(fams, "ckptfs_written_bytes_total"), metric(fams, "ckptfs_disk_free_bytes"))
	}
	if bi := fams["ckptfs_build_info"]; bi == nil || len(bi.GetMetric()) != 1 || bi.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Fatalf("ckptfs_build_info: %v", bi)
	} else if !slices.ContainsFunc(bi.GetMetric()[0].GetLabel(), func(l *dto.LabelPair) bool {
		return l.GetName() == "format" && l.GetValue() == strconv.Itoa(chunkstore.FormatVersion)
	}) {
		t.Fatalf("ckptfs_build_info has no format=%d label: %v", chunkstore.FormatVersion, bi)
	}
	dir := filepath.Join(d.mnt, "web1")
	os.Mkdir(dir, 0o755)
	var written int
	for gen := range 3 {
		img := xentest.Guest{Name: "web1", UUID: "3e7a0000-0000-4000-8000-000000000001", Pages: 2048, VCPUs: 1, Seed: 5, Gen: gen, Dirty: 0.1}.Bytes()
		if err := os.WriteFile(filepath.Join(dir, "c"+string(rune('0'+gen))), img, 0o600); err != nil {
			t.Fatal(err)
		}
		written += len(img)
	}
	b, err := os.ReadFile(filepath.Join(dir, "latest"))
	if err != nil {
		t.Fatal(err)
	}
	if out, code := run(t, "gc", "--keep-last", "1", store); code != 0 {
		t.Fatalf("gc: %s", out)
	}
	time.Sleep(metrics.MinAge) // the totals are recomputed once MinAge old
	fams = scrapeMetrics(t, addr)
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"ckptfs_written_bytes_total", nil, func(v float64) bool { return v == float64(written) }, "the bytes written"},
		{"ckptfs_read_bytes_total", nil, func(v float64) bool { return v >= float64(len(b)) }, "at least the image read"},
		{"ckptfs_images_total", nil, func(v float64) bool { return v == 3 }, "3"},
		{"ckptfs_image_ingest_seconds", nil, func(v float64) bool { return v == 3 }, "3 images observed"},
		{"ckptfs_chunks_written_total", []string{"kind", "new"}, func(v float64) bool { return v > 1000 }, "> 1000 pages"},
		{"ckptfs_gc_runs_total", nil, func(v float64) bool { return v == 1 }, "1"},
		{"ckptfs_gc_expired_files_total", nil, func(v float64) bool { return v == 2 }, "2"},
		{"ckptfs_gc_freed_bytes_total", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"ckptfs_gc_last_run_timestamp_seconds", nil, func(v float64) bool { return v > 1.7e9 }, "a time"},
		{"ckptfs_guest_generations", []string{"guest", "web1"}, func(v float64) bool { return v == 1 }, "1 after gc"},
		{"ckptfs_guest_newest_timestamp_seconds", []string{"guest", "web1"}, func(v float64) bool { return age(v) >= 0 && age(v) < 600 }, "a recent time"},
		{"ckptfs_guest_new_bytes", []string{"guest", "web1"}, func(v float64) bool { return v > 0 }, "> 0"},
		{"ckptfs_store_disk_bytes", nil, func(v float64) bool { return v > 0 }, "> 0"},
		{"ckptfs_errors_total", []string{"op", "read"}, func(v float64) bool { return v == 0 }, "0"},
		{"ckptfs_errors_total", []string{"op", "write-behind"}, func(v float64) bool { return v == 0 }, "0"},
		{"ckptfs_corrupt_chunks_total", nil, func(v float64) bool { return v == 0 }, "0"},
		{"ckptfs_scrape_error", nil, func(v float64) bool { return v == 0 }, "0"},
		{"ckptfs_spool_files", nil, func(v float64) bool { return v == 0 }, "0 once every file is stored"},
		{"ckptfs_spool_bytes", nil, func(v float64) bool { return v == 0 }, "0"},
	} {
		if v := metric(fams, c.name, c.labels...); !c.ok(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
	// A file being written behind its writer is counted until it is
	// stored.
	w, err := os.Create(filepath.Join(d.mnt, "spooling"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if v := metric(scrapeMetrics(t, addr), "ckptfs_spool_files"); v != 1 {
		t.Errorf("ckptfs_spool_files with a file open and spooled = %v, want 1", v)
	}
	w.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if v := metric(scrapeMetrics(t, addr), "ckptfs_spool_files"); v == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Errorf("ckptfs_spool_files = %v 20 s after the close, want 0", v)
			break
		}
	}
	// Another user's image with root's guest name and UUID is a lineage
	// of its own: it does not reset root's newest age (the "checkpoints
	// stopped" alert).
	if os.Geteuid() == 0 {
		old := time.Now().Add(-time.Hour)
		os.Chtimes(filepath.Join(dir, "c2"), old, old)
		shared := filepath.Join(d.mnt, "shared")
		os.Mkdir(shared, 0o1777)
		syscall.Chmod(shared, 0o1777)
		os.Chmod(d.mnt, 0o755)
		img := xentest.Guest{Name: "web1", UUID: "3e7a0000-0000-4000-8000-000000000001", Pages: 2048, VCPUs: 1, Seed: 5, Gen: 7, Dirty: 0.1}.Bytes()
		// (written by root and given away: the mount has no allow_other)
		if err := os.WriteFile(filepath.Join(shared, "theirs"), img, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chown(filepath.Join(shared, "theirs"), 65534, 65534)
		time.Sleep(metrics.MinAge)
		fams = scrapeMetrics(t, addr)
		if v := age(metric(fams, "ckptfs_guest_newest_timestamp_seconds", "guest", "web1", "uid", "0", "dir", "/web1")); v < 3000 {
			t.Errorf("root's web1 lineage: newest age %v s, want about an hour", v)
		}
		if v := age(metric(fams, "ckptfs_guest_newest_timestamp_seconds", "guest", "web1", "uid", "65534", "dir", "/shared")); v < 0 || v > 600 {
			t.Errorf("uid 65534's lineage: newest age %v s, want a series of its own", v)
		}
	}
	// A busy address is a clear error before anything is mounted.
	os.Mkdir(filepath.Join(tmp, "mnt2"), 0o755)
	out, code := run(t, "mount", "--metrics", addr, filepath.Join(tmp, "store2"), filepath.Join(tmp, "mnt2"))
	if code != 2 || !strings.Contains(out, "--metrics "+addr) || strings.Contains(out, "goroutine") {
		t.Errorf("busy metrics address: exit %d\n%s", code, out)
	}
}

// age is how long ago Prometheus timestamp ts (Unix seconds) was.
func age(ts float64) float64 { return float64(time.Now().UnixNano())/1e9 - ts }

// TestMetricsLanding: the metrics address answers / with a landing page
// (version, a link to /metrics), as Prometheus exporters do.
func TestMetricsLanding(t *testing.T) {
	tmp := t.TempDir()
	addr := freePort(t)
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), "-o", "metrics="+addr)
	defer d.stop(t)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `href="/metrics"`) || !strings.Contains(string(b), "store format") {
		t.Fatalf("landing page: %d\n%s", resp.StatusCode, b)
	}
}
