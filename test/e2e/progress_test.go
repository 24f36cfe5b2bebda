package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// onTerminal runs the ckptfs binary with a pseudo-terminal as its stdout
// and stderr (script(1)) and returns what it wrote there.
func onTerminal(t *testing.T, args ...string) string {
	t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("script(1) is required in CI (make deps installs bsdutils)")
		}
		t.Skip("no script(1)")
	}
	q := []string{bin}
	for _, a := range args {
		q = append(q, "'"+a+"'")
	}
	out, err := exec.Command(script, "-q", "-e", "-c", strings.Join(q, " "), "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("%v on a terminal: %v\n%s", args, err, out)
	}
	return string(out)
}

// ansi matches terminal control sequences (a bar's cursor moves).
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// TestProgress: long commands show a bar with rate and ETA on a terminal
// (gc's sweep with its total, known when one mark batch holds it)
// (each bar's line within 80 columns),
// and nothing of it when their output is not one; through a mounted
// store's daemon (fsck, gc) as well as on their own (push). stats shows a
// file being written, and stats --watch follows it until it is closed.
func TestProgress(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	dir := filepath.Join(d.mnt, "web")
	os.Mkdir(dir, 0o755)
	for gen := range 3 {
		img := xentest.Guest{Name: "web", UUID: "9a0c0000-0000-4000-8000-000000000001", Pages: 8192, VCPUs: 1, Seed: 2, Gen: gen, Dirty: 0.2}.Bytes()
		if err := os.WriteFile(filepath.Join(dir, "c"+string(rune('0'+gen))), img, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bar := func(out, phase string) bool {
		return strings.Contains(out, phase) && strings.Contains(out, "100%") && strings.Contains(out, "\r")
	}
	for _, c := range []struct {
		args   []string
		phases []string
		rate   bool
	}{
		{[]string{"fsck", store}, []string{"fsck: verifying chunks"}, true},
		{[]string{"gc", "--keep-last", "2", store}, []string{"gc: expiring files", "gc: reclaiming generations", "gc: sweeping candidate chunks 100%"}, false},
		{[]string{"push", d.mnt, filepath.Join(tmp, "copy")}, []string{"push: copying files"}, true},
	} {
		out := onTerminal(t, c.args...)
		for _, l := range strings.FieldsFunc(ansi.ReplaceAllString(out, ""), func(r rune) bool { return r == '\r' || r == '\n' }) {
			if n := utf8.RuneCountInString(strings.TrimRight(l, " ")); n > 80 && strings.Contains(l, "%") {
				t.Errorf("%v on a terminal: a bar line of %d columns (80 at most): %q", c.args, n, l)
			}
		}
		for _, ph := range c.phases {
			if !bar(out, ph) {
				t.Errorf("%v on a terminal: no %q bar\n%q", c.args, ph, out)
			}
		}
		if c.rate && !strings.Contains(out, "iB/s") {
			t.Errorf("%v on a terminal: no rate\n%q", c.args, out)
		}
		if c.rate && !strings.Contains(out, "[0s:") && !strings.Contains(out, "s:") {
			t.Errorf("%v on a terminal: no elapsed:ETA\n%q", c.args, out)
		}
	}
	// A copy into the mount, seen from stats.
	img, _ := os.ReadFile(filepath.Join(dir, "c2"))
	f, err := os.Create(filepath.Join(dir, "c3"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(img[:1<<20])
	if out, _ := run(t, "stats", store); !strings.Contains(out, "being written:\n  /web/c3: 1.00 MiB") || !strings.Contains(out, "of about") {
		t.Errorf("stats during a copy:\n%s", out)
	}
	go func() {
		for off := 1 << 20; off < len(img); off += 4 << 20 {
			f.Write(img[off:min(off+4<<20, len(img))])
			time.Sleep(150 * time.Millisecond)
		}
		f.Close()
	}()
	out := onTerminal(t, "stats", "--watch", "100ms", store)
	if !strings.Contains(out, "stats: being written (1 files") || !strings.Contains(out, "iB/s") {
		t.Errorf("stats --watch on a terminal:\n%q", out)
	}
	if out, code := run(t, "stats", "--watch", "100ms", store); code != 0 || !strings.Contains(out, "nothing is being written") {
		t.Errorf("stats --watch once the copy is closed: exit %d\n%s", code, out)
	}
	// Not a terminal: the plain output only.
	for _, args := range [][]string{{"fsck", store}, {"gc", "--keep-last", "1", store}, {"push", d.mnt, filepath.Join(tmp, "copy2")}} {
		out, code := run(t, args...)
		if code != 0 || strings.Contains(out, "%") || strings.Contains(out, "\r") {
			t.Errorf("%v into a pipe: exit %d, progress shown\n%q", args, code, out)
		}
	}
}
