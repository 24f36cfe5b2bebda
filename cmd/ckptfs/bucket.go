package main

import "fmt"

// bucket subcommands: what a shared bucket holds, and its gc.
var bucketCommands = []command{
	{"ls", "[--json] [--from-host H] s3://BUCKET[/PREFIX]", "every host's files in the bucket: host, path, size, guest", runBucketLsCmd},
	{"gc", "[policy] [--dry-run] s3://BUCKET[/PREFIX]", "expire files by policy; mark, then (after --grace) delete packs nobody needs", runBucketGCCmd},
	{"mount", "[--from-host H] [--cache DIR] s3://BUCKET[/PREFIX] MOUNTPOINT", "mount the bucket read-only (xl restore straight from it), foreground", runBucketMountCmd},
}

func runBucketCmd(args []string) error {
	if len(args) > 0 {
		for _, c := range bucketCommands {
			if c.name == args[0] {
				return c.run(args[1:])
			}
		}
	}
	msg := "usage: ckptfs bucket SUBCOMMAND\n\nsubcommands:\n"
	for _, c := range bucketCommands {
		msg += fmt.Sprintf("  %-4s %-46s %s\n", c.name, c.args, c.summary)
	}
	if len(args) == 0 {
		return fail(exitUsage, "bucket: missing subcommand\n%s", msg)
	}
	return fail(exitUsage, "bucket: unknown subcommand %q\n%s", args[0], msg)
}
