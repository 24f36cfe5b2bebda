package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

type statsOptions struct{ json bool }

func runStatsCmd(args []string) error {
	var o statsOptions
	fs := newFlags("stats")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	return runStats(os.Stdout, o, pos[0])
}

func runStats(w io.Writer, o statsOptions, store string) error {
	var s gc.Stats
	err := withStore(store, "/stats", &s, func(cs *chunkstore.Store, x *index.Index) (err error) {
		s, err = gc.ComputeStats(cs, x)
		return err
	})
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(w).Encode(s)
	}
	fmt.Fprintf(w, "files        %d\n", s.Files)
	fmt.Fprintf(w, "directories  %d\n", s.Dirs)
	fmt.Fprintf(w, "symlinks     %d\n", s.Symlinks)
	fmt.Fprintf(w, "logical      %s\n", bytesStr(s.LogicalBytes))
	fmt.Fprintf(w, "stored       %s in %d chunks\n", bytesStr(s.StoredBytes), s.Chunks)
	fmt.Fprintf(w, "dedup ratio  %.2fx\n", s.DedupRatio)
	fmt.Fprintf(w, "on disk      %s\n", bytesStr(s.DiskBytes))
	if len(s.Lineages) > 0 {
		fmt.Fprintln(w, "lineages (xl save images by guest UUID):")
	}
	for _, l := range s.Lineages {
		fmt.Fprintf(w, "  %s (%s): %d generations, %s logical", l.Name, l.UUID, l.Generations, bytesStr(l.LogicalBytes))
		if l.Interval > 0 {
			fmt.Fprintf(w, ", one per %.2f s (%.3f checkpoints/s)", l.Interval, l.PerSecond)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "    new bytes per generation:%s\n", intsStr(l.NewBytes))
		if slices.ContainsFunc(l.Pages, func(n int64) bool { return n > 0 }) {
			fmt.Fprintf(w, "    changed pages per generation:%s\n", intsStr(l.Pages))
		}
	}
	return nil
}

func intsStr(ns []int64) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, " %d", n)
	}
	return b.String()
}

func bytesStr(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}
