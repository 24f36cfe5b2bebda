package main

// mount(8) and fstab: `mount -t fuse.ckptfs STORE MOUNTPOINT -o OPTS` runs
// fuse's mount.fuse3, which runs `ckptfs STORE MOUNTPOINT -o OPTS` and
// waits for it to return; the daemon must then go on alone. This file holds
// the -o options and that hand-over.

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/syslog"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// ignoredOptions are mount(8)'s and fuse(8)'s own options, which mount(8)
// passes on to the helper and which mean nothing more to ckptfs, or which
// say what ckptfs does anyway: reads never update atime (noatime and the
// weaker relatime and nodiratime hold), every close(2) of a written file
// is durable, permission bits are always checked by the kernel.
var ignoredOptions = map[string]bool{
	"rw": true, "defaults": true, "auto": true, "noauto": true, "user": true, "nouser": true,
	"users": true, "owner": true, "group": true, "nofail": true, "_netdev": true,
	"async": true, "noatime": true, "relatime": true, "nodiratime": true, "default_permissions": true,
}

// vfsOptions are the mount flags the kernel applies to the mount itself:
// passed on, never dropped. A ckptfs mount is nosuid and nodev unless
// -o suid or -o dev says otherwise.
var vfsOptions = map[string]bool{
	"nosuid": true, "suid": true, "nodev": true, "dev": true, "noexec": true, "exec": true,
}

// refusedOptions are options ckptfs cannot honour, with why.
var refusedOptions = map[string]string{
	"sync":        "writes are not synchronous through FUSE; each close(2) and fsync(2) is durable when it returns",
	"dirsync":     "directory changes are durable at the next fsync(2) of the directory or within 1 s, not at once",
	"strictatime": "reads never update atime (ckptfs behaves as noatime)",
	"atime":       "reads never update atime (ckptfs behaves as noatime)",
	"norelatime":  "reads never update atime (ckptfs behaves as noatime)",
	"diratime":    "reads never update atime (ckptfs behaves as noatime)",
	"lazytime":    "ckptfs keeps no timestamps lazily",
	"mand":        "mandatory locks are not supported",
}

// optionAliases are the FUSE spellings of ckptfs's flags.
var optionAliases = map[string]string{"ro": "read-only", "allow_other": "allow-other"}

// applyMountOptions sets f's flags from -o option lists: NAME=VALUE sets
// the flag NAME (underscores read as dashes), NAME alone sets a boolean
// flag. Mount flags (nosuid, noexec, ...) are returned, to be applied to
// the mount; mount(8)'s own options are ignored; options ckptfs cannot
// honour (sync, ...) and anything else are errors.
func applyMountOptions(f *pflag.FlagSet, lists []string) (vfs []string, err error) {
	for _, list := range lists {
		for _, opt := range strings.Split(list, ",") {
			name, value, hasValue := strings.Cut(strings.TrimSpace(opt), "=")
			switch {
			case name == "":
				continue
			case vfsOptions[name] && !hasValue:
				vfs = append(vfs, name)
				continue
			case refusedOptions[name] != "":
				return nil, fmt.Errorf("-o %s: not supported: %s", opt, refusedOptions[name])
			case ignoredOptions[name], strings.HasPrefix(name, "x-"), name == "comment", name == "fsname", name == "subtype":
				continue
			}
			if a, ok := optionAliases[name]; ok {
				name = a
			}
			name = strings.ReplaceAll(name, "_", "-")
			fl := f.Lookup(name)
			if fl == nil || name == "options" || name == "help" {
				return nil, fmt.Errorf("-o %s: unknown option (see 'ckptfs mount --help')", opt)
			}
			if !hasValue {
				if fl.Value.Type() != "bool" {
					return nil, fmt.Errorf("-o %s: needs a value (%s=...)", opt, name)
				}
				value = "true"
			}
			if err := f.Set(name, value); err != nil {
				return nil, fmt.Errorf("-o %s: %v", opt, err)
			}
		}
	}
	return vfs, nil
}

// isHelperCall reports whether args are mount.fuse3's `STORE MOUNTPOINT
// [-o OPTS]` rather than a subcommand.
func isHelperCall(args []string) bool {
	if len(args) < 2 || strings.HasPrefix(args[0], "-") || strings.HasPrefix(args[1], "-") {
		return false
	}
	if strings.Contains(args[0], "/") {
		return true
	}
	_, err := os.Stat(args[0])
	return err == nil
}

// daemonEnv=1 marks the re-executed daemon of a background mount (it
// parses the same arguments). The daemon reports to its parent on fd 3:
// the ready line, or why it failed.
const daemonEnv = "CKPTFS_DAEMON"

// reportFD is the background daemon's end of the pipe to its parent; nil
// in any other process. main writes a failure there.
var reportFD *os.File

// mountBackground starts the daemon as a new session and returns once it
// serves the mount (printing its ready line) or has failed (with its error
// and exit code). In the daemon itself it mounts, reporting to the parent.
func mountBackground(o mountOptions, store, mnt string) error {
	if os.Getenv(daemonEnv) == "1" {
		return runDaemon(o, store, mnt)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(exitError, "mount: %v", err)
	}
	out, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if o.logFile != "" {
		out, err = os.OpenFile(o.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	if err != nil {
		return fail(exitError, "mount: --log: %v", err)
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fail(exitError, "mount: %v", err)
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fail(exitError, "mount: starting the daemon: %v", err)
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	r.Close()
	line := strings.TrimSpace(string(msg))
	if strings.HasPrefix(line, "ckptfs: ready:") {
		if !o.quiet {
			fmt.Println(line)
		}
		return cmd.Process.Release()
	}
	err = cmd.Wait()
	code := exitError
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		code = ee.ExitCode()
	}
	if line == "" {
		line = fmt.Sprintf("the daemon exited (%v) without a word; see its log", err)
	}
	return &exitErr{code, errors.New(strings.TrimPrefix(line, "ckptfs: "))}
}

// runDaemon is the background daemon: it logs to --log (its stderr, set
// up by the parent) or to syslog, and reports ready on fd 3.
func runDaemon(o mountOptions, store, mnt string) error {
	reportFD = os.NewFile(3, "report")
	syscall.CloseOnExec(3)
	o.logger = log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	if o.logFile == "" {
		if w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "ckptfs"); err == nil {
			o.logger = log.New(w, "", 0)
		}
	}
	o.ready = func(line string) {
		fmt.Fprintln(reportFD, line)
		reportFD.Close()
		reportFD = nil
		o.logger.Print(strings.TrimPrefix(line, "ckptfs: "))
	}
	return runMount(o, store, mnt)
}
