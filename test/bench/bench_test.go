package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	ckfs "github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/test/sysstat"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// benchSize is 1 GiB; CKPTFS_BENCH_MB overrides it for quick profiling.
var benchSize = func() int {
	if mb, err := strconv.Atoi(os.Getenv("CKPTFS_BENCH_MB")); err == nil && mb > 0 {
		return mb << 20
	}
	return 1 << 30
}()

// target is somewhere to write a file and read it back.
type target struct {
	name string
	dir  string
	sync bool // fsync before close (the plain file: ckptfs's close is durable)
	pid  int  // the serving process (FUSE targets)
}

func dropCaches() {
	if os.Getenv("CKPTFS_BENCH_WARM") != "" {
		return
	}
	sysstat.DropCaches()
}

// writeRead writes data to dir/name in 1 MiB writes, closes it (after
// fsync if asked), drops the page cache, and reads it back in 1 MiB reads.
func writeRead(b *testing.B, t target, name string, data []byte) (wMBs, rMBs float64) {
	p := filepath.Join(t.dir, name)
	dropCaches()
	start := time.Now()
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off:min(len(data), off+1<<20)]); err != nil {
			b.Fatal(err)
		}
	}
	if t.sync {
		f.Sync()
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	w := time.Since(start)
	dropCaches()
	start = time.Now()
	f, err = os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	r := time.Since(start)
	if n != int64(len(data)) {
		b.Fatalf("%s: read %d bytes, want %d", t.name, n, len(data))
	}
	os.Remove(p)
	mb := float64(len(data)) / 1e6
	return mb / w.Seconds(), mb / r.Seconds()
}

