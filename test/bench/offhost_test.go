package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/servers"
)

// BenchmarkOffHost measures what issue 14 asks of push, pull and the
// bucket, all in one run:
//
//   - wire bytes of pushing each new generation (1% and 5% dirty series of
//     a generated PV guest) over ssh to a store holding the previous ones,
//     against the generation's new compressed chunk bytes and against
//     `rsync -a --fuzzy --no-whole-file --stats` of the same file over the
//     same sshd to a directory holding the previous generation;
//   - push and pull MB/s (logical) to and from a SeaweedFS bucket on
//     loopback, against the same push and pull between local stores;
//   - a cold sequential read (xl restore's pattern) of the newest
//     generation from `ckptfs bucket mount` (cache empty) against the
//     local mount.
//
// CKPTFS_OFFHOST_PAGES sets the guest size (default 32768 pages, 128 MiB).
func BenchmarkOffHost(b *testing.B) {
	sd := servers.StartSSHD(b)
	s3 := servers.StartS3(b)
	key := servers.KeyFile(b)
	pages := envInt("CKPTFS_OFFHOST_PAGES", 32768)
	dir := b.TempDir()
	imgs := filepath.Join(dir, "imgs")
	os.MkdirAll(imgs, 0o755)
	ssh := []string{"--ssh", sd.Cmd, "--remote-ckptfs", ckptfsBin}
	bucketFlags := []string{"--endpoint", s3.Endpoint, "--key-file", key}
	for i := 0; i < b.N; i++ {
		src := filepath.Join(dir, fmt.Sprint("src", i))
		d := startDaemon(b, ckptfsBin, src, src+"-mnt")
		var newest string
		for _, dirty := range []string{"0.01", "0.05"} {
			guest := "vm" + strings.TrimPrefix(dirty, "0.")
			dst, rs := filepath.Join(dir, fmt.Sprint("dst", i, guest)), filepath.Join(dir, fmt.Sprint("rsync", i, guest))
			os.MkdirAll(dst, 0o755)
			os.MkdirAll(rs, 0o755)
			os.MkdirAll(filepath.Join(src+"-mnt", guest), 0o755)
			for g := 0; g < 3; g++ {
				img := filepath.Join(imgs, fmt.Sprintf("%s-c%d", guest, g))
				run(b, nil, ckptfsBin, "xen", "synth", "--pages", fmt.Sprint(pages), "--uuid", "00000000-0000-4000-8000-0000000000"+dirty[2:], "--name", guest, "--seed", dirty[2:], "--gen", fmt.Sprint(g), "--dirty", dirty, img)
				copyTimed(b, img, filepath.Join(src+"-mnt", guest), fmt.Sprint("c", g))
				newest = filepath.Join(guest, fmt.Sprint("c", g))
				r := pushReport(b, nil, append(append([]string{"push", "--json", "--path", newest}, ssh...), src+"-mnt", fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sd.Port, dst))...)
				nb := newBytesOf(b, src, guest)
				// rsync over the same sshd, the previous generation at the
				// destination under the previous name.
				if g > 0 {
					os.Remove(filepath.Join(rs, fmt.Sprint("c", g-2)))
				}
				rsyncSent := rsyncSend(b, sd, img, filepath.Join(rs, fmt.Sprint("c", g)), g)
				if g == 0 {
					continue
				}
				b.Logf("%s dirty, generation %d: push sent %d bytes (%.2fx the %d new compressed chunk bytes); rsync sent %d (%.2fx)",
					dirty, g, r.WireSent, float64(r.WireSent)/float64(nb[g]), nb[g], rsyncSent, float64(rsyncSent)/float64(nb[g]))
				b.ReportMetric(float64(r.WireSent)/float64(nb[g]), "wire/new-"+guest+"-gen"+fmt.Sprint(g))
				b.ReportMetric(float64(rsyncSent)/float64(nb[g]), "rsync/new-"+guest+"-gen"+fmt.Sprint(g))
			}
		}
		d.stop(b)
		logical := dirBytes(b, imgs)
		// Throughput: the whole store to a local store, then to the bucket;
		// back from each into a fresh store.
		timed := func(env []string, args ...string) float64 {
			start := time.Now()
			pushReport(b, env, args...)
			return float64(logical) / 1e6 / time.Since(start).Seconds()
		}
		url := fmt.Sprintf("s3://bench/run%d", i)
		localPush := timed(nil, "push", "--json", src, filepath.Join(dir, fmt.Sprint("local", i)))
		bucketPush := timed(s3.Env, append(append([]string{"push", "--json", "--host", "h"}, bucketFlags...), src, url)...)
		localPull := timed(nil, "pull", "--json", filepath.Join(dir, fmt.Sprint("local", i)), filepath.Join(dir, fmt.Sprint("back-local", i)))
		bucketPull := timed(s3.Env, append(append([]string{"pull", "--json", "--from-host", "h"}, bucketFlags...), url, filepath.Join(dir, fmt.Sprint("back-bucket", i)))...)
		b.Logf("%d MB of images: push to a local store %.0f MB/s, to the bucket %.0f MB/s (%.2fx); pull from a local store %.0f MB/s, from the bucket %.0f MB/s (%.2fx)",
			logical/1e6, localPush, bucketPush, bucketPush/localPush, localPull, bucketPull, bucketPull/localPull)
		b.ReportMetric(bucketPush/localPush, "bucket-push/local")
		b.ReportMetric(bucketPull/localPull, "bucket-pull/local")
		// xl restore's read pattern, cold: the local mount, then the bucket
		// mount with an empty cache.
		d = startDaemon(b, ckptfsBin, src, src+"-mnt")
		local := coldRead(b, filepath.Join(src+"-mnt", newest))
		d.stop(b)
		bm := filepath.Join(dir, fmt.Sprint("bucket-mnt", i))
		os.MkdirAll(bm, 0o755)
		cmd := exec.Command(ckptfsBin, append(append([]string{"bucket", "mount", "--from-host", "h", "--cache", filepath.Join(dir, fmt.Sprint("cache", i))}, bucketFlags...), url, bm)...)
		cmd.Env = append(os.Environ(), s3.Env...)
		serve(b, cmd)
		remote := coldRead(b, filepath.Join(bm, newest))
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		b.Logf("cold sequential read of %s: local mount %.0f MB/s, bucket mount %.0f MB/s (%.2fx)", newest, local, remote, remote/local)
		b.ReportMetric(remote/local, "bucket-read/local")
	}
}

