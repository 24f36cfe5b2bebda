package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/metrics"
)

func init() { metrics.SetFormat(chunkstore.FormatVersion) }

func runVersionCmd(args []string) error {
	fs := newFlags("version")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0); err != nil {
		return err
	}
	return printVersion(os.Stdout, *asJSON)
}

// printVersion says which ckptfs this is: version, commit, Go, and the
// store format it reads and writes (older ones it upgrades).
func printVersion(w io.Writer, asJSON bool) error {
	b := metrics.Build()
	if asJSON {
		return json.NewEncoder(w).Encode(b)
	}
	rev := b.Revision
	if rev == "" {
		rev = "unknown commit"
	} else if b.Modified {
		rev += " (modified)"
	}
	_, err := fmt.Fprintf(w, "ckptfs %s, %s, %s; store format %d (formats %d-%d upgraded in place)\n",
		b.Version, rev, b.GoVersion, b.Format, chunkstore.UpgradableFormat, b.Format-1)
	return err
}
