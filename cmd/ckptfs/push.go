package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/fs/transfer"
)

// copyFlags select what push and pull copy.
type copyFlags struct {
	remoteFlags
	guests, paths []string
	fromHost      string
	json, prune   bool
}

func addCopyFlags(f *pflag.FlagSet, c *copyFlags) {
	f.StringSliceVar(&c.guests, "guest", nil, "copy only the images of this guest (`name or UUID`; repeatable)")
	f.StringSliceVar(&c.paths, "path", nil, "copy only this file or the files under this directory (`path` in the store; repeatable)")
	f.BoolVar(&c.json, "json", false, "print the report as JSON")
	f.BoolVar(&c.prune, "prune", false, "then remove the selected files DEST has and SRC no longer has (what SRC's retention expired), once every file was copied; DEST's gc then frees their space")
	addRemoteFlags(f, &c.remoteFlags)
}

func (c *copyFlags) selected(f transfer.File) bool {
	if len(c.guests) > 0 {
		ok := false
		for _, g := range c.guests {
			ok = ok || (f.UUID != "" && (g == f.UUID || g == f.Name))
		}
		if !ok {
			return false
		}
	}
	if len(c.paths) > 0 {
		ok := false
		for _, p := range c.paths {
			p = strings.Trim(p, "/")
			ok = ok || f.Path == p || strings.HasPrefix(f.Path, p+"/")
		}
		return ok
	}
	return true
}

func runPushCmd(args []string) error { return runCopy("push", args) }

// runCopy is push and pull: both copy what SRC has and DEST lacks.
func runCopy(name string, args []string) error {
	var c copyFlags
	f := newFlags(name)
	addCopyFlags(f, &c)
	f.StringVar(&c.fromHost, "from-host", "", "the bucket host whose files an s3:// SRC gives (default: --host)")
	pos, err := parse(f, args, 2)
	if err != nil {
		return err
	}
	for _, spec := range pos { // before opening anything
		if err := checkBucketFlags(spec, &c.remoteFlags); err != nil {
			return err
		}
	}
	fromHost := c.fromHost
	if fromHost == "" {
		fromHost = c.host
	}
	src, err := openSide(pos[0], &c.remoteFlags, fromHost, false)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openSide(pos[1], &c.remoteFlags, c.host, true)
	if err != nil {
		return err
	}
	defer dst.Close()
	start := time.Now()
	o := transfer.Options{Select: c.selected, Prune: c.prune}
	pr := newProgress(name, true)
	var mu sync.Mutex
	var last transfer.Progress
	o.Progress = func(p transfer.Progress) {
		mu.Lock()
		last = p
		mu.Unlock()
		if pr.enabled() {
			pr.update("copying files", p.Bytes, p.TotalBytes)
			note := fmt.Sprintf("%d/%d files", p.Done, p.Total)
			if w := wire(src, dst); w != "" {
				note += ", " + w
			}
			pr.note(note)
		}
	}
	// Ctrl-C (or SIGTERM): say how far it got and that a rerun resumes
	// (every file copied is committed; the one in flight is not, and its
	// chunks are not sent again), then exit 130 as the shell expects.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		pr.finish()
		mu.Lock()
		p := last
		mu.Unlock()
		// (No wire figures: the stream's counters may be held by the read
		// the signal interrupted.)
		fmt.Fprintf(os.Stderr, "ckptfs %s: interrupted after %d of %d files (%s of files); what was copied is kept: run the same command again to go on from there\n",
			name, p.Done, p.Total, human(p.Bytes))
		os.Exit(130)
	}()
	rep, err := transfer.Copy(src, dst, o)
	pr.finish()
	cerr := dst.Close()
	if err == nil {
		err = cerr
	}
	if errors.Is(err, transfer.ErrPruneEverything) {
		return err // refused before anything was copied: no report
	}
	if c.json {
		sent, recv := wireBytes(src, dst)
		json.NewEncoder(os.Stdout).Encode(struct {
			transfer.Report
			WireSent     int64   `json:"wire_sent"`
			WireReceived int64   `json:"wire_received"`
			Seconds      float64 `json:"seconds"`
		}{rep, sent, recv, time.Since(start).Seconds()})
	} else {
		w := wire(src, dst)
		if w != "" {
			w = "; " + w
		}
		fmt.Printf("%s %s -> %s: %d files copied (%d as deltas), %d already there; %s of files, %d chunks (%s) the destination lacked%s\n",
			name, src.what, dst.what, rep.Files, rep.Deltas, rep.Skipped, human(rep.Bytes), rep.Chunks, human(rep.ChunkBytes), w)
		if c.prune {
			fmt.Printf("%s --prune: %d files removed at %s (%s of files; the gc there frees what only they used)\n", name, len(rep.Removed), dst.what, human(rep.RemovedBytes))
			for _, p := range rep.Removed {
				fmt.Printf("  removed %s\n", p)
			}
		}
		for _, msg := range rep.Failed {
			fmt.Fprintf(os.Stderr, "ckptfs %s: not copied: %s\n", name, msg)
		}
		for _, msg := range rep.NotRemoved {
			fmt.Fprintf(os.Stderr, "ckptfs %s: not removed: %s\n", name, msg)
		}
		if rep.PruneSkipped != "" {
			fmt.Fprintf(os.Stderr, "ckptfs %s: --prune: %s\n", name, rep.PruneSkipped)
		}
	}
	if err != nil {
		return err
	}
	switch copied, removed := len(rep.Failed), len(rep.NotRemoved); {
	case copied > 0 && removed > 0:
		return fail(exitError, "%s: %d files not copied, %d not removed", name, copied, removed)
	case copied > 0:
		return fail(exitError, "%s: %d files not copied", name, copied)
	case removed > 0:
		return fail(exitError, "%s: %d files not removed", name, removed)
	}
	return nil
}

// wireBytes sums what crossed the wire (streams and bucket requests).
func wireBytes(sides ...*side) (sent, recv int64) {
	for _, s := range sides {
		if s.counter != nil {
			a, b := s.counter.wire()
			sent, recv = sent+a, recv+b
		}
	}
	return sent, recv
}

// wire says what crossed the wire; nothing between two local stores (no
// side has a wire).
func wire(sides ...*side) string {
	remote := false
	for _, s := range sides {
		remote = remote || s.counter != nil
	}
	if !remote {
		return ""
	}
	sent, recv := wireBytes(sides...)
	return fmt.Sprintf("wire %s sent, %s received", human(sent), human(recv))
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
