package main

// xen receive: the receiving end of `xl remus`. It answers xl's banner,
// follows the checkpointed stream on stdin and publishes every complete
// checkpoint as a plain xl save image (receive.Run), either through
// the daemon of a mounted store or on an unmounted one.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/daemon"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/receive"
)

type receiveOptions struct {
	into, store string
	bufferMiB   int
	nice        int
	policy      gc.Policy
}

func runXenReceiveCmd(args []string) error {
	var o receiveOptions
	f := newFlags("xen receive")
	f.StringVar(&o.into, "into", "", "directory for the generations: in a mounted store, or (with --store) a path in the store")
	f.StringVar(&o.store, "store", "", "an unmounted store to write into (default: the store mounted where --into is)")
	f.IntVar(&o.bufferMiB, "buffer-mib", 1024, "MiB of the stream read ahead of storing, so that xl, and the guest it keeps paused while it sends a checkpoint, do not wait for the store")
	f.IntVar(&o.nice, "nice", 10, "niceness (0-19) of the thread that stores pages: xl keeps the guest suspended while it sends a checkpoint, and the read-ahead and xl get the CPU first")
	addPolicyFlags(f, &o.policy)
	if _, err := parse(f, args, 0); err != nil {
		return err
	}
	if o.into == "" {
		return fail(exitUsage, "xen receive: --into is required")
	}
	if o.bufferMiB < 1 {
		return fail(exitUsage, "xen receive: --buffer-mib must be at least 1")
	}
	if o.nice < 0 || o.nice > 19 {
		return fail(exitUsage, "xen receive: --nice must be 0-19")
	}
	if err := o.policy.Validate(); err != nil {
		return fail(exitUsage, "xen receive: %v", err)
	}
	if n := growStdinBuffer(os.Stdin, min(o.bufferMiB, 64)<<20); n > 0 {
		fmt.Fprintf(os.Stderr, "ckptfs: the stream's kernel buffer holds %s\n", bytesStr(int64(n)))
	}
	// xl waits for the banner before it sends anything.
	if _, err := io.WriteString(os.Stdout, receive.Banner); err != nil {
		return fmt.Errorf("xen receive: banner: %w", err)
	}
	// Catching up on a saved stream (stdin a regular file) on a
	// terminal: a bar of how far the receiver has read.
	var w io.Writer = os.Stderr
	if pr := newProgress("xen receive", true); pr.enabled() {
		if st, err := os.Stdin.Stat(); err == nil && st.Mode().IsRegular() {
			defer pr.followOffset("reading the stream", os.Stdin, st.Size())()
			w = pr
		}
	}
	if o.store != "" {
		return receiveOffline(os.Stdin, w, o)
	}
	return receiveOnline(os.Stdin, w, o)
}

func receiveOffline(r io.Reader, w io.Writer, o receiveOptions) error {
	if err := os.MkdirAll(o.store, 0o700); err != nil { // a new store, as mount makes one
		return fail(exitStore, "xen receive: %v", err)
	}
	// One stream's process: Pebble's memtables and block cache at a
	// quarter of the daemon's (the pages go to segments; the keys of a
	// checkpoint are few), and the Go heap kept near its live size, so
	// that the receiver stays well under 128 MiB.
	so := chunkstore.DefaultOptions()
	so.MemTableBytes, so.CacheBytes = 8<<20, 8<<20
	st, err := openStore(o.store, fs.OpenOptions{Chunks: &so})
	if err != nil {
		return err
	}
	defer st.Close()
	cs, x := st.Chunks, st.Index
	// The Go heap is the read-ahead buffer plus about 50 MiB live
	// (parser, batch, locator LRU): a soft limit keeps the collector's
	// headroom over that small.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(int64(o.bufferMiB)<<20 + 56<<20)
	expire := func(uuid string, dir uint64) error {
		if o.policy.Empty() {
			return nil
		}
		plan, err := gc.NewPlan(x, o.policy, &gc.Scope{UUID: uuid, Dir: dir})
		if err != nil {
			return err
		}
		rep, err := plan.Execute(cs, x, gc.OfflineRemover(x, time.Now().UnixNano()), gc.Options{}, nil)
		if err == nil && len(rep.Failed) > 0 {
			err = fmt.Errorf("expiring: %s", strings.Join(rep.Failed, "; "))
		}
		return err
	}
	err = receive.Run(r, cs, x, lineage.Of(x), receive.Options{
		Dir: o.into, Buffer: o.bufferMiB << 20, Nice: o.nice, Config: receive.DefaultConfig(), OnPublish: expire,
		Logf: func(f string, a ...any) { fmt.Fprintf(w, "ckptfs: "+f+"\n", a...) }, Bytes: bytesStr,
	})
	return fail(exitError, "xen receive: %v", err)
}

// receiveOnline hands stdin to the daemon of the store mounted where
// --into lies and copies its progress lines to w.
func receiveOnline(r *os.File, w io.Writer, o receiveOptions) error {
	abs, err := filepath.Abs(o.into)
	if err != nil {
		return fail(exitUsage, "xen receive: %v", err)
	}
	store, mnt, err := mountedStore(abs)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(mnt, abs)
	lines, err := daemon.SendStream(store, int(r.Fd()), daemon.ReceiveRequest{Dir: rel, Policy: o.policy, Buffer: o.bufferMiB << 20, Nice: o.nice})
	var de *daemon.DeniedError
	if errors.As(err, &de) {
		return &exitErr{exitDenied, err}
	}
	if err != nil {
		return fail(exitError, "xen receive: %v", err)
	}
	defer lines.Close()
	sc := bufio.NewScanner(lines)
	lastLine := ""
	for sc.Scan() {
		lastLine = sc.Text()
		if !strings.HasPrefix(lastLine, "error: ") {
			fmt.Fprintln(w, "ckptfs: "+lastLine)
		}
	}
	if lastLine == "" {
		lastLine = "the daemon closed the connection"
	}
	return fail(exitError, "xen receive: %s", strings.TrimPrefix(lastLine, "error: "))
}

// mountedStore finds the ckptfs mount that holds path: its store (the
// mount's source) and mountpoint.
func mountedStore(path string) (store, mnt string, err error) {
	ms, err := fs.Mounts()
	if err != nil {
		return "", "", err
	}
	for _, m := range ms {
		if m.FSType == "fuse.ckptfs" && (path == m.Point || strings.HasPrefix(path, m.Point+"/")) && len(m.Point) > len(mnt) {
			store, mnt = m.Source, m.Point
		}
	}
	if mnt == "" {
		return "", "", fail(exitUsage, "xen receive: %s is not in a mounted ckptfs store (give --store for an unmounted one)", path)
	}
	return store, mnt, nil
}
