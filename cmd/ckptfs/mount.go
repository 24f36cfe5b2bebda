package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/ckptfs/ckptfs/fs/daemon"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
)

type mountOptions struct {
	allowOther, readOnly, debug, xenPages bool
	listLatest, writeBehind               bool
	codec                                 string
	policy                                gc.Policy
	metrics                               string   // address of the Prometheus endpoint; "" for none
	background                            bool     // return once mounted, the daemon going on alone
	quiet                                 bool     // no ready line
	logFile                               string   // the background daemon's log; "" for syslog
	vfs                                   []string // mount flags: nosuid, noexec, ...
	writerMemory                          int64    // MiB

	// ready is told the ready line once the mount serves; nil prints it.
	ready func(line string)
	// logger is the daemon's log; nil logs to stderr.
	logger *log.Logger
}

// mountFlagSet is mount's flags, -o included (its lists land in opts).
func mountFlagSet(o *mountOptions, opts *[]string) *pflag.FlagSet {
	f := newFlags("mount")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount (the kernel still checks permission bits)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount read-only")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request")
	f.StringVar(&o.codec, "codec", "s2", "compression of new chunks: s2, zstd or raw")
	f.BoolVar(&o.xenPages, "xen-pages", true, "store xl save images page by page (the default; --xen-pages=false stores them by plain CDC, for debugging)")
	f.BoolVar(&o.listLatest, "list-latest", false, "list each directory's latest link (DIR/latest, the newest xl save image) in readdir too; without it, it is reached by name only")
	f.BoolVar(&o.writeBehind, "write-behind", true, "let close(2) of a file written in sequence return once its bytes are spooled, and store them behind the writer (xl save's guest resumes sooner; a killed daemon's spool is stored at the next mount); --write-behind=false makes close wait for the commit")
	f.Int64Var(&o.writerMemory, "writer-memory", content.DefaultWriterMemory>>20, "`MiB` of memory all files being written may hold together; past it, further writers write through (slower, never more memory)")
	addPolicyFlags(f, &o.policy)
	f.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (e.g. 127.0.0.1:9477)")
	f.BoolVar(&o.background, "background", false, "return once mounted and leave the daemon running (what mount(8) and fstab use); it logs to syslog or --log")
	f.BoolVar(&o.quiet, "quiet", false, "print no ready line")
	f.StringVar(&o.logFile, "log", "", "with --background, append the daemon's log to `FILE` instead of syslog")
	f.StringArrayVarP(opts, "options", "o", nil, "mount options, comma-separated, as mount(8) passes them: each flag above as NAME or NAME=VALUE (allow_other, ro, keep-daily=7, metrics=ADDR); mount flags (nosuid and nodev by default; suid, dev, noexec, exec) apply to the mount; mount(8)'s own (rw, noauto, nofail, _netdev, x-*) are accepted and ignored; sync, dirsync and atime are refused")
	return f
}

func runMountCmd(args []string) error {
	var o mountOptions
	var opts []string
	f := mountFlagSet(&o, &opts)
	pos, err := parse(f, args, 2)
	if err != nil {
		return err
	}
	if o.vfs, err = applyMountOptions(f, opts); err != nil {
		return fail(exitUsage, "mount: %v", err)
	}
	if err := o.policy.Validate(); err != nil {
		return fail(exitUsage, "mount: %v", err)
	}
	if o.readOnly && !o.policy.Empty() {
		return fail(exitUsage, "mount: retention flags need a writable mount")
	}
	if o.background {
		return mountBackground(o, pos[0], pos[1])
	}
	return runMount(o, pos[0], pos[1])
}

