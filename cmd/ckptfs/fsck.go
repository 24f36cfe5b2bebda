package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
)

type fsckOptions struct{ json, repair, rebuild bool }

func runFsckCmd(args []string) error {
	var o fsckOptions
	f := newFlags("fsck")
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.BoolVar(&o.repair, "repair", false, "then delete the chunks nothing references")
	f.BoolVar(&o.rebuild, "rebuild", false, "first make the store's database again from the journal in its segments/ (the old files are moved aside); the store must not be mounted")
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	store, err := storeDir(pos[0]) // a mountpoint names its store
	if err != nil {
		return err
	}
	var rebuilt *chunkstore.RebuildReport
	if o.rebuild {
		if rebuilt, err = runRebuild(os.Stdout, o, store); err != nil {
			return err
		}
	}
	return runFsck(os.Stdout, o, store, rebuilt)
}

// runRebuild makes the store's database again from its journal
// (chunkstore.Rebuild) and says what it read (with --json, fsck's one
// JSON object carries the report).
func runRebuild(w io.Writer, o fsckOptions, store string) (*chunkstore.RebuildReport, error) {
	rep, err := chunkstore.Rebuild(store)
	if err != nil {
		switch {
		case errors.Is(err, chunkstore.ErrLocked):
			return nil, fail(exitLocked, "fsck --rebuild: %v (unmount it first)", err)
		case errors.Is(err, chunkstore.ErrNotStore):
			return nil, fail(exitStore, "fsck --rebuild: %v", err)
		case errors.Is(err, chunkstore.ErrNoJournal):
			return nil, fail(exitProblems, "fsck --rebuild: %v (stores written by format 4 or older get one at their first writable open by this version)", err)
		}
		return nil, fmt.Errorf("fsck --rebuild: %w", err)
	}
	if o.json {
		return &rep, nil
	}
	fmt.Fprintf(w, "rebuild: %s (%d keys), then %d logs (%d batches, %s) in %.2f s\n",
		rep.Dump, rep.DumpKeys, len(rep.Logs), rep.Batches, bytesStr(rep.Bytes), rep.Took.Seconds())
	for _, d := range rep.Damaged {
		fmt.Fprintf(w, "PROBLEM journal: %s (what it held past that point is not in the rebuilt store)\n", d)
	}
	fmt.Fprintf(w, "rebuild: the old database and the journal it used are in %s (remove it once the store is checked)\n", rep.Aside)
	return &rep, nil
}

func runFsck(w io.Writer, o fsckOptions, store string, rebuilt *chunkstore.RebuildReport) error {
	var r gc.FsckReport
	pr := newProgress("fsck", true)
	p := pr.gc()
	st, err := openControl(store)
	if err != nil {
		return err
	}
	r, err = st.Fsck(p)
	pr.finish()
	if err != nil {
		return ctlErr(err)
	}
	// Files a killed daemon closed but did not store: not damage (the
	// next writable mount stores them), but fsck checked the store
	// without them.
	spooled := fs.SpooledFiles(store)
	if o.json {
		out := struct {
			gc.FsckReport
			Spooled int                       `json:"spooled_files"`
			Rebuild *chunkstore.RebuildReport `json:"rebuild,omitempty"`
		}{r, spooled, rebuilt}
		if err := json.NewEncoder(w).Encode(out); err != nil {
			return err
		}
	} else {
		if spooled > 0 {
			fmt.Fprintf(w, "spooled: %d closed files not stored yet (in %s; a writable mount stores them, and this check did not see them)\n", spooled, filepath.Join(store, fs.SpoolDir))
		}
		fmt.Fprintf(w, "checked %d files, %d extents, %d chunks (%s stored read, %s re-hashed)\n", r.Files, r.Extents, r.Chunks, bytesStr(r.StoredBytes), bytesStr(r.ChunkBytes))
		fmt.Fprintf(w, "unreferenced chunks: %d\n", r.Unreferenced)
		for _, p := range r.Problems {
			where := ""
			if p.Path != "" {
				where += " file=/" + p.Path
			}
			if p.Ino != 0 {
				where += fmt.Sprintf(" ino=%d offset=%d", p.Ino, p.Offset)
			}
			if p.Chunk != "" {
				where += " chunk=" + p.Chunk
			}
			if p.File != "" {
				where += " store-file=" + p.File
			}
			fmt.Fprintf(w, "PROBLEM %s%s: %s\n", p.Kind, where, p.Detail)
		}
		if r.OK() {
			fmt.Fprintln(w, "no problems found")
		}
	}
	if o.repair {
		for _, p := range r.Problems {
			if p.Kind == "index" || p.Kind == "damaged-file" {
				return fail(exitProblems, "fsck --repair: refused: the index could not be read whole (%s), so chunks it may still name would look unreferenced", p.Detail)
			}
		}
		res, err := st.Repair()
		if a := res.Accepted; a != nil && !o.json {
			fmt.Fprintf(w, "repair: accepted the store as it is now (%d durable commits; the log had lost %d)\n", a.Durable, a.Lost)
		}
		if err != nil {
			return ctlErr(fmt.Errorf("fsck --repair: %w", err))
		}
		if o.json {
			json.NewEncoder(w).Encode(res)
		} else {
			fmt.Fprintf(w, "repair: deleted %d unreferenced chunks (%s stored); disk %s -> %s\n",
				res.ChunksDeleted, bytesStr(res.StoredFreed), bytesStr(res.DiskBefore), bytesStr(res.DiskAfter))
		}
	}
	if !r.OK() {
		return fail(exitProblems, "fsck: %d problems found", len(r.Problems))
	}
	return nil
}
