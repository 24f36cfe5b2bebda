package chunkstore

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// sharedLockFS is the real disk for a read-only open: its Lock opens the
// lock file read-only (so a store on read-only media, a backup disk or a
// snapshot, can be read) and takes a shared lock on it. Readers share;
// a writer's open (Pebble's exclusive lock) and a reader's keep each other
// out, so a store is never read while another process writes it. A store
// without a lock file (copied without it) is opened without a lock: no
// writer has it open, for a writer makes one.
type sharedLockFS struct{ vfs.FS }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func (sharedLockFS) Lock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return closerFunc(func() error { return nil }), nil
	}
	if err != nil {
		return nil, err
	}
	spec := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &spec); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
