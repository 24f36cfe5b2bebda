package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore/bucket"
	"github.com/ckptfs/ckptfs/fs/transfer"
)

func runBucketLsCmd(args []string) error {
	var r remoteFlags
	var asJSON bool
	var from string
	f := newFlags("bucket ls")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&from, "from-host", "", "list only this host's files")
	addRemoteFlags(f, &r)
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	_, files, err := listBucket(pos[0], &r, from)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(files)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "HOST/PATH\tSIZE\tMODIFIED\tGUEST")
	for _, f := range files {
		guest := ""
		if f.UUID != "" {
			guest = f.Name + " (" + f.UUID + ")"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", f.Path, f.Size, time.Unix(0, f.Mtime).UTC().Format(time.RFC3339), guest)
	}
	return w.Flush()
}

// listBucket opens the bucket of spec and lists host's files ("" for
// every host's).
func listBucket(spec string, r *remoteFlags, host string) (*bucket.Bucket, []transfer.File, error) {
	b, err := openBucket(spec, r, r.host)
	if err != nil {
		return nil, nil, err
	}
	files, err := b.ListAll(host)
	return b, files, err
}