func runMount(o mountOptions, store, mnt string) error {
	codec, err := chunkstore.ParseCodec(o.codec)
	if err != nil {
		return fail(exitUsage, "mount: --codec: %v", err)
	}
	if err := checkFUSE(); err != nil {
		return err
	}
	absStore, _ := filepath.Abs(store)
	absMnt, err := checkMountpoint(mnt)
	if err != nil {
		return err
	}
	if absStore == absMnt || strings.HasPrefix(absStore, absMnt+"/") {
		return fail(exitUsage, "mount: the store %s must not be inside the mountpoint %s", store, mnt)
	}
	ln, err := listenMetrics(o.metrics)
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	logger := o.logger
	if logger == nil {
		logger = log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	}
	so := chunkstore.DefaultOptions()
	so.Codec = codec
	cc := content.DefaultConfig()
	cc.WriterMemory = o.writerMemory << 20
	m, err := fs.MountStore(absStore, absMnt, fs.MountConfig{
		ReadOnly: o.readOnly, AllowOther: o.allowOther, Debug: o.debug, Store: &so, Content: cc, NoXenPages: !o.xenPages,
		Config: fs.Config{Logger: logger, ListLatest: o.listLatest, MountFlags: o.vfs, SyncClose: !o.writeBehind},
	})
	if err != nil {
		if errors.Is(err, chunkstore.ErrLocked) {
			return fail(exitLocked, "mount: %v (is it mounted already?)", err)
		}
		if e := storeErr(err); e != err {
			return e
		}
		if errors.Is(err, syscall.EIO) {
			return fail(exitProblems, "mount %s: the store cannot serve its root directory (input/output error): a file of the store is damaged; 'ckptfs fsck %s' lists what is affected", mnt, store)
		}
		return fail(exitError, "mount %s: %v", mnt, err)
	}
	if lost := m.Store.Lost(); lost != nil {
		logger.Printf("WARNING %v; serving what is intact, read-only", lost)
	}
	chunkstore.FatalHook = func(string) { fs.Abort(absMnt) }
	// CKPTFS_CPUPROFILE=FILE profiles the daemon until it unmounts (for
	// the benchmarks' profiles; see README).
	if p := os.Getenv("CKPTFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	umount := "umount" // a user who is not root unmounts a FUSE mount with fusermount3 -u
	if os.Geteuid() != 0 {
		umount = "fusermount3 -u"
	}
	ready := fmt.Sprintf("ckptfs: ready: %s mounted at %s (pid %d); Ctrl-C or '%s %s' unmounts", store, mnt, os.Getpid(), umount, mnt)
	err = daemon.Run(m, o.readOnly, daemon.RunOptions{
		Policy: o.policy, Metrics: ln, Logger: logger, Human: bytesStr,
		Ready: func() {
			if o.ready != nil {
				o.ready(ready)
			} else if !o.quiet {
				fmt.Println(ready)
			}
		},
		Report: func(rep daemon.GCReport) string {
			var b strings.Builder
			printGC(&b, rep)
			return b.String()
		},
	})
	if errors.Is(err, daemon.ErrServed) {
		return fail(exitLocked, "%v", err)
	}
	if err != nil {
		return err
	}
	fmt.Printf("ckptfs: unmounted %s\n", mnt)
	return nil
}

// checkFUSE checks what mounting needs: root opens /dev/fuse itself;
// other users go through the setuid fusermount3, which opens it for them.
func checkFUSE() error {
	if os.Geteuid() == 0 {
		f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
		if err != nil {
			return fail(exitNoFUSE, "mount: cannot use /dev/fuse (%v): is the fuse module loaded, and is /dev/fuse passed into this container?", errors.Unwrap(err))
		}
		f.Close()
	} else {
		f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
		if err != nil {
			return fail(exitNoFUSE, "mount: cannot use /dev/fuse as uid %d (%v): it should be mode 0666, as Debian's udev rule sets it", os.Geteuid(), errors.Unwrap(err))
		}
		f.Close()
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err2 := exec.LookPath("fusermount"); err2 != nil {
				return fail(exitNoFUSE, "mount: not root and no fusermount3 in PATH (install the fuse3 package)")
			}
		}
	}
	return nil
}

// checkMountpoint returns the absolute mountpoint after checking that it is
// a directory and not already a mount point.
func checkMountpoint(mnt string) (string, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", fail(exitMountpoint, "mount: %v", err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fail(exitMountpoint, "mount: mountpoint %s: %v", mnt, errors.Unwrap(err))
	}
	if !st.IsDir() {
		return "", fail(exitMountpoint, "mount: mountpoint %s is not a directory", mnt)
	}
	if _, busy, err := fs.MountAt(abs); err == nil && busy {
		return "", fail(exitMountpoint, "mount: %s is busy: something is mounted there already", mnt)
	}
	return abs, nil
}

// listenMetrics takes the metrics address before anything is mounted, so
// that a busy or bad one is a plain usage error.
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fail(exitUsage, "mount: --metrics %s: %v", addr, err)
	}
	return ln, nil
}
