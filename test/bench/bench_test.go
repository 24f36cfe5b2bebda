package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	ckfs "github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/test/memimage"
)

const benchSize = 1 << 30

// target is somewhere to write a file and read it back.
type target struct {
	name  string
	dir   string
	sync  bool // fsync before close (the plain file: ckptfs's close is durable)
	close func()
}

func dropCaches() {
	syscall.Sync()
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
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

func targets(b *testing.B) []target {
	ckfs.RequireFUSE(b)
	tmp := b.TempDir() // same disk for the plain file and the store
	plain := filepath.Join(tmp, "plain")
	os.Mkdir(plain, 0o755)

	noopDir := filepath.Join(tmp, "noop")
	os.Mkdir(noopDir, 0o755)
	ck := (&ckfs.FS{}).MountOptions(false, false)
	srv, err := gofs.Mount(noopDir, &noopRoot{}, ck)
	if err != nil {
		b.Fatal(err)
	}
	m, err := ckfs.MountStore(filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"), ckfs.MountConfig{})
	if err != nil {
		srv.Unmount()
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Unmount(); m.Unmount() })
	return []target{
		{name: "plain", dir: plain, sync: true},
		{name: "noop-fuse", dir: noopDir},
		{name: "ckptfs", dir: m.Dir},
	}
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
			return memimage.Image{Seed: 2, Pages: benchSize / memimage.PageSize, Mix: memimage.DefaultMix}.Bytes()
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
// chunk new: the worst case for memory) and reports its peak RSS (VmHWM)
// against its RSS once mounted and idle. Run by `make bench`
// (CKPTFS_BENCH=1); the 300 MiB target is reported, not asserted.
func TestPeakRSS(t *testing.T) {
	if os.Getenv("CKPTFS_BENCH") == "" {
		t.Skip("benchmark: run with CKPTFS_BENCH=1 (make bench)")
	}
	ckfs.RequireFUSE(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "ckptfs")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ckptfs").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	mnt := filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	cmd := exec.Command(bin, "mount", filepath.Join(tmp, "store"), mnt)
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
	buf := memimage.Random(64<<20, 3)
	start := time.Now()
	const total = 4 << 30
	for n := 0; n < total; n += len(buf) {
		buf[0], buf[1] = byte(n>>26), byte(n>>34) // every 64 MiB differs
		for off := 0; off < len(buf); off += 1 << 20 {
			if _, err := f.Write(buf[off : off+1<<20]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	peak := vm(t, cmd.Process.Pid, "VmHWM")
	t.Logf("daemon RSS idle %d MiB, peak while writing 4 GiB %d MiB (%.1fx idle; target <= 300 MiB); %.0f MB/s",
		idle>>10, peak>>10, float64(peak)/float64(idle), total/1e6/el.Seconds())
	fmt.Printf("BENCH peak_rss_mib=%d idle_rss_mib=%d\n", peak>>10, idle>>10)
}

// vm returns a /proc/PID/status field in KiB.
func vm(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in status", field)
	return 0
}
