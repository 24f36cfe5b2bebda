package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type pruneReport struct {
	Files        int
	Removed      []string
	RemovedBytes int64  `json:"removed_bytes"`
	PruneSkipped string `json:"prune_skipped"`
	Failed       []string
}

// copyPrune runs `ckptfs push|pull --prune --json ARGS` and returns its
// report and exit code.
func copyPrune(t *testing.T, env []string, verb string, args ...string) (pruneReport, int, string) {
	t.Helper()
	out, code := runEnv(t, env, append([]string{verb, "--prune", "--json"}, args...)...)
	var r pruneReport
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			json.Unmarshal([]byte(line), &r)
		}
	}
	return r, code, out
}

// listDir is names without latest (shown or not, no file of its own).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	return slices.DeleteFunc(names(t, dir), func(n string) bool { return n == "latest" })
}

// TestPushPrune: a standby kept with push --prune follows the source's
// retention. Four checkpoints go over ssh (a real sshd, `ckptfs serve` at
// the other end); the source's gc keeps the last two; the next push
// --prune removes the two expired ones at the standby, and the standby's
// gc gives their space back while the kept ones read byte for byte. A pull
// --prune into a mounted store removes through its daemon (the mount stops
// showing the file at once); a push --prune from an empty source, and one
// whose copy failed, remove nothing; a bucket (a real SeaweedFS S3 server)
// is pruned the same way, of the files removed at its source by hand.
func TestPushPrune(t *testing.T) {
	requireFUSE(t)
	sd := startSSHD(t)
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	mnt := filepath.Join(dir, "mnt")
	mount(t, src, mnt)
	os.MkdirAll(filepath.Join(mnt, "vm1"), 0o755)
	imgs := filepath.Join(dir, "imgs")
	os.MkdirAll(imgs, 0o755)
	for g := range 4 {
		img := filepath.Join(imgs, fmt.Sprint("c", g))
		synth(t, img, 7, g, "0.30")
		b, _ := os.ReadFile(img)
		if err := os.WriteFile(filepath.Join(mnt, "vm1", fmt.Sprint("c", g)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(mnt, "notes.txt"), []byte("not a checkpoint\n"), 0o644)
	sshArgs := []string{"--ssh", sd.Cmd, "--remote-ckptfs", bin}
	url := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sd.Port, dst)
	if out, code := run(t, append(append([]string{"push"}, sshArgs...), mnt, url)...); code != 0 {
		t.Fatalf("first push: %s", out)
	}
	if out, code := run(t, "gc", "--keep-last", "2", src); code != 0 {
		t.Fatalf("gc of the source: %s", out)
	}
	before := du(t, dst, true)

	// An empty source must not empty the standby.
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	if r, code, out := copyPrune(t, nil, "push", append(sshArgs, empty, url)...); code == 0 || !strings.Contains(out, "would remove every selected file") || len(r.Removed) != 0 {
		t.Fatalf("push --prune from an empty store: exit %d\n%s", code, out)
	}

	r, code, out := copyPrune(t, nil, "push", append(sshArgs, "--path", "vm1", mnt, url)...)
	if code != 0 || !slices.Equal(r.Removed, []string{"vm1/c0", "vm1/c1"}) || r.RemovedBytes <= 0 {
		t.Fatalf("push --prune: exit %d, removed %q\n%s", code, r.Removed, out)
	}
	if out, code := run(t, "gc", dst); code != 0 {
		t.Fatalf("gc of the standby: %s", out)
	}
	after := du(t, dst, true)
	t.Logf("standby: %d bytes before the prune, %d after its gc", before, after)
	if after >= before {
		t.Errorf("the standby's gc after the prune gave nothing back: du %d -> %d", before, after)
	}
	out2 := filepath.Join(dir, "standby")
	d := mount(t, dst, out2)
	if got := listDir(t, filepath.Join(out2, "vm1")); !slices.Equal(got, []string{"c2", "c3"}) {
		t.Errorf("standby's vm1 holds %q, want c2 c3", got)
	}
	for _, g := range []int{2, 3} {
		sameFile(t, filepath.Join(imgs, fmt.Sprint("c", g)), filepath.Join(out2, "vm1", fmt.Sprint("c", g)))
	}
	if _, err := os.Stat(filepath.Join(out2, "notes.txt")); err != nil {
		t.Errorf("notes.txt, outside --path, went: %v", err)
	}
	d.stop(t)

	// A pull --prune into a mounted store: the daemon removes, and the
	// mount stops showing the file.
	third, mnt3 := filepath.Join(dir, "third"), filepath.Join(dir, "mnt3")
	mount(t, third, mnt3)
	os.MkdirAll(filepath.Join(mnt3, "vm1"), 0o755)
	os.WriteFile(filepath.Join(mnt3, "vm1", "old"), []byte("expired elsewhere\n"), 0o644)
	if _, err := os.Stat(filepath.Join(mnt3, "vm1", "old")); err != nil {
		t.Fatal(err)
	}
	r, code, out = copyPrune(t, nil, "pull", append(sshArgs, "--path", "vm1", url, mnt3)...)
	if code != 0 || r.Files != 2 || !slices.Equal(r.Removed, []string{"vm1/old"}) {
		t.Fatalf("pull --prune into a mount: exit %d %+v\n%s", code, r, out)
	}
	if got := listDir(t, filepath.Join(mnt3, "vm1")); !slices.Equal(got, []string{"c2", "c3"}) {
		t.Errorf("the mount's vm1 shows %q after the pull --prune", got)
	}
	if _, err := os.Stat(filepath.Join(mnt3, "vm1", "old")); !os.IsNotExist(err) {
		t.Errorf("vm1/old through the mount after the pull --prune removed it: %v (a stale kernel entry)", err)
	}
	sameFile(t, filepath.Join(imgs, "c3"), filepath.Join(mnt3, "vm1", "c3"))

	// A copy that fails removes nothing: a different notes.txt at the
	// destination, and a file the source no longer has.
	os.WriteFile(filepath.Join(mnt3, "notes.txt"), []byte("a different file\n"), 0o644)
	os.WriteFile(filepath.Join(mnt3, "vm1", "old2"), []byte("expired elsewhere\n"), 0o644)
	r, code, out = copyPrune(t, nil, "pull", append(sshArgs, url, mnt3)...)
	if code == 0 || len(r.Removed) != 0 || r.PruneSkipped == "" {
		t.Fatalf("pull --prune with a failed copy: exit %d %+v\n%s", code, r, out)
	}
	if _, err := os.Stat(filepath.Join(mnt3, "vm1", "old2")); err != nil {
		t.Errorf("a pull --prune whose copy failed removed a file: %v", err)
	}

	// A bucket: this host's expired files go.
	s := startS3(t)
	common := []string{"--endpoint", s.Endpoint, "--key-file", keyFile(t)}
	bucket := "s3://ckpt/site"
	full := filepath.Join(dir, "full")
	mount(t, full, filepath.Join(dir, "mnt4"))
	os.MkdirAll(filepath.Join(dir, "mnt4", "vm1"), 0o755)
	for g := range 3 {
		b, _ := os.ReadFile(filepath.Join(imgs, fmt.Sprint("c", g)))
		os.WriteFile(filepath.Join(dir, "mnt4", "vm1", fmt.Sprint("c", g)), b, 0o644)
	}
	if out, code := runEnv(t, s.Env, append(append([]string{"push"}, common...), filepath.Join(dir, "mnt4"), bucket)...); code != 0 {
		t.Fatalf("push to the bucket: %s", out)
	}
	os.Remove(filepath.Join(dir, "mnt4", "vm1", "c0"))
	os.Remove(filepath.Join(dir, "mnt4", "vm1", "c1"))
	r, code, out = copyPrune(t, s.Env, "push", append(common, filepath.Join(dir, "mnt4"), bucket)...)
	if code != 0 || !slices.Equal(r.Removed, []string{"vm1/c0", "vm1/c1"}) {
		t.Fatalf("push --prune to the bucket: exit %d %+v\n%s", code, r, out)
	}
	out, code = runEnv(t, s.Env, append(append([]string{"bucket", "ls"}, common...), bucket)...)
	if code != 0 || strings.Contains(out, "vm1/c0") || strings.Contains(out, "vm1/c1") || !strings.Contains(out, "vm1/c2") {
		t.Fatalf("bucket ls after the prune: exit %d\n%s", code, out)
	}
}
