package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

type pushReport struct {
	Files, Skipped, Chunks, Deltas int
	Bytes                          int64
	ChunkBytes                     int64 `json:"chunk_bytes"`
	WireSent                       int64 `json:"wire_sent"`
	WireReceived                   int64 `json:"wire_received"`
	Failed                         []string
}

func pushJSON(t *testing.T, env []string, args ...string) pushReport {
	t.Helper()
	out, code := runEnv(t, env, append([]string{"push", "--json"}, args...)...)
	var r pushReport
	line := out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]
	if code != 0 || json.Unmarshal([]byte(line), &r) != nil {
		t.Fatalf("ckptfs push %v: exit %d\n%s", args, code, out)
	}
	return r
}

// synth writes generation gen of a generated guest's xl save image to path.
func synth(t *testing.T, path string, seed, gen int, dirty string) {
	t.Helper()
	if out, code := run(t, "xen", "synth", "--pages", "16384", "--seed", fmt.Sprint(seed), "--gen", fmt.Sprint(gen), "--dirty", dirty, path); code != 0 {
		t.Fatalf("xen synth: %s", out)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// newBytes returns the chunk bytes each generation of the store's one
// guest added (ckptfs stats).
func newBytes(t *testing.T, store string) []int64 {
	t.Helper()
	out, code := run(t, "stats", "--json", store)
	var s struct {
		Lineages []struct {
			NewBytes []int64 `json:"new_bytes"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &s) != nil || len(s.Lineages) != 1 {
		t.Fatalf("stats: %s", out)
	}
	return s.Lineages[0].NewBytes
}

// TestPushSSH pushes a mounted store's checkpoints to another store over
// ssh (a real sshd on loopback, `ckptfs serve` at the other end): the
// first whole, later ones as deltas that carry only the new pages; the
// copies read back byte for byte; an interrupted push resumes.
func TestPushSSH(t *testing.T) {
	requireFUSE(t)
	sd := startSSHD(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(src, 0o755)
	os.MkdirAll(dst, 0o755)
	d := mount(t, src, mnt)
	os.MkdirAll(filepath.Join(mnt, "vm1"), 0o755)
	imgs := filepath.Join(dir, "imgs")
	os.MkdirAll(imgs, 0o755)
	for g := range 3 {
		synth(t, filepath.Join(imgs, fmt.Sprint("c", g)), 5, g, "0.02")
	}
	sshArgs := []string{"--ssh", sd.Cmd, "--remote-ckptfs", bin}
	url := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sd.Port, dst)
	copyIn := func(g int) {
		b, _ := os.ReadFile(filepath.Join(imgs, fmt.Sprint("c", g)))
		if err := os.WriteFile(filepath.Join(mnt, "vm1", fmt.Sprint("c", g)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyIn(0)
	r0 := pushJSON(t, nil, append(sshArgs, mnt, url)...)
	if r0.Files != 1 || r0.Chunks == 0 {
		t.Fatalf("first push: %+v", r0)
	}
	copyIn(1)
	copyIn(2)
	r1 := pushJSON(t, nil, append(sshArgs, mnt, url)...)
	if r1.Files != 2 || r1.Deltas != 2 || r1.Skipped != 1 {
		t.Fatalf("second push: %+v", r1)
	}
	nb := newBytes(t, src)
	added := nb[1] + nb[2]
	t.Logf("deltas: wire %d bytes sent for %d new stored chunk bytes (%.2fx); first image: wire %d for %d",
		r1.WireSent, added, float64(r1.WireSent)/float64(added), r0.WireSent, nb[0])
	if r1.WireSent > added*3/2 {
		t.Errorf("two deltas sent %d bytes for %d bytes of new chunks", r1.WireSent, added)
	}
	if r := pushJSON(t, nil, append(sshArgs, mnt, url)...); r.Files != 0 || r.Chunks != 0 || r.Skipped != 3 {
		t.Fatalf("third push sent something: %+v", r)
	}
	// ckptfs not in the other host's PATH: the error says which flag
	// names it.
	if out, code := run(t, "push", "--ssh", sd.Cmd, "--remote-ckptfs", "/nonexistent/ckptfs", mnt, url); code == 0 || !strings.Contains(out, "--remote-ckptfs") {
		t.Fatalf("push to a host without ckptfs: exit %d\n%s", code, out)
	}
	d.stop(t)
	out := filepath.Join(dir, "out")
	mount(t, dst, out)
	for g := range 3 {
		sameFile(t, filepath.Join(imgs, fmt.Sprint("c", g)), filepath.Join(out, "vm1", fmt.Sprint("c", g)))
	}

	// An interrupted push: the pushing process dies (as its host would)
	// once the other side holds 3 MB of chunk records; the next push
	// completes and sends less than a whole one would.
	dst2 := filepath.Join(dir, "dst2")
	os.MkdirAll(dst2, 0o755)
	url2 := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sd.Port, dst2)
	cmd := exec.Command(bin, append([]string{"push"}, append(sshArgs, src, url2)...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); dirBytes(filepath.Join(dst2, "segments")) < 3<<20; {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the push did not get going")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, dst2)
	r := pushJSON(t, nil, append(sshArgs, src, url2)...)
	if r.Files != 3 || r.Chunks >= r0.Chunks+r1.Chunks {
		t.Fatalf("resumed push: %+v (uninterrupted: %d chunks)", r, r0.Chunks+r1.Chunks)
	}
	t.Logf("resumed push sent %d chunks of %d", r.Chunks, r0.Chunks+r1.Chunks)
	if out, code := run(t, "fsck", dst2); code != 0 {
		t.Fatalf("fsck of the pushed store: %s", out)
	}
}

type gcReport struct {
	Expired                       []string
	Files, Packs, Marked, Deleted int
	Rewritten, Unmarked, Pending  int
	Chunks, Duplicates            int
	StoredBytes                   int64 `json:"stored_bytes"`
}

func bucketGC(t *testing.T, s s3, common []string, args ...string) gcReport {
	t.Helper()
	out, code := runEnv(t, s.Env, append(append([]string{"bucket", "gc", "--json"}, common...), args...)...)
	var r gcReport
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("bucket gc: exit %d\n%s", code, out)
	}
	return r
}

// TestBucketShared: three stores (standing in for hosts) push into one
// bucket of a real SeaweedFS S3 server at once while the bucket's gc runs;
// two of them hold the same guest memory. Afterwards every generation
// pulls back byte for byte, chunks both pushed are stored once, and expiry
// gives space back after the grace period.
func TestBucketShared(t *testing.T) {
	requireFUSE(t)
	s := startS3(t)
	key := keyFile(t)
	dir := t.TempDir()
	const grace = "6s"
	common := []string{"--endpoint", s.Endpoint, "--key-file", key, "--grace", grace}
	url := "s3://ckpt/site"
	hosts := []string{"hostA", "hostB", "hostC"}
	seeds := map[string]int{"hostA": 11, "hostB": 11, "hostC": 12} // A and B: same memory
	imgs := filepath.Join(dir, "imgs")
	os.MkdirAll(imgs, 0o755)
	for _, h := range hosts {
		store, mnt := filepath.Join(dir, h), filepath.Join(dir, h+"-mnt")
		os.MkdirAll(store, 0o755)
		mount(t, store, mnt)
		os.MkdirAll(filepath.Join(mnt, "vm"), 0o755)
		for g := range 3 {
			img := filepath.Join(imgs, fmt.Sprintf("%s-c%d", h, g))
			synth(t, img, seeds[h], g, "0.05")
			b, _ := os.ReadFile(img)
			os.WriteFile(filepath.Join(mnt, "vm", fmt.Sprint("c", g)), b, 0o644)
		}
	}
	var wg sync.WaitGroup
	stop, gcDone := make(chan struct{}), make(chan struct{})
	gcs := 0
	var gcErr string
	go func() { // gc in a loop while the hosts push
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if out, code := runEnv(t, s.Env, append(append([]string{"bucket", "gc", "--keep-last", "10"}, common...), url)...); code != 0 {
				gcErr = out
			}
			gcs++
		}
	}()
	errs := make([]string, len(hosts))
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(bin, append(append([]string{"push", "--host", h}, common...), filepath.Join(dir, h+"-mnt"), url)...)
			cmd.Env = append(os.Environ(), s.Env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Sprintf("%s: %v\n%s", h, err, out)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-gcDone
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}
	if gcErr != "" {
		t.Fatalf("bucket gc during the pushes: %s", gcErr)
	}
	t.Logf("%d gc runs during the pushes", gcs)
	// Let marks run out their grace, then settle.
	var r gcReport
	for range 4 {
		r = bucketGC(t, s, common, "--keep-last", "10", url)
		if r.Duplicates == 0 && r.Pending == 0 && r.Marked == 0 && r.Rewritten == 0 {
			break
		}
		time.Sleep(6100 * time.Millisecond)
	}
	t.Logf("after the pushes: %+v", r)
	if r.Files != 9 {
		t.Fatalf("the bucket lists %d files, want 9", r.Files)
	}
	if r.Duplicates != 0 {
		t.Errorf("%d chunks stored more than once", r.Duplicates)
	}
	pullAll := func(names ...string) {
		for _, h := range hosts {
			store, mnt := filepath.Join(dir, "pull-"+h), filepath.Join(dir, "pull-"+h+"-mnt")
			os.RemoveAll(store)
			os.MkdirAll(store, 0o755)
			out, code := runEnv(t, s.Env, append(append([]string{"pull", "--from-host", h}, common...), url, store)...)
			if code != 0 {
				t.Fatalf("pull %s: %s", h, out)
			}
			d := mount(t, store, mnt)
			for _, n := range names {
				sameFile(t, filepath.Join(imgs, h+"-"+n), filepath.Join(mnt, "vm", n))
			}
			d.stop(t)
		}
	}
	pullAll("c0", "c1", "c2")
	// Hosts A and B pushed the same pages: the bucket holds far less than
	// three hosts' worth.
	one := r.StoredBytes
	// Expire all but the newest of each guest; after the grace period the
	// packs only the old generations used are gone.
	e := bucketGC(t, s, common, "--keep-last", "1", url)
	if len(e.Expired) != 6 {
		t.Fatalf("expired %v, want the 6 older generations", e.Expired)
	}
	time.Sleep(6100 * time.Millisecond)
	for range 3 {
		r = bucketGC(t, s, common, "--keep-last", "1", url)
		if r.Pending == 0 && r.Marked == 0 && r.Rewritten == 0 {
			break
		}
		time.Sleep(6100 * time.Millisecond)
	}
	t.Logf("after expiry: %+v (stored %d bytes before)", r, one)
	if r.StoredBytes >= one {
		t.Errorf("expiry gave nothing back: %d bytes stored, %d before", r.StoredBytes, one)
	}
	pullAll("c2")
	// xl restore straight from the bucket: a read-only mount with a cache.
	bm := filepath.Join(dir, "bucket-mnt")
	os.MkdirAll(bm, 0o755)
	cache := filepath.Join(dir, "cache")
	cmd := exec.Command(bin, append(append([]string{"bucket", "mount", "--from-host", "hostC", "--cache", cache}, common...), url, bm)...)
	cmd.Env = append(os.Environ(), s.Env...)
	startReady(t, cmd, bm)
	sameFile(t, filepath.Join(imgs, "hostC-c2"), filepath.Join(bm, "vm", "c2"))
	if _, err := os.Stat(filepath.Join(bm, "vm", "c0")); !os.IsNotExist(err) {
		t.Errorf("an expired generation shows in the bucket mount: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bm, "vm", "new"), []byte("x"), 0o644); err == nil {
		t.Error("the bucket mount took a write")
	}
	cached := 0
	filepath.WalkDir(cache, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			cached++
		}
		return nil
	})
	if cached == 0 {
		t.Error("the bucket mount's cache directory holds no chunk")
	}
	// A wrong key is refused plainly.
	if out, code := runEnv(t, s.Env, "bucket", "ls", "--endpoint", s.Endpoint, "--key-file", keyFile(t), url); code == 0 || !strings.Contains(out, "wrong --key-file") {
		t.Fatalf("a wrong key: exit %d\n%s", code, out)
	}
	if out, code := runEnv(t, s.Env, "push", "--endpoint", s.Endpoint, dir, url); code != 2 || !strings.Contains(out, "--key-file") {
		t.Fatalf("no key: exit %d\n%s", code, out)
	}
}

// dirBytes is the size of the files in dir.
func dirBytes(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// waitGone waits until no `ckptfs serve` holds store (its store lock).
func waitGone(t *testing.T, store string) {
	t.Helper()
	waitNoProcess(t, "ckptfs serve .*"+store)
}

// waitNoProcess waits up to 30 s until no process's command line matches
// the pgrep pattern: a daemon that mount(8) started and umount stopped
// still closes its store after the unmount returns.
func waitNoProcess(t *testing.T, pattern string) {
	t.Helper()
	for range 300 {
		out, _ := exec.Command("pgrep", "-f", pattern).Output()
		if len(out) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("a process matching %q still runs", pattern)
}

// startReady starts a foreground mount command and waits for its ready
// line; it is unmounted when t ends.
func startReady(t *testing.T, cmd *exec.Cmd, mnt string) {
	t.Helper()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		n, _ := stdout.Read(buf)
		ready <- strings.Contains(string(buf[:n]), "ready:")
		for {
			if _, err := stdout.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("%v: no ready line\n%s", cmd.Args, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%v: not ready after 30 s\n%s", cmd.Args, stderr.String())
	}
	t.Cleanup(func() {
		exec.Command("umount", mnt).Run()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%v: %v\n%s", cmd.Args, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			exec.Command("umount", "-l", mnt).Run()
			t.Errorf("%v did not exit after umount", cmd.Args)
		}
	})
}

// TestRemusOverSSH: what `xl remus -s "" GUEST "ssh standby ckptfs xen
// receive --into DIR"` does, with a generated remus stream: the stream
// crosses a real sshd into the standby's mounted store, where every
// checkpoint becomes a restorable generation (no second transfer).
func TestRemusOverSSH(t *testing.T) {
	requireFUSE(t)
	sd := startSSHD(t)
	g := xentest.Guest{Name: "web", UUID: "5e1f0000-0000-4000-8000-0000000000bb", Pages: 4096, VCPUs: 1, Seed: 21, Dirty: 0.05}
	var b bytes.Buffer
	if err := g.WriteRemus(&b, 3); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := mount(t, filepath.Join(dir, "standby"), filepath.Join(dir, "mnt"))
	into := filepath.Join(d.mnt, "web")
	args := append(strings.Fields(sd.Cmd), "-p", fmt.Sprint(sd.Port), "root@127.0.0.1", bin, "xen", "receive", "--into", into)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = &b
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "the sender stopped; 4 checkpoints published, intact") {
		t.Fatalf("xen receive over ssh: %v\n%s", err, out)
	}
	ents, err := os.ReadDir(into)
	if err != nil || len(ents) != 4 {
		t.Fatalf("%s: %v, %d entries, want 4", into, err, len(ents))
	}
	for i, e := range ents {
		c := g
		c.Gen = i
		got, err := os.ReadFile(filepath.Join(into, e.Name()))
		if err != nil || !bytes.Equal(got, c.Bytes()) {
			t.Fatalf("%s: not the plain save of checkpoint %d (%v)", e.Name(), i, err)
		}
	}
}
