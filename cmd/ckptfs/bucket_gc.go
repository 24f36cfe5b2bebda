package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/ckptfs/ckptfs/chunkstore/bucket"
	"github.com/ckptfs/ckptfs/gc"
)

func runBucketGCCmd(args []string) error {
	var r remoteFlags
	var p gc.Policy
	var dry, asJSON bool
	f := newFlags("bucket gc")
	addPolicyFlags(f, &p)
	f.BoolVar(&dry, "dry-run", false, "say what would go, change nothing")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	addRemoteFlags(f, &r)
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fail(exitUsage, "bucket gc: %v", err)
	}
	b, err := openBucket(pos[0], &r, r.host)
	if err != nil {
		return err
	}
	rep, err := b.GC(bucket.GCOptions{Policy: p, Grace: r.grace, DryRun: dry})
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	verb := ""
	if dry {
		verb = " (dry run: nothing changed)"
	}
	fmt.Printf("bucket gc%s: %d files expired, %d left; %d packs: %d marked, %d rewritten, %d unmarked (needed again), %d deleted (%s), %d waiting out the grace period, %d orphans deleted; %d chunks in %s (%d stored twice, rewritten by a later run)\n",
		verb, len(rep.Expired), rep.Files, rep.Packs, rep.Marked, rep.Rewritten, rep.Unmarked, rep.Deleted, human(rep.DeletedBytes), rep.Pending, rep.Orphans,
		rep.Chunks, human(rep.StoredBytes), rep.Duplicates)
	for _, e := range rep.Expired {
		fmt.Println("expired", e)
	}
	return nil
}
