// Command ckptfs mounts and inspects ckptfs stores.
//
//	ckptfs mount STORE MOUNTPOINT   mount a store (foreground)
//	ckptfs STORE MOUNTPOINT -o OPTS mount in the background (mount -t fuse.ckptfs)
//	ckptfs stats STORE              what the store holds
//	ckptfs fsck STORE               re-hash every chunk, check every file
//	ckptfs gc STORE                 expire generations, reclaim space
//	ckptfs push SRC DEST            copy what DEST lacks (stores, ssh, s3)
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/spf13/pflag"
)

// Exit codes. Scripts may rely on them.
const (
	exitOK         = 0
	exitError      = 1 // anything not listed below
	exitUsage      = 2 // bad command line
	exitNoFUSE     = 3 // /dev/fuse missing or unusable
	exitMountpoint = 4 // mountpoint missing, not a directory, or busy
	exitStore      = 5 // not a ckptfs store, or a store of another format version
	exitLocked     = 6 // store is in use by another process (and no daemon answers)
	exitProblems   = 7 // fsck found problems
	exitMalformed  = 8 // xen inspect: the file is not a well-formed xl save image
	exitDenied     = 9 // the store's daemon refuses this user (only root and the store's owner control it)
)

// exitErr is an error with an exit code.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func fail(code int, format string, a ...any) error {
	return &exitErr{code, fmt.Errorf(format, a...)}
}

type command struct {
	name, args, summary string
	run                 func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"mount", "[flags] STORE MOUNTPOINT", "mount STORE at MOUNTPOINT in the foreground (creates STORE on first use)", runMountCmd},
		{"stats", "[--json] STORE|MOUNTPOINT", "logical bytes, stored bytes, chunks, dedup ratio", runStatsCmd},
		{"fsck", "[--json] [--repair] [--rebuild] STORE|MOUNTPOINT", "re-hash every chunk and check every file's chunk list (--rebuild: first make a lost or damaged database again from the journal)", runFsckCmd},
		{"generations", "[policy] [--json] STORE|MOUNTPOINT", "list each guest's generations, newest first, and what a policy would keep and why", runGenerationsCmd},
		{"gc", "[policy] [--dry-run] STORE|MOUNTPOINT", "expire generations by policy and reclaim unreferenced space (online too)", runGCCmd},
		{"xen", "inspect|synth|receive ...", "xl save images: describe one, generate one, or receive an xl remus stream", runXenCmd},
		{"push", "[flags] SRC DEST", "copy files SRC has and DEST lacks, sending only missing chunks (store, mountpoint, ssh://host/store, s3://bucket)", runPushCmd},
		{"pull", "[flags] SRC DEST", "the same, run on the receiving host (--from-host picks a bucket host's files)", runPullCmd},
		{"serve", "STORE", "speak the transfer protocol on stdin/stdout (what push/pull run over ssh)", runServeCmd},
		{"bucket", "ls|gc ...", "an S3 bucket that hosts share: list every host's files, expire and reclaim", runBucketCmd},
		{"version", "[--json]", "the version, commit and Go of this binary, and the store format it writes", runVersionCmd},
		{"completion", "bash|zsh|fish", "print a shell completion script (make install installs them)", runCompletionCmd},
	}
}

// dispatch runs the subcommand of group (xen, bucket) that args name.
func dispatch(group string, cmds []command, args []string) error {
	if len(args) > 0 {
		for _, c := range cmds {
			if c.name == args[0] {
				return c.run(args[1:])
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: ckptfs %s SUBCOMMAND\n\nsubcommands:\n", group)
	for _, c := range cmds {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Print(b.String()) // asked for: exit 0
		return nil
	}
	if len(args) == 0 {
		return fail(exitUsage, "%s: missing subcommand\n%s", group, b.String())
	}
	return fail(exitUsage, "%s: unknown subcommand %q\n%s", group, args[0], b.String())
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: ckptfs COMMAND [flags] ARGS\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	b.WriteString("\nRun 'ckptfs COMMAND --help' for a command's flags.\n")
	return b.String()
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(cmd string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SortFlags = false
	return fs
}

// parse parses args and checks the number of positional arguments.
func parse(fs *pflag.FlagSet, args []string, want int) ([]string, error) {
	if flagsOnly { // completion collects the flags: stop here
		flagsSeen = fs
		return nil, errFlagsOnly
	}
	for _, c := range commands {
		if c.name == fs.Name() {
			fs.Usage = func() {
				fmt.Fprintf(os.Stderr, "usage: ckptfs %s %s\n\n%s.\n\nflags:\n%s", c.name, c.args, c.summary, fs.FlagUsages())
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, &exitErr{exitOK, err}
		}
		return nil, fail(exitUsage, "%s: %s", fs.Name(), flagError(fs, err))
	}
	if fs.NArg() != want {
		return nil, fail(exitUsage, "%s: want %d arguments, got %d (see 'ckptfs %s --help')", fs.Name(), want, fs.NArg(), fs.Name())
	}
	return fs.Args(), nil
}

func run(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Print(usage())
		if len(args) == 0 {
			return &exitErr{exitUsage, errors.New("")}
		}
		return nil
	}
	if args[0] == "--version" || args[0] == "-V" {
		return printVersion(os.Stdout, false)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	if isHelperCall(args) {
		// mount.fuse3 (mount -t fuse.ckptfs, fstab): STORE MOUNTPOINT -o OPTS.
		// Silent on success, as mount(8) helpers are.
		return runMountCmd(append([]string{"--background", "--quiet"}, args...))
	}
	return fail(exitUsage, "unknown command %q\n%s", args[0], usage())
}

func main() {
	err := run(os.Args[1:])
	if err == nil {
		os.Exit(exitOK)
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" && code != exitOK {
		// Pebble's corruption errors append a line of their own.
		msg = strings.ReplaceAll(msg, "\n<corruption detail carrier>", "")
		fmt.Fprintln(os.Stderr, "ckptfs: "+msg)
		if reportFD != nil {
			fmt.Fprintln(reportFD, "ckptfs: "+msg)
		}
	}
	os.Exit(code)
}

// flagError says what was wrong with a flag in a user's words: no Go
// parser internals ("strconv.ParseInt: parsing ..."), and for a flag that
// does not exist, the one meant if it is close.
func flagError(fs *pflag.FlagSet, err error) string {
	msg := err.Error()
	if i := strings.Index(msg, " flag: strconv.Parse"); i >= 0 {
		want := "want a whole number"
		switch rest := msg[i:]; {
		case strings.Contains(rest, "value out of range"):
			want = "out of range"
		case strings.Contains(rest, "ParseFloat"):
			want = "want a number"
		case strings.Contains(rest, "ParseBool"):
			want = "want true or false"
		case strings.Contains(rest, "ParseUint"):
			want = "want a whole number, 0 or more"
		}
		return msg[:i+len(" flag: ")] + want
	}
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		best, bestD := "", 3 // at most 2 edits away
		fs.VisitAll(func(f *pflag.Flag) {
			if d := levenshtein.ComputeDistance(name, f.Name); d < bestD {
				best, bestD = f.Name, d
			}
		})
		if best != "" {
			return fmt.Sprintf("%s; did you mean --%s?", msg, best)
		}
		return msg + " (see 'ckptfs " + fs.Name() + " --help')"
	}
	return msg
}
