package main

// bucket subcommands: what a shared bucket holds, and its gc.
var bucketCommands = []command{
	{"ls", "[--json] [--from-host H] s3://BUCKET[/PREFIX]", "every host's files in the bucket: host, path, size, guest", runBucketLsCmd},
	{"gc", "[policy] [--dry-run] s3://BUCKET[/PREFIX]", "expire files by policy; mark, then (after --grace) delete packs nobody needs", runBucketGCCmd},
	{"mount", "[--from-host H] [--cache DIR] s3://BUCKET[/PREFIX] MOUNTPOINT", "mount the bucket read-only (xl restore straight from it), foreground", runBucketMountCmd},
}

func runBucketCmd(args []string) error { return dispatch("bucket", bucketCommands, args) }