type offhostReport struct {
	WireSent int64 `json:"wire_sent"`
	Files    int   `json:"files"`
}

func pushReport(b *testing.B, env []string, args ...string) offhostReport {
	b.Helper()
	cmd := exec.Command(ckptfsBin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	var r offhostReport
	if err != nil || json.Unmarshal(out, &r) != nil {
		b.Fatalf("ckptfs %v: %v\n%s", args, err, out)
	}
	return r
}

// newBytesOf is the compressed chunk bytes each generation of guest added.
func newBytesOf(b *testing.B, store, guest string) []int64 {
	b.Helper()
	out, err := exec.Command(ckptfsBin, "stats", "--json", store).Output()
	var s struct {
		Lineages []struct {
			Name     string  `json:"name"`
			NewBytes []int64 `json:"new_bytes"`
		}
	}
	if err != nil || json.Unmarshal(out, &s) != nil {
		b.Fatalf("stats: %v %s", err, out)
	}
	for _, l := range s.Lineages {
		if l.Name == guest {
			return l.NewBytes
		}
	}
	b.Fatalf("stats: no guest %s in %s", guest, out)
	return nil
}

var rsyncSentRe = regexp.MustCompile(`Total bytes sent: ([0-9,]+)`)

// rsyncSend sends img to dst over sd with rsync's delta algorithm, the
// previous generation (if g > 0) beside it for --fuzzy to find, and
// returns the bytes it sent.
func rsyncSend(b *testing.B, sd servers.SSHD, img, dst string, g int) int64 {
	b.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		b.Fatal("rsync: make deps installs it")
	}
	tmp := filepath.Join(b.TempDir(), filepath.Base(dst))
	if err := os.Link(img, tmp); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("rsync", "-a", "--fuzzy", "--no-whole-file", "--stats", "-e", sd.Cmd+" -p "+strconv.Itoa(sd.Port), tmp, "root@127.0.0.1:"+dst).CombinedOutput()
	if err != nil {
		b.Fatalf("rsync: %v\n%s", err, out)
	}
	m := rsyncSentRe.FindSubmatch(out)
	if m == nil {
		b.Fatalf("rsync printed no total:\n%s", out)
	}
	n, _ := strconv.ParseInt(strings.ReplaceAll(string(m[1]), ",", ""), 10, 64)
	return n
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}
