package main

import (
	"bufio"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

func runXenSynthCmd(args []string) error {
	var g xentest.Guest
	f := newFlags("xen synth")
	f.StringVar(&g.Name, "name", "guest", "guest name")
	f.StringVar(&g.UUID, "uuid", "00000000-0000-4000-8000-000000000001", "guest UUID (the lineage)")
	f.BoolVar(&g.HVM, "hvm", false, "an HVM guest (default PV)")
	f.Int64Var(&g.Pages, "pages", 32768, "guest memory in 4 KiB pages")
	f.IntVar(&g.VCPUs, "vcpus", 1, "vCPUs")
	f.Uint64Var(&g.Seed, "seed", 1, "seed of the memory contents")
	f.IntVar(&g.Gen, "gen", 0, "generation: each one after 0 rewrites --dirty of the pages")
	f.Float64Var(&g.Dirty, "dirty", 0.01, "fraction of pages each generation rewrites")
	f.IntVar(&g.ConfigPad, "config-pad", 0, "bytes added to the JSON config (moves every later byte)")
	f.Int64Var(&g.Ballooned, "ballooned", 0, "pages ballooned out (saved without data)")
	remus := f.Int("remus", -1, "write an xl remus stream instead: checkpoint 0 (all pages) then `n` checkpoints of --dirty pages each, no END")
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	if g.Pages <= 0 || g.Ballooned < 0 || g.Ballooned > g.Pages || g.Dirty < 0 || g.Dirty > 1 || g.Gen < 0 {
		return fail(exitUsage, "synth: need --pages > 0, 0 <= --ballooned <= --pages, 0 <= --dirty <= 1, --gen >= 0")
	}
	out, err := os.Create(pos[0])
	if err != nil {
		return fail(exitError, "synth: %v", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	write := g.Write
	if *remus >= 0 {
		write = func(w io.Writer) error { return g.WriteRemus(w, *remus) }
	}
	if err := write(w); err != nil {
		out.Close()
		return fail(exitError, "synth: %v", err)
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return fail(exitError, "synth: %v", err)
	}
	return out.Close()
}