// serve starts a FUSE server process and waits for its ready line; it is
// stopped with SIGTERM when tb ends.
func serve(tb testing.TB, cmd *exec.Cmd) int {
	tb.Helper()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "ready") {
	}
	go io.Copy(io.Discard, stdout)
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// targets mounts, each in its own process as in real use, the ckptfs
// daemon and the no-op FUSE server, next to a plain directory on the same
// disk.
func targets(b *testing.B) []target {
	ckfs.RequireFUSE(b)
	tmp := b.TempDir()
	for _, d := range []string{"plain", "noop", "mnt"} {
		os.Mkdir(filepath.Join(tmp, d), 0o755)
	}
	self, _ := os.Executable()
	noop := exec.Command(self, "-test.run=^$")
	noop.Env = append(os.Environ(), "CKPTFS_NOOP_SERVE="+filepath.Join(tmp, "noop"))
	noopPid := serve(b, noop)
	ckPid := serve(b, exec.Command(ckptfsBin, "mount", filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")))
	ts := []target{
		// No fsync: xl save does none, and ckptfs's close returns before
		// its commit (write-behind), with a plain file's durability.
		{name: "plain", dir: filepath.Join(tmp, "plain")},
		{name: "noop-fuse", dir: filepath.Join(tmp, "noop"), pid: noopPid},
		{name: "ckptfs", dir: filepath.Join(tmp, "mnt"), pid: ckPid},
	}
	if os.Getenv("CKPTFS_BENCH_SYNC") != "" {
		// The same engine with close waiting for the commit.
		os.Mkdir(filepath.Join(tmp, "mnt-sync"), 0o755)
		pid := serve(b, exec.Command(ckptfsBin, "mount", "--write-behind=false", filepath.Join(tmp, "store-sync"), filepath.Join(tmp, "mnt-sync")))
		ts = append(ts, target{name: "ckptfs-sync", dir: filepath.Join(tmp, "mnt-sync"), pid: pid})
	}
	return ts
}

// isCkptfs reports whether t is a ckptfs mount (its files are kept: they
// are the lineage).
func isCkptfs(t target) bool { return strings.HasPrefix(t.name, "ckptfs") }

// awaitCommit opens path for reading, which returns once a file closed
// behind its writer is committed (at once elsewhere).
func awaitCommit(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// oldTarget mounts the ckptfs binary CKPTFS_OLD_BIN names (an earlier
// version, for a before/after in the same run), if set.
func oldTarget(b *testing.B) []target {
	old := os.Getenv("CKPTFS_OLD_BIN")
	if old == "" {
		return nil
	}
	tmp := b.TempDir()
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	pid := serve(b, exec.Command(old, "mount", filepath.Join(tmp, "store"), mnt))
	return []target{{name: "ckptfs-old", dir: mnt, pid: pid}}
}

var ckptfsBin string

// TestMain builds the ckptfs binary, or, with CKPTFS_NOOP_SERVE=DIR, serves
// the no-op filesystem at DIR until SIGTERM.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CKPTFS_NOOP_SERVE"); dir != "" {
		srv, err := gofs.Mount(dir, &noopRoot{}, (&ckfs.FS{}).MountOptions(false, false))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ckfs.SetReadAhead(dir, ckfs.ReadAheadKB) // as ckptfs's mount does
		fmt.Println("ready")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		srv.Unmount()
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "ckptfs-bench")
	if err != nil {
		panic(err)
	}
	ckptfsBin = filepath.Join(dir, "ckptfs")
	if out, err := exec.Command("go", "build", "-o", ckptfsBin, "../../cmd/ckptfs").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// BenchmarkThroughput writes and reads 1 GiB of random data and 1 GiB of
// memory-image-like data through each target in the same run, and reports
// ckptfs's throughput as ratios of the no-op FUSE and plain-file figures.
func BenchmarkThroughput(b *testing.B) {
	datasets := []struct {
		name string
		data func() []byte
	}{
		{"random", func() []byte { return memimage.Random(benchSize, 1) }},
		{"memimage", func() []byte {
			return memimage.Image{Seed: 2, Pages: int64(benchSize / memimage.PageSize), Mix: memimage.DefaultMix}.Bytes()
		}},
	}
	for _, ds := range datasets {
		b.Run(ds.name, func(b *testing.B) {
			data := ds.data()
			ts := targets(b)
			for i := 0; i < b.N; i++ {
				res := map[string][2]float64{}
				for _, t := range ts {
					w, r := writeRead(b, t, fmt.Sprint(ds.name, i), data)
					res[t.name] = [2]float64{w, r}
					b.ReportMetric(w, t.name+"-write-MB/s")
					b.ReportMetric(r, t.name+"-read-MB/s")
				}
				ck, noop, plain := res["ckptfs"], res["noop-fuse"], res["plain"]
				b.ReportMetric(ck[0]/noop[0], "write-vs-noop")
				b.ReportMetric(ck[1]/noop[1], "read-vs-noop")
				b.ReportMetric(ck[0]/plain[0], "write-vs-plain")
				b.ReportMetric(ck[1]/plain[1], "read-vs-plain")
			}
		})
	}
}

// TestPeakRSS runs the real daemon, writes 4 GiB of random data (every
// chunk new: the worst case for memory), then a 4 GiB xl save image (page
// mode), and reports its peak RSS (VmHWM) against its RSS once mounted and
// idle. Run by `make bench`
// (CKPTFS_BENCH=1); the 300 MiB target is reported, not asserted.
func TestPeakRSS(t *testing.T) {
	if os.Getenv("CKPTFS_BENCH") == "" {
		t.Skip("benchmark: run with CKPTFS_BENCH=1 (make bench)")
	}
	ckfs.RequireFUSE(t)
	tmp := t.TempDir()
	bin := ckptfsBin
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	// CKPTFS_RSS_FLAGS adds mount flags (e.g. --write-behind=false).
	args := append([]string{"mount"}, strings.Fields(os.Getenv("CKPTFS_RSS_FLAGS"))...)
	args = append(args, filepath.Join(tmp, "store"), mnt)
	cmd := exec.Command(bin, args...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !strings.Contains(sc.Text(), "ready:") {
	}
	idle := vm(t, cmd.Process.Pid, "VmRSS")
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	// Fresh random data for every 64 MiB: generating it is not timed.
	const total = 4 << 30
	var el time.Duration
	for n := 0; n < total; n += 64 << 20 {
		buf := memimage.Random(64<<20, uint64(n))
		start := time.Now()
		for off := 0; off < len(buf); off += 1 << 20 {
			if _, err := f.Write(buf[off : off+1<<20]); err != nil {
				t.Fatal(err)
			}
		}
		el += time.Since(start)
	}
	start := time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	el += time.Since(start)
	if err := awaitCommit(filepath.Join(mnt, "big")); err != nil { // stored behind the writer
		t.Fatal(err)
	}
	peak := vm(t, cmd.Process.Pid, "VmHWM")
	t.Logf("daemon RSS idle %d MiB, peak while writing 4 GiB %d MiB (%.1fx idle; target <= 300 MiB); %.0f MB/s",
		idle>>10, peak>>10, float64(peak)/float64(idle), total/1e6/el.Seconds())
	fmt.Printf("BENCH peak_rss_mib=%d idle_rss_mib=%d\n", peak>>10, idle>>10)

	// Then a 4 GiB xl save image (page mode), generated as it is written.
	img, err := os.Create(filepath.Join(mnt, "guest-4g"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(img, 1<<20)
	g := xentest.Guest{Name: "rss", UUID: "455e0000-0000-4000-8000-000000000004", Pages: 1 << 20, VCPUs: 2, Seed: 9}
	if err := g.Write(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if err := awaitCommit(filepath.Join(mnt, "guest-4g")); err != nil {
		t.Fatal(err)
	}
	peakImg := vm(t, cmd.Process.Pid, "VmHWM")
	t.Logf("daemon peak RSS after also writing a 4 GiB xl save image (page mode): %d MiB (target <= 300 MiB)", peakImg>>10)
	fmt.Printf("BENCH peak_rss_after_image_mib=%d\n", peakImg>>10)
}

// vm returns a /proc/PID/status field in KiB.
func vm(t *testing.T, pid int, field string) int64 {
	n, err := sysstat.Status(fmt.Sprint(pid), field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
