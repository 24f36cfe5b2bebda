package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/fs/daemon"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

// gcRequest and gcReport are a gc run's request and report.
type (
	gcRequest = daemon.GCRequest
	gcReport  = daemon.GCReport
)

// durationValue parses Go durations plus whole days and weeks ("7d", "2w").
type durationValue struct{ d *time.Duration }

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return ""
	}
	return v.d.String()
}
func (v durationValue) Type() string { return "duration" }
func (v durationValue) Set(s string) error {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			if k, err := strconv.Atoi(n); err == nil && k >= 0 {
				*v.d = time.Duration(k) * unit
				return nil
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like 90m, 36h or 7d")
	}
	*v.d = d
	return nil
}

// addPolicyFlags defines the retention flags (shared by gc and mount).
func addPolicyFlags(f *pflag.FlagSet, p *gc.Policy) {
	f.IntVar(&p.KeepLast, "keep-last", 0, "keep the `n` newest generations of each guest lineage (one owner's images of one guest in one directory)")
	f.Var(durationValue{&p.KeepWithin}, "keep-within", "keep generations at most this much older than the newest (e.g. 36h, 7d)")
	f.IntVar(&p.KeepHourly, "keep-hourly", 0, "keep the newest generation of each of the `n` newest hours")
	f.IntVar(&p.KeepDaily, "keep-daily", 0, "keep the newest generation of each of the `n` newest days")
	f.IntVar(&p.KeepWeekly, "keep-weekly", 0, "keep the newest generation of each of the `n` newest weeks")
	f.IntVar(&p.KeepMonthly, "keep-monthly", 0, "keep the newest generation of each of the `n` newest months")
	f.IntVar(&p.KeepYearly, "keep-yearly", 0, "keep the newest generation of each of the `n` newest years")
	f.BoolVar(&p.AllFiles, "expire-all-files", false, "expire regular files that are not xl save images too (each owner's files of each directory are a group); without it only images expire")
}

func runGCCmd(args []string) error {
	var req gcRequest
	var asJSON bool
	f := newFlags("gc")
	addPolicyFlags(f, &req.Policy)
	f.BoolVar(&req.DryRun, "dry-run", false, "list what the policy expires and the bytes that would come back; change nothing")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.BoolVar(&req.RewriteAll, "compact", false, fmt.Sprintf("give back now all that was freed: rewrite every segment that holds freed bytes, not only those %.0f%% freed (copies their live records)", gc.SegmentGarbage*100))
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	if err := req.Policy.Validate(); err != nil {
		return fail(exitUsage, "gc: %v", err)
	}
	store, err := storeDir(pos[0]) // a mountpoint names its store
	if err != nil {
		return err
	}
	return runGC(os.Stdout, store, req, asJSON)
}

func runGC(w io.Writer, store string, req gcRequest, asJSON bool) error {
	st, err := openControl(store)
	if err != nil {
		return err
	}
	pr := newProgress("gc", false)
	rep, err := st.GC(req, pr.gc())
	pr.finish()
	err = ctlErr(err)
	if err != nil && (errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device")) {
		return fail(exitError, "gc: the store's disk is full, and gc writes before it frees (%s): remove some files (rm needs no room), or make room on the disk, then run gc again", chunkstore.OneLine(err.Error()))
	}
	if err != nil {
		return err
	}
	if rep.Expired == nil {
		rep.Expired = []gc.Victim{} // "expired": [], not null
	}
	if asJSON {
		return json.NewEncoder(w).Encode(rep)
	}
	if req.Policy.Empty() {
		// As restic's forget does: no policy expires nothing.
		fmt.Fprintln(w, "no retention policy given (--keep-last, --keep-within, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly): nothing expires; collecting what was already deleted")
	}
	printGC(w, rep)
	if len(rep.Failed) > 0 {
		return fail(exitError, "gc: %d files could not be removed", len(rep.Failed))
	}
	return nil
}

func printGC(w io.Writer, rep gcReport) {
	verb := "expired"
	if rep.DryRun {
		verb = "would expire"
	}
	var size int64
	for _, v := range rep.Expired {
		fmt.Fprintf(w, "%s %s (%s, %s, %s)\n", verb, v.Path, v.Group, bytesStr(v.Size), time.Unix(0, v.Mtime).UTC().Format(time.RFC3339))
		size = index.AddSizes(size, v.Size)
	}
	fmt.Fprintf(w, "%s %d files, %s logical\n", verb, len(rep.Expired), bytesStr(size))
	if rep.DryRun {
		fmt.Fprintf(w, "would free %s stored\n", bytesStr(rep.WouldFree))
	}
	for _, f := range rep.Failed {
		fmt.Fprintf(w, "FAILED %s\n", f)
	}
	if r := rep.Result; r != nil {
		fmt.Fprintf(w, "collected %d generations (%d page entries, %d waiting on a writer), %d of %d candidate chunks, %s stored; disk %s -> %s in %.2fs\n",
			r.GensReclaimed, r.PageEntries, r.GensWaiting, r.ChunksDeleted, r.Candidates, bytesStr(r.StoredFreed),
			bytesStr(r.DiskBefore), bytesStr(r.DiskAfter), r.Seconds)
		if r.DeadWaiting > 0 {
			why := fmt.Sprintf("less than %.0f%% of each is freed", gc.SegmentGarbage*100)
			if r.NoRoom {
				why = "the disk has no room to copy their live records"
			}
			fmt.Fprintf(w, "%s of freed bytes stay on disk in %d segments: %s; they come back when more of those segments is freed, or now with 'ckptfs gc --compact' (copies %s)\n",
				bytesStr(r.DeadWaiting), r.DeadWaitingSegments, why, bytesStr(r.WaitingCopy))
		}
	}
}
