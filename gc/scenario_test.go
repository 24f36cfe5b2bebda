package gc

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestScenarios plays the gc scenarios of testdata/scenarios (Pebble's
// datadriven files; `go test ./gc -run TestScenarios -rewrite` rewrites
// the expected output, to be read before it is committed). Commands:
//
//	put NAME guest=N gen=G day=D [hour=H]
//	                               an xl save image of guest N's
//	                               generation G, written on day D (at
//	                               noon, or hour H)
//	rm NAME                        unlink (the image's generation dies)
//	gc [keep-last=N] [keep-daily=N] [guest=N] [dry-run]
//	                               plan, then execute (or, dry, say what
//	                               it would free); guest=N: that lineage
//	ls                             every file with its size
//	check                          every file reads back as written
//	fsck                           the store's consistency check
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		sc := newScenario(t)
		datadriven.RunTest(t, path, sc.run)
	})
}

type scenario struct {
	x    *index.Index
	cs   *chunkstore.Store
	eng  *content.Store
	want map[string][]byte // what each file was written with
	run  func(t *testing.T, td *datadriven.TestData) string
}

func guestOf(n int) xentest.Guest {
	return xentest.Guest{Name: fmt.Sprint("guest", n), UUID: fmt.Sprintf("5ce0a000-0000-4000-8000-%012d", n),
		Pages: 512, VCPUs: 1, Seed: uint64(n), Dirty: 0.1}
}

func newScenario(t *testing.T) *scenario {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := content.DefaultConfig()
	cfg.Pages = func(ino uint64) content.Pages { return lineage.NewImage(x, ino, true) }
	cfg.Runs = lineage.Of(x)
	eng := content.New(cs, cs, x, cfg)
	t.Cleanup(eng.Close)
	sc := &scenario{x: x, cs: cs, eng: eng, want: map[string][]byte{}}
	day0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	sc.run = func(t *testing.T, td *datadriven.TestData) string {
		switch td.Cmd {
		case "put":
			var n, g, d int
			td.ScanArgs(t, "guest", &n)
			td.ScanArgs(t, "gen", &g)
			td.ScanArgs(t, "day", &d)
			h := 12
			td.MaybeScanArgs(t, "hour", &h)
			name := td.CmdArgs[0].Key
			gu := guestOf(n)
			gu.Gen = g
			img := gu.Bytes()
			now := day0.AddDate(0, 0, d).Add(time.Duration(h-12) * time.Hour).UnixNano()
			in, err := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG | 0o644, Mtime: now})
			if err != nil {
				return err.Error()
			}
			w := eng.NewWriter(in)
			defer w.Close()
			for off := 0; off < len(img); off += 1 << 20 {
				if err := w.WriteAt(img[off:min(len(img), off+1<<20)], int64(off), now); err != nil {
					return err.Error()
				}
			}
			if _, err := w.Commit(); err != nil {
				return err.Error()
			}
			sc.want[name] = img
			return ""
		case "rm":
			name := td.CmdArgs[0].Key
			in, err := x.Lookup(index.RootIno, name)
			if err == nil {
				err = OfflineRemover(x, day0.UnixNano())(index.RootIno, name, in.Ino)
			}
			if err != nil {
				return err.Error()
			}
			delete(sc.want, name)
			return ""
		case "gc":
			var p Policy
			td.MaybeScanArgs(t, "keep-last", &p.KeepLast)
			td.MaybeScanArgs(t, "keep-daily", &p.KeepDaily)
			var only *Scope
			var n int
			if td.MaybeScanArgs(t, "guest", &n) {
				only = &Scope{UUID: guestOf(n).UUID, Dir: index.RootIno}
			}
			plan, err := NewPlan(x, p, only)
			if err != nil {
				return err.Error()
			}
			var out strings.Builder
			var names []string
			for _, v := range plan.Expired {
				names = append(names, v.Path)
			}
			if len(names) == 0 {
				names = []string{"(none)"}
			}
			fmt.Fprintf(&out, "expire: %s\n", strings.Join(names, " "))
			if td.HasArg("dry-run") {
				free, err := plan.WouldFree(cs, x)
				if err != nil {
					return err.Error()
				}
				fmt.Fprintf(&out, "would free: %d stored bytes\n", free)
				return out.String()
			}
			rep, err := plan.Execute(cs, x, OfflineRemover(x, day0.UnixNano()), Options{}, nil)
			if err != nil {
				return err.Error()
			}
			for _, f := range rep.Failed {
				fmt.Fprintf(&out, "failed: %s\n", f)
			}
			for _, v := range plan.Expired {
				delete(sc.want, v.Path)
			}
			r := rep.Result
			fmt.Fprintf(&out, "generations reclaimed: %d, waiting: %d\nchunks deleted: %d, stored bytes freed: %d\n",
				r.GensReclaimed, r.GensWaiting, r.ChunksDeleted, r.StoredFreed)
			return out.String()
		case "ls":
			var out strings.Builder
			var names []string
			err := x.WalkDirents(func(parent uint64, d index.Dirent) error {
				if parent == index.RootIno {
					names = append(names, d.Name)
				}
				return nil
			})
			if err != nil {
				return err.Error()
			}
			slices.Sort(names)
			for _, name := range names {
				in, err := x.Lookup(index.RootIno, name)
				if err != nil {
					return err.Error()
				}
				fmt.Fprintf(&out, "%s %d\n", name, in.Size)
			}
			return out.String()
		case "check":
			var out strings.Builder
			names := slices.Sorted(func(yield func(string) bool) {
				for k := range sc.want {
					if !yield(k) {
						return
					}
				}
			})
			for _, name := range names {
				in, err := x.Lookup(index.RootIno, name)
				if err != nil {
					fmt.Fprintf(&out, "%s: %v\n", name, err)
					continue
				}
				got := make([]byte, in.Size)
				var c content.Cursor
				n, err := eng.ReadCommitted(&c, in.Ino, in.Ver, eng.NewEpoch(), in.Size, got, 0)
				eng.CloseCursor(&c)
				if err != nil || !bytes.Equal(got[:n], sc.want[name]) {
					fmt.Fprintf(&out, "%s: differs (%v)\n", name, err)
				}
			}
			if out.Len() == 0 {
				return fmt.Sprintf("ok: %d files read back as written\n", len(names))
			}
			return out.String()
		case "fsck":
			rep, err := Fsck(cs, x)
			if err != nil {
				return err.Error()
			}
			if rep.OK() {
				return "ok\n"
			}
			var out strings.Builder
			for _, p := range rep.Problems {
				fmt.Fprintf(&out, "%s %s\n", p.Kind, p.Path)
			}
			return out.String()
		}
		t.Fatalf("unknown command %q", td.Cmd)
		return ""
	}
	return sc
}

// putLine runs a scenario's put command ("NAME guest=N gen=G day=D").
func putLine(t *testing.T, sc *scenario, line string) {
	t.Helper()
	datadriven.RunTestFromString(t, "put "+line+"\n----\n\n", sc.run)
}
