package main

// xen subcommands.
var xenCommands = []command{
	{"inspect", "[--json] FILE", "describe an xl save image: guest, records, pages", runXenInspectCmd},
	{"synth", "[flags] OUT", "write a synthetic xl save image (tests, benchmarks)", runXenSynthCmd},
	{"receive", "--into DIR [--store STORE] [policy]", "receive an xl remus stream on stdin; publish each checkpoint as a plain xl save image", runXenReceiveCmd},
}

func runXenCmd(args []string) error { return dispatch("xen", xenCommands, args) }
