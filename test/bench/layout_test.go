package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	ckfs "github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/test/sysstat"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkLayout measures what issue 12 asks of the store's layout, on a
// generated 10-generation series of one guest at 5% dirty (1 GiB;
// CKPTFS_LAYOUT_PAGES and CKPTFS_LAYOUT_GENS scale it) and on the real xl
// save images of the last `make e2e-xen` run (CKPTFS_REAL_IMAGES, default
// its cache; skipped if absent), through the default mount:
//
//   - du -sb of the store after a clean unmount against the ideal: the
//     unique non-zero pages compressed with the store's codec plus the
//     images' non-page bytes;
//   - bytes the daemon wrote to disk (/proc/PID/io write_bytes) per new
//     stored byte;
//   - cold sequential read (page cache dropped, 1 MiB reads as cat does) of
//     the first and the newest generation against the no-op FUSE read and a
//     plain file on the same disk, in the same run;
//   - du after deleting the older half of the generations and gc, against a
//     store that only ever held the newer half.
//
// With CKPTFS_OLD_BIN (a ckptfs binary of an earlier version) the same runs
// go through it as well, for the before/after of a layout change.
func BenchmarkLayout(b *testing.B) {
	ckfs.RequireFUSE(b)
	series := func(b *testing.B, dir string) []string {
		pages := int64(envInt("CKPTFS_LAYOUT_PAGES", 262144))
		gens := envInt("CKPTFS_LAYOUT_GENS", 10)
		var imgs []string
		for gen := 0; gen < gens; gen++ {
			g := xentest.Guest{Name: "layout", UUID: "1a70e700-0000-4000-8000-000000000001", Pages: pages, VCPUs: 2, Seed: 7, Gen: gen, Dirty: 0.05}
			p := filepath.Join(dir, fmt.Sprintf("gen%02d", gen))
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			w := bufio.NewWriterSize(f, 4<<20)
			if err := g.Write(w); err != nil {
				b.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			f.Close()
			imgs = append(imgs, p)
		}
		return imgs
	}
	real := func(b *testing.B, _ string) []string {
		dir := os.Getenv("CKPTFS_REAL_IMAGES")
		if dir == "" {
			dir = "/var/cache/ckptfs-e2e/last-run/images"
		}
		var imgs []string
		for _, n := range []string{"c1", "c2", "c3", "c4", "final"} {
			p := filepath.Join(dir, n)
			if _, err := os.Stat(p); err != nil {
				b.Skipf("no real images in %s (make e2e-xen leaves them): %v", dir, err)
			}
			imgs = append(imgs, p)
		}
		return imgs
	}
	bins := []struct{ name, path string }{{"v3", ckptfsBin}}
	if old := os.Getenv("CKPTFS_OLD_BIN"); old != "" {
		bins = append(bins, struct{ name, path string }{"old", old})
	}
	for _, w := range []struct {
		name string
		imgs func(*testing.B, string) []string
	}{{"series", series}, {"real", real}} {
		b.Run(w.name, func(b *testing.B) {
			tmp := b.TempDir()
			imgs := w.imgs(b, tmp)
			ideal := idealBytes(b, imgs)
			for _, bin := range bins {
				b.Run(bin.name, func(b *testing.B) { layoutRun(b, bin.path, filepath.Join(tmp, bin.name), imgs, ideal) })
			}
		})
	}
}

// idealBytes is what a store of imgs cannot do without: each distinct
// non-zero page once, compressed with the default codec, and every image's
// bytes that are not page payloads (headers, records, pfn lists).
func idealBytes(b *testing.B, imgs []string) int64 {
	seen := map[chunkstore.ID]bool{}
	var n int64
	for _, p := range imgs {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		payload := int64(0)
		sc := xen.NewScanner(xen.Handler{Page: func(pg xen.Page) {
			page := data[pg.Off : pg.Off+xen.PageSize]
			payload += xen.PageSize
			if chunkstore.IsZero(page) {
				return
			}
			id := chunkstore.Sum(page)
			if !seen[id] {
				seen[id] = true
				n += int64(chunkstore.EncodedLen(chunkstore.DefaultOptions().Codec, page))
			}
		}})
		if _, err := sc.Write(data); err != nil {
			b.Fatal(err)
		}
		n += int64(len(data)) - payload
	}
	return n
}

// daemon is a mounted ckptfs process.
type daemonProc struct {
	cmd *exec.Cmd
	mnt string
}

func startDaemon(b *testing.B, bin, store, mnt string, args ...string) *daemonProc {
	os.MkdirAll(mnt, 0o755)
	cmd := exec.Command(bin, append(append([]string{"mount"}, args...), store, mnt)...)
	serve(b, cmd)
	return &daemonProc{cmd: cmd, mnt: mnt}
}

// stop unmounts cleanly (the daemon closes the store) and waits.
func (d *daemonProc) stop(b *testing.B) {
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		b.Fatalf("daemon: %v", err)
	}
}

