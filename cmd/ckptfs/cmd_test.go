package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// makeStore writes two files with the same content into a new on-disk store
// and returns its directory and the chunk IDs the files use.
func makeStore(t *testing.T) (string, []chunkstore.ID) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	cs, err := chunkstore.Open(dir, chunkstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	x, err := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg := content.DefaultConfig()
	cfg.Pages = fs.XenPages(x, true)
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	img := memimage.Image{Seed: 5, Pages: 1024, Mix: memimage.DefaultMix}.Bytes()
	for _, name := range []string{"a", "b"} {
		in, err := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		w := data.NewWriter(in)
		if err := w.WriteAt(img, 0, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	var ids []chunkstore.ID
	cs.Walk(func(i chunkstore.Info) error { ids = append(ids, i.ID); return nil })
	data.Close()
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, ids
}

func TestStats(t *testing.T) {
	dir, ids := makeStore(t)
	var out bytes.Buffer
	if err := runStats(&out, statsOptions{json: true}, dir); err != nil {
		t.Fatal(err)
	}
	var s gc.Stats
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Files != 2 || s.LogicalBytes != 2*1024*4096 || s.Chunks != int64(len(ids)) || s.DedupRatio < 2 {
		t.Fatalf("stats: %+v", s)
	}
	out.Reset()
	if err := runStats(&out, statsOptions{}, dir); err != nil || !strings.Contains(out.String(), "dedup ratio") {
		t.Fatalf("text stats: %v\n%s", err, out.String())
	}
}

func TestFsckFindsDamage(t *testing.T) {
	dir, ids := makeStore(t)
	var out bytes.Buffer
	if err := runFsck(&out, fsckOptions{}, dir, nil); err != nil || !strings.Contains(out.String(), "no problems found") {
		t.Fatalf("clean store: %v\n%s", err, out.String())
	}
	// Damage the store behind its back: one chunk's bytes replaced, another
	// chunk deleted.
	cs, err := chunkstore.Open(dir, chunkstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	cs.DamageForTest(ids[0])
	cs.DropForTest(ids[1])
	cs.Close()

	out.Reset()
	err = runFsck(&out, fsckOptions{}, dir, nil)
	var ee *exitErr
	if !errors.As(err, &ee) || ee.code != exitProblems {
		t.Fatalf("fsck of a damaged store: %v, want exit %d", err, exitProblems)
	}
	for _, want := range []string{"corrupt-chunk", ids[0].String(), "missing-chunk", ids[1].String()} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("fsck output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"stats"}, {"stats", "a", "b"}, {"fsck", "--bogus", "x"}, {"mount", "x"}} {
		err := run(args)
		var ee *exitErr
		if !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%v: %v, want usage error", args, err)
		}
	}
}

// TestStatsLineages writes three generations of one guest and one of
// another into a store and checks `stats --json` groups them by UUID with
// each generation's new bytes.
func TestStatsLineages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	cs, err := chunkstore.Open(dir, chunkstore.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	x, _ := index.Open(cs.DB(), 1, 0, 0, lineage.Keys)
	cfg := content.DefaultConfig()
	cfg.Pages = fs.XenPages(x, true)
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	put := func(name string, g xentest.Guest, mtime int64) {
		in, err := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		w := data.NewWriter(in)
		b := g.Bytes()
		for off := 0; off < len(b); off += 1 << 20 {
			if err := w.WriteAt(b[off:min(len(b), off+1<<20)], int64(off), mtime); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	for gen := 0; gen < 3; gen++ {
		put(fmt.Sprint("web-", gen), xentest.Guest{Name: "web", UUID: "uuid-web", Pages: 2048, VCPUs: 1, Seed: 1, Gen: gen, Dirty: 0.05}, int64(10+2*gen)*1e9)
	}
	put("db-0", xentest.Guest{Name: "db", UUID: "uuid-db", Pages: 1024, VCPUs: 1, Seed: 2}, 20e9)
	put("not-xen", xentest.Guest{}, 30e9) // zero pages: an empty, malformed image is not a lineage
	data.Close()
	cs.Close()

	var out bytes.Buffer
	if err := runStats(&out, statsOptions{json: true}, dir); err != nil {
		t.Fatal(err)
	}
	var s gc.Stats
	json.Unmarshal(out.Bytes(), &s)
	if len(s.Lineages) != 2 || s.Lineages[0].UUID != "uuid-db" || s.Lineages[1].UUID != "uuid-web" {
		t.Fatalf("lineages: %+v", s.Lineages)
	}
	web := s.Lineages[1]
	if web.Generations != 3 || len(web.NewBytes) != 3 || web.NewBytes[0] <= 0 {
		t.Fatalf("web lineage: %+v", web)
	}
	// later generations add far less than the first
	if web.NewBytes[1]*3 > web.NewBytes[0] || web.NewBytes[2]*3 > web.NewBytes[0] {
		t.Fatalf("new bytes per generation: %v", web.NewBytes)
	}
	// page entries: every pfn in the first, about the 5% dirty after
	if len(web.Pages) != 3 || web.Pages[0] != 2048 || web.Pages[1] < 50 || web.Pages[1] > 200 || web.Pages[2] < 50 || web.Pages[2] > 200 {
		t.Fatalf("changed pages per generation: %v", web.Pages)
	}
	if math.Abs(web.Interval-2) > 1e-6 || math.Abs(web.PerSecond-0.5) > 1e-6 || s.Lineages[0].Interval != 0 {
		t.Fatalf("checkpoint rate: %+v", s.Lineages)
	}
	out.Reset()
	runStats(&out, statsOptions{}, dir)
	if !strings.Contains(out.String(), "web (uuid-web), uid 0, /: 3 generations") || !strings.Contains(out.String(), "one per 2.00 s, newest ") ||
		!strings.Contains(out.String(), "new bytes per generation: "+shortBytes(web.NewBytes[0])+" ") ||
		!strings.Contains(out.String(), fmt.Sprintf("changed pages per generation: %d %d %d", web.Pages[0], web.Pages[1], web.Pages[2])) {
		t.Fatalf("text stats:\n%s", out.String())
	}
}

// TestEveryStr: checkpoint intervals in a person's units.
func TestEveryStr(t *testing.T) {
	for _, c := range []struct {
		secs float64
		want string
	}{{0.44, "0.44 s"}, {2, "2.00 s"}, {90, "1.5 min"}, {3600, "1 h"}, {5400, "1.5 h"}, {86400, "1 d"}, {7 * 86400, "7 d"}} {
		if got := everyStr(c.secs); got != c.want {
			t.Errorf("everyStr(%g) = %q, want %q", c.secs, got, c.want)
		}
	}
}

// TestFlagErrors: a bad flag value or a mistyped flag is said in a user's
// words (no "strconv.ParseInt"), with the flag meant when it is close, and
// exits 2.
func TestFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gc", "--keep-last", "seven", "s"}, `invalid argument "seven" for "--keep-last" flag: want a whole number`},
		{[]string{"gc", "--keep-lats", "3", "s"}, "unknown flag: --keep-lats; did you mean --keep-last?"},
		{[]string{"gc", "--frobnicate", "s"}, "unknown flag: --frobnicate (see 'ckptfs gc --help')"},
		{[]string{"mount", "--writer-memory", "x", "a", "b"}, `for "--writer-memory" flag: want a whole number`},
		{[]string{"gc", "--keep-last", "99999999999999999999", "s"}, "flag: out of range"},
	} {
		err := run(tc.args)
		var ee *exitErr
		if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "strconv") {
			t.Errorf("%v: %v, want exit %d and %q", tc.args, err, exitUsage, tc.want)
		}
	}
}

// TestGroupHelp: `ckptfs xen --help` and `ckptfs bucket --help` print
// their subcommands and exit 0, as every command's --help does; a missing
// subcommand is a usage error.
func TestGroupHelp(t *testing.T) {
	for _, g := range []string{"xen", "bucket"} {
		if err := run([]string{g, "--help"}); err != nil {
			t.Errorf("%s --help: %v", g, err)
		}
		var ee *exitErr
		if err := run([]string{g}); !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%s without a subcommand: %v, want exit %d", g, err, exitUsage)
		}
	}
}
