package main

// xen receive: the receiving end of `xl remus`. It answers xl's banner,
// follows the checkpointed stream on stdin and publishes every complete
// checkpoint as a plain xl save image (content.Publisher), either through
// the daemon of a mounted store or on an unmounted one.

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/ckptfs/ckptfs/chunkstore"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
)

// receiverBanner is what xl reads from its receiver before it sends.
const receiverBanner = "xl migration receiver ready, send binary domain data.\n"

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
	if _, err := io.WriteString(os.Stdout, receiverBanner); err != nil {
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

// receive follows the stream in src and publishes its checkpoints into
// directory dir of the store; progress lines go to logf. The stream is
// read ahead of storing into up to buffer bytes; storing runs on a thread
// at niceness nice. It returns when the
// stream ends: an error says how (the sender stopping mid-checkpoint is
// the normal end of an xl remus stream), and every generation published
// before stays. After each generation it calls onPublish (which expires
// by policy, and tells the mount of the new latest).
func receive(src io.Reader, buffer, nice int, data *content.Store, x *index.Index, dir string, onPublish func(uuid string, dir uint64) error, logf func(string, ...any)) error {
	dirIno, err := mkdirAll(x, dir)
	if err != nil {
		return err
	}
	r := newReadAhead(src, buffer)
	defer func() {
		r.Close()
		logf("at most %s of the stream waited in the read-ahead buffer", bytesStr(int64(r.Peak())))
	}()
	var pub *content.Publisher
	defer func() {
		if pub != nil {
			// Pages of the unfinished checkpoint become gc candidates.
			if err := pub.Close(); err != nil {
				logf("dropping the unfinished checkpoint's pages: %v", err)
			}
		}
	}()
	var uuid string
	start, last := time.Now(), time.Now()
	published := 0
	var pageCount int
	rm := xen.NewRemus(xen.RemusHandler{
		Config: func(j []byte) {
			if cfg, err := xen.ParseConfig(j); err == nil && cfg.UUID != "" {
				uuid = cfg.UUID
				pub = data.NewPublisher(x, cfg.UUID, cfg.Name)
			}
		},
		Page: func(pfn uint64, b []byte) error {
			if pub == nil {
				return errors.New("no guest UUID in the stream's config")
			}
			pageCount++
			return pub.Page(pfn, b)
		},
		Checkpoint: func(n int, img *xen.PlainImage) error {
			// The checkpoint's time is when its end arrived; storing may
			// lag behind while the read-ahead absorbs a backlog.
			at, t0 := r.Arrived(), time.Now()
			name := fmt.Sprintf("%06d-%s", n, at.UTC().Format("2006-01-02T15:04:05.000Z"))
			if _, err := pub.Publish(dirIno, name, img, at.UnixNano()); err != nil {
				return err
			}
			published++
			logf("checkpoint %d: %s/%s published (%d bytes): %d pages received, %d page entries, %s stored, built in %s, %s after it arrived; %.2f checkpoints/s, %s since the previous",
				n, dir, name, img.Size(), pageCount, pub.Changed, bytesStr(pub.NewBytes), time.Since(t0).Round(time.Millisecond), time.Since(at).Round(time.Millisecond),
				float64(published)/at.Sub(start).Seconds(), at.Sub(last).Round(time.Millisecond))
			last, pageCount = at, 0
			if onPublish != nil {
				return onPublish(uuid, dirIno)
			}
			return nil
		},
	})
	// While xl sends a checkpoint the guest is suspended: xl and the
	// read-ahead, which only copy, get the CPU before hashing, compressing
	// and indexing the backlog does. The thread is the storing goroutine's
	// alone, so its niceness is nobody else's.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if nice > 0 {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), nice); err != nil {
				logf("storing at normal priority: %v", err)
			}
		}
		done <- follow(r, rm, func() int { return published })
	}()
	return <-done
}

// follow feeds the stream to rm until it ends.
func follow(r io.Reader, rm *xen.Remus, published func() int) error {
	buf := make([]byte, 1<<20)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := rm.Write(buf[:n]); err != nil {
				return fmt.Errorf("stream offset %d: %w (%d checkpoints published, intact)", rm.Offset(), err, published())
			}
		}
		if errors.Is(rerr, io.EOF) {
			return fmt.Errorf("the stream ended at offset %d, inside checkpoint %d: the sender stopped; %d checkpoints published, intact", rm.Offset(), published(), published())
		}
		if rerr != nil {
			return fmt.Errorf("reading the stream: %w (%d checkpoints published, intact)", rerr, published())
		}
	}
}

// mkdirAll returns directory path's inode, creating what is missing.
func mkdirAll(x *index.Index, path string) (uint64, error) {
	ino := uint64(index.RootIno)
	for _, name := range strings.Split(strings.Trim(filepath.Clean("/"+path), "/"), "/") {
		if name == "" {
			continue
		}
		in, err := x.Lookup(ino, name)
		if errors.Is(err, index.ErrNotFound) {
			now := time.Now().UnixNano()
			in, err = x.Create(ino, name, index.Inode{Mode: syscall.S_IFDIR | 0o755, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), Atime: now, Mtime: now, Ctime: now})
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		if in.Mode&syscall.S_IFMT != syscall.S_IFDIR {
			return 0, fmt.Errorf("%s: %s is not a directory", path, name)
		}
		ino = in.Ino
	}
	return ino, nil
}

func receiveOffline(r io.Reader, w io.Writer, o receiveOptions) error {
	if err := os.MkdirAll(o.store, 0o700); err != nil { // a new store, as mount makes one
		return fail(exitStore, "xen receive: %v", err)
	}
	cs, x, err := openStore(o.store, func(so *chunkstore.Options) {
		// One stream's process: Pebble's memtables and block cache at a
		// quarter of the daemon's (the pages go to segments; the keys
		// of a checkpoint are few), and the Go heap kept near its live
		// size, so that the receiver stays well under 128 MiB.
		so.MemTableBytes, so.CacheBytes = 8<<20, 8<<20
	})
	if err != nil {
		return err
	}
	defer cs.Close()
	// The Go heap is the read-ahead buffer plus about 50 MiB live
	// (parser, batch, locator LRU): a soft limit keeps the collector's
	// headroom over that small.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(int64(o.bufferMiB)<<20 + 56<<20)
	data := content.New(cs, cs, x, content.DefaultConfig())
	defer data.Close()
	expire := func(uuid string, dir uint64) error {
		if o.policy.Empty() {
			return nil
		}
		vs, err := gc.Plan(x, o.policy)
		if err != nil {
			return err
		}
		if failed := gc.Remove(gc.InLineage(vs, uuid, dir), gc.OfflineRemover(x, time.Now().UnixNano())); len(failed) > 0 {
			return fmt.Errorf("expiring: %s", strings.Join(failed, "; "))
		}
		_, err = gc.Collect(cs, x, false)
		return err
	}
	err = receive(r, o.bufferMiB<<20, o.nice, data, x, o.into, expire, func(f string, a ...any) { fmt.Fprintf(w, "ckptfs: "+f+"\n", a...) })
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
	lines, err := sendStream(store, int(r.Fd()), receiveRequest{Dir: rel, Policy: o.policy, Buffer: o.bufferMiB << 20, Nice: o.nice})
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
