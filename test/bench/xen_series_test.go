package bench

import (
	"encoding/json"
	"fmt"
	"github.com/ckptfs/ckptfs/chunkstore"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/test/sysstat"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// duBytes is the apparent size of everything below dir, but a ckptfs
// store's reserve file (space kept free for gc, not data).
func duBytes(b *testing.B, dir string) int64 { return sysstat.DirBytes(dir, chunkstore.ReserveFile) }

func run(b *testing.B, env []string, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// copyTimed copies src into dir/name in 1 MiB writes, closes, and returns MB/s.
func copyTimed(b *testing.B, src, dir, name string) float64 {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	start := time.Now()
	out, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.CopyBuffer(struct{ io.Writer }{out}, in, make([]byte, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

func ckptfsStored(b *testing.B, store string) int64 {
	out, err := exec.Command(ckptfsBin, "stats", "--json", store).Output()
	if err != nil {
		b.Fatalf("stats: %v", err)
	}
	var s struct {
		Stored int64 `json:"stored_bytes"`
	}
	json.Unmarshal(out, &s)
	return s.Stored
}

// BenchmarkXenSeries stores generations of one guest (default 2 GiB, 10
// generations; CKPTFS_XEN_PAGES and CKPTFS_XEN_GENS scale it) at 1% and 5%
// dirty pages in ckptfs page mode, ckptfs plain CDC, restic, borg and plain
// files, and compares stored bytes with the ideal: the first image plus
// every later generation's dirty pages. It also times the writes against
// the no-op FUSE ceiling. After the last generation it measures restore
// speed: the newest image read cold through a fresh ckptfs mount (what xl
// restore does), restic restore and borg extract of it to a file, and a
// cold read of the plain file. It also records the disk footprint (du -sb
// of each store, after the ckptfs daemons unmount) per generation. Results
// go to docs/bench-{xen,footprint,restore}.csv and, with gnuplot, the
// charts docs/bench-{xen,footprint,restore}.png.
func BenchmarkXenSeries(b *testing.B) {
	for _, tool := range []string{"restic", "borg"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed (make bench installs it)", tool)
		}
	}
	pages := int64(envInt("CKPTFS_XEN_PAGES", 524288))
	gens := envInt("CKPTFS_XEN_GENS", 10)
	csv, err := os.Create(filepath.Join(docsDir, "bench-xen.csv"))
	if err != nil {
		b.Fatal(err)
	}
	defer csv.Close()
	fmt.Fprintln(csv, "dirty,gen,ideal (raw),ckptfs-pages,ckptfs-cdc,restic,borg,plain")
	foot, err := os.Create(filepath.Join(docsDir, "bench-footprint.csv"))
	if err != nil {
		b.Fatal(err)
	}
	defer foot.Close()
	fmt.Fprintln(foot, "dirty,gen,ckptfs-pages,restic,borg,plain")
	rest, err := os.Create(filepath.Join(docsDir, "bench-restore.csv"))
	if err != nil {
		b.Fatal(err)
	}
	defer rest.Close()
	fmt.Fprintln(rest, "dirty,ckptfs mount (cold),restic restore,borg extract,plain file (cold)")
	for _, dirty := range []float64{0.01, 0.05} {
		b.Run(fmt.Sprintf("dirty=%.0f%%", dirty*100), func(b *testing.B) {
			tmp := b.TempDir()
			mk := func(d string) string { p := filepath.Join(tmp, d); os.MkdirAll(p, 0o755); return p }
			pagesStore, cdcStore := filepath.Join(tmp, "store-pages"), filepath.Join(tmp, "store-cdc")
			dp := startDaemon(b, ckptfsBin, pagesStore, mk("mnt-pages"), "--xen-pages")
			serve(b, exec.Command(ckptfsBin, "mount", "--xen-pages=false", cdcStore, mk("mnt-cdc"))) // page mode is the default since format 3
			self, _ := os.Executable()
			noop := exec.Command(self, "-test.run=^$")
			noop.Env = append(os.Environ(), "CKPTFS_NOOP_SERVE="+mk("noop"))
			serve(b, noop)
			env := []string{"RESTIC_PASSWORD=bench", "BORG_PASSPHRASE=", "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes"}
			run(b, env, "restic", "init", "-q", "-r", filepath.Join(tmp, "restic"))
			run(b, env, "borg", "init", "--encryption=none", filepath.Join(tmp, "borg"))
			var ideal, plain int64
			plainDir := mk("plain")
			for gen := 0; gen < gens; gen++ {
				g := xentest.Guest{Name: "bench", UUID: "bench-uuid", Pages: pages, VCPUs: 2, Seed: 42, Gen: gen, Dirty: dirty}
				img := filepath.Join(tmp, "img")
				f, err := os.Create(img)
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Write(f); err != nil {
					b.Fatal(err)
				}
				f.Close()
				st, _ := os.Stat(img)
				plain += st.Size()
				// ideal: the whole first image, then only the pages dirtied
				if gen == 0 {
					ideal += st.Size()
				} else {
					im := memimage.Image{Seed: g.Seed, Pages: pages, Gen: gen, Dirty: dirty, Mix: memimage.DefaultMix}
					for p := int64(0); p < pages; p++ {
						if im.Version(p) == gen {
							ideal += xen.PageSize
						}
					}
				}
				wPages := copyTimed(b, img, filepath.Join(tmp, "mnt-pages"), fmt.Sprint("gen", gen))
				wCDC := copyTimed(b, img, filepath.Join(tmp, "mnt-cdc"), fmt.Sprint("gen", gen))
				wNoop := copyTimed(b, img, filepath.Join(tmp, "noop"), fmt.Sprint("gen", gen))
				run(b, env, "restic", "backup", "-q", "-r", filepath.Join(tmp, "restic"), img)
				run(b, env, "borg", "create", "--compression", "lz4", filepath.Join(tmp, "borg")+"::gen"+strconv.Itoa(gen), img)
				sp, sc := ckptfsStored(b, pagesStore), ckptfsStored(b, cdcStore)
				sr, sb := duBytes(b, filepath.Join(tmp, "restic")), duBytes(b, filepath.Join(tmp, "borg"))
				fmt.Fprintf(csv, "%.2f,%d,%d,%d,%d,%d,%d,%d\n", dirty, gen, ideal, sp, sc, sr, sb, plain)
				// Footprint: what each keeps on disk (du -sb; plain: every
				// image kept as a file, of which only the newest stays here).
				fmt.Fprintf(foot, "%.2f,%d,%d,%d,%d,%d\n", dirty, gen, duBytes(b, pagesStore), sr, sb, plain)
				os.Remove(filepath.Join(plainDir, fmt.Sprint("gen", gen-1)))
				os.Rename(img, filepath.Join(plainDir, fmt.Sprint("gen", gen)))
				b.Logf("gen %d: write MB/s pages %.0f cdc %.0f noop %.0f (pages/noop %.2f); stored MB ideal %.1f pages %.1f cdc %.1f restic %.1f borg %.1f plain %.1f",
					gen, wPages, wCDC, wNoop, wPages/wNoop, float64(ideal)/1e6, float64(sp)/1e6, float64(sc)/1e6, float64(sr)/1e6, float64(sb)/1e6, float64(plain)/1e6)
				if gen == gens-1 {
					b.ReportMetric(float64(sp)/float64(ideal), "pages-vs-ideal")
					b.ReportMetric(float64(sc)/float64(ideal), "cdc-vs-ideal")
					b.ReportMetric(float64(sr)/float64(ideal), "restic-vs-ideal")
					b.ReportMetric(float64(sb)/float64(ideal), "borg-vs-ideal")
				}
			}
			// Restore the newest generation each way, cold.
			last := fmt.Sprint("gen", gens-1)
			st, _ := os.Stat(filepath.Join(plainDir, last))
			size := float64(st.Size())
			dp.stop(b)
			dp = startDaemon(b, ckptfsBin, pagesStore, filepath.Join(tmp, "mnt-pages"), "--xen-pages")
			rCk := coldRead(b, filepath.Join(tmp, "mnt-pages", last))
			dp.stop(b)
			// The footprint at rest: du of the store once its daemon unmounted.
			ck, rs, bg := duBytes(b, pagesStore), duBytes(b, filepath.Join(tmp, "restic")), duBytes(b, filepath.Join(tmp, "borg"))
			b.Logf("du -sb after unmount, %d generations: ckptfs %d, restic %d, borg %d, plain files %d (ckptfs/restic %.2f, ckptfs/borg %.2f, ckptfs/plain %.3f)",
				gens, ck, rs, bg, plain, float64(ck)/float64(rs), float64(ck)/float64(bg), float64(ck)/float64(plain))
			rPlain := coldRead(b, filepath.Join(plainDir, last))
			restore := func(name string, args ...string) float64 {
				out := mk("restore-" + name)
				sysstat.DropCaches()
				start := time.Now()
				cmd := exec.Command(name, args...)
				cmd.Dir, cmd.Env = out, append(os.Environ(), env...)
				if o, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%s: %v\n%s", name, err, o)
				}
				mbs := size / 1e6 / time.Since(start).Seconds()
				os.RemoveAll(out)
				return mbs
			}
			rRestic := restore("restic", "restore", "-q", "-r", filepath.Join(tmp, "restic"), "latest", "--target", ".")
			rBorg := restore("borg", "extract", filepath.Join(tmp, "borg")+"::gen"+strconv.Itoa(gens-1))
			fmt.Fprintf(rest, "%.2f,%.1f,%.1f,%.1f,%.1f\n", dirty, rCk, rRestic, rBorg, rPlain)
			b.Logf("restore of generation %d (%.0f MB), MB/s: ckptfs mount cold %.0f, restic restore %.0f, borg extract %.0f, plain file cold %.0f (ckptfs/plain %.2f, ckptfs/restic %.2f, ckptfs/borg %.2f)",
				gens-1, size/1e6, rCk, rRestic, rBorg, rPlain, rCk/rPlain, rCk/rRestic, rCk/rBorg)
		})
	}
	for _, f := range []*os.File{csv, foot, rest} {
		f.Close()
	}
	if _, err := exec.LookPath("gnuplot"); err == nil {
		for _, gp := range []string{"bench-xen.gp", "bench-footprint.gp", "bench-restore.gp"} {
			cmd := exec.Command("gnuplot", gp)
			cmd.Dir = docsDir
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Logf("gnuplot %s: %v %s", gp, err, out)
			}
		}
	}
}

// docsDir is where the benchmark charts and their data go (the
// repository's docs/, from the package directory).
const docsDir = "../../docs"