// writeBytes is the daemon's write_bytes in /proc/PID/io.
func (d *daemonProc) writeBytes(b *testing.B) int64 {
	n, err := sysstat.WriteBytes(strconv.Itoa(d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// coldRead drops the page cache and reads p sequentially in 1 MiB reads,
// returning MB/s.
func coldRead(b *testing.B, p string) float64 {
	if err := sysstat.DropCaches(); err != nil {
		b.Fatalf("drop caches (needs root): %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

func storeDu(b *testing.B, store string) (all, wal int64) {
	all = duBytes(b, store)
	logs, _ := filepath.Glob(filepath.Join(store, "*.log"))
	for _, l := range logs {
		if st, err := os.Stat(l); err == nil {
			wal += st.Size()
		}
	}
	return all, wal
}

func layoutRun(b *testing.B, bin, dir string, imgs []string, ideal int64) {
	store, storeNew := filepath.Join(dir, "store"), filepath.Join(dir, "store-newer")
	d := startDaemon(b, bin, store, filepath.Join(dir, "mnt"), "--xen-pages")
	dn := startDaemon(b, bin, storeNew, filepath.Join(dir, "mnt-newer"), "--xen-pages")
	half := len(imgs) / 2
	var wrote, stored int64
	var wSec float64
	var logical int64
	for i, img := range imgs {
		st0, w0 := ckptfsStored(b, store), d.writeBytes(b)
		start := time.Now()
		copyTimed(b, img, d.mnt, filepath.Base(img))
		wSec += time.Since(start).Seconds()
		if fi, err := os.Stat(img); err == nil {
			logical += fi.Size()
		}
		time.Sleep(1500 * time.Millisecond) // the mount's 1 s sync
		st1, w1 := ckptfsStored(b, store), d.writeBytes(b)
		wrote += w1 - w0
		stored += st1 - st0
		if i >= half {
			copyTimed(b, img, dn.mnt, filepath.Base(img))
		}
	}
	d.stop(b)
	dn.stop(b)
	du, wal := storeDu(b, store)
	duNew, _ := storeDu(b, storeNew)
	b.Logf("%d images, %.1f MB logical written at %.0f MB/s; ideal %.1f MB; du after unmount %.1f MB (%.3fx ideal), WAL %.1f MB; daemon wrote %.1f MB for %.1f MB of new stored bytes (%.2f per byte)",
		len(imgs), float64(logical)/1e6, float64(logical)/1e6/wSec, float64(ideal)/1e6, float64(du)/1e6, float64(du)/float64(ideal), float64(wal)/1e6,
		float64(wrote)/1e6, float64(stored)/1e6, float64(wrote)/float64(stored))
	b.ReportMetric(float64(du)/float64(ideal), "du-vs-ideal")
	b.ReportMetric(float64(wrote)/float64(stored), "disk-writes-per-stored-byte")

	// Cold reads: first and newest generation, against the no-op FUSE
	// transport and a plain file on the same disk, same run.
	d = startDaemon(b, bin, store, filepath.Join(dir, "mnt"), "--xen-pages")
	self, _ := os.Executable()
	noop := exec.Command(self, "-test.run=^$")
	noopDir := filepath.Join(dir, "noop")
	os.MkdirAll(noopDir, 0o755)
	noop.Env = append(os.Environ(), "CKPTFS_NOOP_SERVE="+noopDir)
	serve(b, noop)
	for _, which := range []struct {
		name string
		img  string
	}{{"first", imgs[0]}, {"newest", imgs[len(imgs)-1]}} {
		copyTimed(b, which.img, noopDir, "f")
		ck := coldRead(b, filepath.Join(d.mnt, filepath.Base(which.img)))
		np := coldRead(b, filepath.Join(noopDir, "f"))
		pl := coldRead(b, which.img)
		b.Logf("cold read of the %s generation: ckptfs %.0f MB/s, no-op FUSE %.0f, plain file %.0f: %.2fx no-op, %.2fx plain",
			which.name, ck, np, pl, ck/np, ck/pl)
		b.ReportMetric(ck/np, which.name+"-read-vs-noop")
		b.ReportMetric(ck/pl, which.name+"-read-vs-plain")
	}

	// Delete the older half, gc online, unmount: against a store that only
	// held the newer half.
	for _, img := range imgs[:half] {
		if err := os.Remove(filepath.Join(d.mnt, filepath.Base(img))); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if out, err := exec.Command(bin, "gc", store).CombinedOutput(); err != nil {
		b.Fatalf("gc: %v\n%s", err, out)
	}
	d.stop(b)
	duGC, _ := storeDu(b, store)
	b.Logf("after deleting %d of %d images and gc: du %.1f MB, a store that only held the newer %d: %.1f MB (%.3fx)",
		half, len(imgs), float64(duGC)/1e6, len(imgs)-half, float64(duNew)/1e6, float64(duGC)/float64(duNew))
	b.ReportMetric(float64(duGC)/float64(duNew), "gc-du-vs-never-held")
}
