package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGenerations: `ckptfs generations` lists each guest lineage's
// generations newest first, one row each, with the rules of a policy that
// keep it ("last #1", "daily #2"); what it says expires is exactly what
// `gc --dry-run` with the same policy would expire; --json gives the same
// as objects; without a policy every generation is kept ("no policy").
func TestGenerations(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	defer d.stop(t)
	dir := filepath.Join(d.mnt, "web1")
	os.Mkdir(dir, 0o755)
	day := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for g := 0; g < 4; g++ {
		p := filepath.Join(dir, fmt.Sprintf("c%d", g))
		if out, code := run(t, "xen", "synth", "--name", "web1", "--pages", "2048", "--gen", fmt.Sprint(g), p); code != 0 {
			t.Fatalf("synth: %s", out)
		}
		at := day.Add(time.Duration(g) * 24 * time.Hour)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	policy := []string{"--keep-last", "1", "--keep-daily", "2"}
	out, code := run(t, append(append([]string{"generations"}, policy...), d.mnt)...)
	if code != 0 {
		t.Fatalf("generations: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"guest web1:", "web1/c3", "web1/c2", "web1/c1", "web1/c0"}
	verdicts := []string{"(4 generations)", "keep: last #1, daily #1", "keep: daily #2", "expires", "expires"}
	if len(lines) != len(want) {
		t.Fatalf("generations: %d lines, want %d\n%s", len(lines), len(want), out)
	}
	for i := range want {
		if !strings.Contains(lines[i], want[i]) || !strings.HasSuffix(lines[i], verdicts[i]) {
			t.Fatalf("line %d: %q, want %q ... %q\n%s", i, lines[i], want[i], verdicts[i], out)
		}
	}
	js, code := run(t, append(append([]string{"generations", "--json"}, policy...), store)...)
	var gens []struct {
		Path    string   `json:"path"`
		Keep    bool     `json:"keep"`
		Reasons []string `json:"reasons"`
		New     int64    `json:"new_bytes"`
	}
	if code != 0 || json.Unmarshal([]byte(js), &gens) != nil || len(gens) != 4 || gens[0].New <= 0 {
		t.Fatalf("generations --json: exit %d\n%s", code, js)
	}
	var expiring []string
	for _, g := range gens {
		if !g.Keep {
			expiring = append(expiring, g.Path)
		}
	}
	dry, code := run(t, append(append([]string{"gc", "--dry-run", "--json"}, policy...), store)...)
	var plan struct {
		Expired []struct {
			Path string `json:"path"`
		} `json:"expired"`
	}
	if code != 0 || json.Unmarshal([]byte(dry), &plan) != nil {
		t.Fatalf("gc --dry-run: exit %d\n%s", code, dry)
	}
	var planned []string
	for _, v := range plan.Expired {
		planned = append(planned, v.Path)
	}
	slices.Sort(expiring)
	slices.Sort(planned)
	if !slices.Equal(expiring, planned) {
		t.Fatalf("generations says %v expire, gc --dry-run %v", expiring, planned)
	}
	out, code = run(t, "generations", store)
	if code != 0 || strings.Count(out, "keep: no policy") != 4 {
		t.Fatalf("generations without a policy: exit %d\n%s", code, out)
	}
}
