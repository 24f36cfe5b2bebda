package main

// pull is push seen from the receiving host: ckptfs pull SRC DEST copies
// what SRC (another host's store over ssh, a bucket, a store directory)
// has and DEST lacks; with an s3:// SRC, --from-host names whose files.
func runPullCmd(args []string) error { return runCopy("pull", args) }
