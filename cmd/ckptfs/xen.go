package main

import "fmt"

// xen subcommands.
var xenCommands = []command{
	{"inspect", "[--json] FILE", "describe an xl save image: guest, records, pages", runXenInspectCmd},
	{"synth", "[flags] OUT", "write a synthetic xl save image (tests, benchmarks)", runXenSynthCmd},
	{"receive", "--into DIR [--store STORE] [policy]", "receive an xl remus stream on stdin; publish each checkpoint as a plain xl save image", runXenReceiveCmd},
}

func runXenCmd(args []string) error {
	if len(args) > 0 {
		for _, c := range xenCommands {
			if c.name == args[0] {
				return c.run(args[1:])
			}
		}
	}
	msg := "usage: ckptfs xen SUBCOMMAND\n\nsubcommands:\n"
	for _, c := range xenCommands {
		msg += fmt.Sprintf("  %-8s %-16s %s\n", c.name, c.args, c.summary)
	}
	if len(args) == 0 {
		return fail(exitUsage, "xen: missing subcommand\n%s", msg)
	}
	return fail(exitUsage, "xen: unknown subcommand %q\n%s", args[0], msg)
}
