package receive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
)

// Banner is what xl reads from its receiver before it sends.
const Banner = "xl migration receiver ready, send binary domain data.\n"

// Namespace is what Run needs of the index: a publisher's needs, and
// directories.
type Namespace interface {
	Index
	Lookup(dir uint64, name string) (index.Inode, error)
}

// Options say where Run publishes and how it paces itself.
type Options struct {
	// Dir is the directory for the generations, a path in the store
	// (created if missing).
	Dir string
	// Buffer is how many bytes of the stream are read ahead of storing:
	// xl keeps the guest suspended while it sends a checkpoint, so the
	// guest resumes when the checkpoint is in memory, not when it is
	// stored.
	Buffer int
	// Nice is the niceness of the thread that stores pages (xl and the
	// read-ahead get the CPU first).
	Nice int
	// Config sizes the publisher.
	Config Config
	// OnPublish is called after each generation is published (to expire
	// by policy, to tell a mount of the new latest).
	OnPublish func(uuid string, dir uint64) error
	// Logf takes progress lines; Bytes writes a size in them (default:
	// "N bytes").
	Logf  func(format string, args ...any)
	Bytes func(n int64) string
}

// Run follows the xl remus stream in src (after the banner was sent) and
// publishes its checkpoints as generations into o.Dir. It returns when
// the stream ends: the error says how (the sender stopping
// mid-checkpoint is the normal end of an xl remus stream), and every
// generation published before stays.
func Run(src io.Reader, c Chunks, x Namespace, maps Lineages, o Options) error {
	logf, bytesStr := o.Logf, o.Bytes
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if bytesStr == nil {
		bytesStr = func(n int64) string { return fmt.Sprintf("%d bytes", n) }
	}
	dirIno, err := mkdirAll(x, o.Dir)
	if err != nil {
		return err
	}
	r := newReadAhead(src, o.Buffer)
	defer func() {
		r.Close()
		logf("at most %s of the stream waited in the read-ahead buffer", bytesStr(int64(r.Peak())))
	}()
	var pub *Publisher
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
			if cfg, err := xen.ParseConfig(j); err == nil && cfg.UUID != "" && pub == nil {
				uuid = cfg.UUID
				pub = NewPublisher(c, x, maps, o.Config, cfg.UUID, cfg.Name)
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
			if pub == nil {
				return errors.New("no guest UUID in the stream's config")
			}
			// The checkpoint's time is when its end arrived; storing may
			// lag behind while the read-ahead absorbs a backlog.
			at, t0 := r.Arrived(), time.Now()
			name := fmt.Sprintf("%06d-%s", n, at.UTC().Format("2006-01-02T15:04:05.000Z"))
			if _, err := pub.Publish(dirIno, name, img, at.UnixNano()); err != nil {
				return err
			}
			published++
			logf("checkpoint %d: %s/%s published (%d bytes): %d pages received, %d page entries, %s stored, built in %s, %s after it arrived; %.2f checkpoints/s, %s since the previous",
				n, o.Dir, name, img.Size(), pageCount, pub.Changed, bytesStr(pub.NewBytes), time.Since(t0).Round(time.Millisecond), time.Since(at).Round(time.Millisecond),
				float64(published)/at.Sub(start).Seconds(), at.Sub(last).Round(time.Millisecond))
			last, pageCount = at, 0
			if o.OnPublish != nil {
				return o.OnPublish(uuid, dirIno)
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
		if o.Nice > 0 {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), o.Nice); err != nil {
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
func mkdirAll(x Namespace, path string) (uint64, error) {
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
