package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/gc"
)

func runGenerationsCmd(args []string) error {
	var p gc.Policy
	var asJSON bool
	f := newFlags("generations")
	addPolicyFlags(f, &p)
	f.BoolVar(&asJSON, "json", false, "print JSON: one object per generation")
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fail(exitUsage, "generations: %v", err)
	}
	store, err := storeDir(pos[0]) // a mountpoint names its store
	if err != nil {
		return err
	}
	return runGenerations(os.Stdout, store, p, asJSON)
}

// runGenerations lists every guest lineage's generations (and, with
// --expire-all-files, each owner's other files by directory), newest
// first, with what the policy given would do to each and why: restic's
// snapshots and forget --dry-run in one.
func runGenerations(w io.Writer, store string, p gc.Policy, asJSON bool) error {
	st, err := openControl(store)
	if err != nil {
		return err
	}
	gens, err := st.Generations(p)
	if err != nil {
		return ctlErr(err)
	}
	if gens == nil {
		gens = []gc.Generation{}
	}
	if asJSON {
		return json.NewEncoder(w).Encode(gens)
	}
	if len(gens) == 0 {
		fmt.Fprintln(w, "no xl save images in the store (other files are listed with --expire-all-files)")
		return nil
	}
	group := ""
	for i, g := range gens {
		if g.Group != group {
			group = g.Group
			n := 0
			for _, h := range gens[i:] {
				if h.Group != group {
					break
				}
				n++
			}
			title := group
			if g.Guest != "" {
				title = "guest " + g.Guest + ": " + strings.TrimPrefix(group, "guest ")
			}
			fmt.Fprintf(w, "%s (%d generations)\n", title, n)
		}
		verdict := "keep: " + strings.Join(g.Reasons, ", ")
		if !g.Keep {
			verdict = "expires"
		}
		added := ""
		if g.UUID != "" {
			added = shortBytes(g.NewBytes) + " new"
		}
		fmt.Fprintf(w, "  %s  %-24s %11s %15s  %s\n", time.Unix(0, g.Mtime).UTC().Format("2006-01-02 15:04:05Z"), g.Path, shortBytes(g.Size), added, verdict)
	}
	return nil
}

// shortBytes is bytesStr without the exact count, for tables.
func shortBytes(n int64) string {
	s, _, _ := strings.Cut(bytesStr(n), " (")
	return s
}
