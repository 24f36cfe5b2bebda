package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/fs/daemon"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

type statsOptions struct {
	json  bool
	watch time.Duration
}

func runStatsCmd(args []string) error {
	var o statsOptions
	fs := newFlags("stats")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.DurationVar(&o.watch, "watch", 0, "follow the files being written into the mounted store, every `interval` (e.g. 1s), until none is: a bar with rate and ETA on a terminal, else a line (or JSON object) per interval")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	store, err := storeDir(pos[0]) // a mountpoint names its store
	if err != nil {
		return err
	}
	if o.watch > 0 {
		return watchWrites(os.Stdout, o, store)
	}
	return runStats(os.Stdout, o, store)
}

// storeStats is what stats prints: the store's accounting and, when it is
// mounted, the files being written.
type storeStats struct {
	gc.Stats
	Writing []fs.Writing `json:"writing"`
	// Spooled counts files closed but not yet stored (write-behind).
	Spooled int `json:"spooled_files"`
}

func runStats(w io.Writer, o statsOptions, store string) error {
	var s storeStats
	st, err := openControl(store)
	if err != nil {
		return err
	}
	if s.Stats, err = st.Stats(); err != nil {
		return ctlErr(err)
	}
	if s.Writing, err = st.Writing(); err != nil {
		return ctlErr(err)
	}
	if s.Writing == nil {
		s.Writing = []fs.Writing{}
	}
	s.Spooled = fs.SpooledFiles(store)
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
	if s.JournalBytes > 0 && s.StoredBytes > 0 {
		fmt.Fprintf(w, "journal      %s (%.1f%% of stored; what fsck --rebuild reads)\n", bytesStr(s.JournalBytes), 100*float64(s.JournalBytes)/float64(s.StoredBytes))
	}
	if s.Spooled > 0 {
		fmt.Fprintf(w, "spooled      %d closed files not stored yet (in %s; a writable mount stores them)\n", s.Spooled, filepath.Join(store, fs.SpoolDir))
	}
	if len(s.Lineages) > 0 {
		fmt.Fprintln(w, "lineages (one owner's xl save images of one guest in one directory, as gc judges them):")
	}
	for _, l := range s.Lineages {
		fmt.Fprintf(w, "  %s (%s), uid %d, %s: %d generations, %s logical", l.Name, l.UUID, l.UID, l.Dir, l.Generations, bytesStr(l.LogicalBytes))
		if l.Interval > 0 {
			fmt.Fprintf(w, ", one per %s", everyStr(l.Interval))
		}
		if l.Newest > 0 {
			fmt.Fprintf(w, ", newest %s", time.Unix(0, l.Newest).UTC().Format(time.RFC3339))
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "    new bytes per generation:%s\n", bytesList(l.NewBytes))
		if slices.ContainsFunc(l.Pages, func(n int64) bool { return n > 0 }) {
			fmt.Fprintf(w, "    changed pages per generation:%s\n", intsStr(l.Pages))
		}
	}
	if len(s.Writing) > 0 {
		fmt.Fprintln(w, "being written:")
	}
	for _, f := range s.Writing {
		fmt.Fprintf(w, "  /%s: %s%s\n", f.Path, bytesStr(f.Size), expectedStr(f))
	}
	return nil
}

func expectedStr(f fs.Writing) string {
	if f.Expected <= 0 {
		return ""
	}
	return fmt.Sprintf(" of about %s (the size of its directory's latest image)", bytesStr(f.Expected))
}

// watchWrites follows the files being written into a mounted store until
// none is left.
func watchWrites(w io.Writer, o statsOptions, store string) error {
	ctl, err := daemon.Dial(store)
	if errors.Is(err, daemon.ErrNoDaemon) {
		return fail(exitUsage, "stats --watch: %s is not mounted: nothing can be being written", store)
	}
	if err != nil {
		return ctlErr(err)
	}
	pr := newProgress("stats", true)
	defer pr.finish()
	var last int64
	lastAt := time.Now()
	for first := true; ; first = false {
		ws, err := ctl.Writing()
		if errors.Is(err, daemon.ErrNoDaemon) {
			ws, err = nil, nil // unmounted meanwhile: nothing is written any more
		}
		if err != nil {
			return ctlErr(err)
		}
		if len(ws) == 0 {
			if first {
				fmt.Fprintln(w, "nothing is being written")
			}
			return nil
		}
		var done, total int64
		known := true
		for _, f := range ws {
			done = index.AddSizes(done, f.Size)
			total += max(f.Expected, f.Size)
			known = known && f.Expected > 0
		}
		if !known {
			total = -1
		}
		now := time.Now()
		rate := float64(done-last) / now.Sub(lastAt).Seconds()
		last, lastAt = done, now
		switch {
		case pr.enabled():
			pr.update("being written", done, total)
			pr.note(fmt.Sprintf("%d files: /%s", len(ws), ws[0].Path))
		case o.json:
			json.NewEncoder(w).Encode(struct {
				Writing      []fs.Writing `json:"writing"`
				BytesPerSec  float64      `json:"bytes_per_second"`
				TotalWritten int64        `json:"bytes"`
			}{ws, max(rate, 0), done})
		default:
			for _, f := range ws {
				fmt.Fprintf(w, "/%s: %s%s\n", f.Path, bytesStr(f.Size), expectedStr(f))
			}
			if !first {
				fmt.Fprintf(w, "%d files, %.1f MB/s\n", len(ws), max(rate, 0)/1e6)
			}
		}
		time.Sleep(o.watch)
	}
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

// everyStr says an interval of secs seconds in a person's units: "2.0 s",
// "15 min", "1.5 h", "1 d".
func everyStr(secs float64) string {
	trim := func(v float64, unit string) string {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + unit
	}
	switch {
	case secs < 60:
		return fmt.Sprintf("%.2f s", secs)
	case secs < 3600:
		return trim(secs/60, "min")
	case secs < 86400:
		return trim(secs/3600, "h")
	}
	return trim(secs/86400, "d")
}

// bytesList is sizes in binary units, each after a space.
func bytesList(ns []int64) string {
	var b strings.Builder
	for _, n := range ns {
		b.WriteString(" " + shortBytes(n))
	}
	return b.String()
}
