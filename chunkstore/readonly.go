package chunkstore

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

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

// missingTablesFS is a read-only open's view of a store whose MANIFEST
// lists tables that are gone (deleted by mistake): each shows as an empty
// file, so that Pebble opens the database and a read of what the table
// held fails (a damaged table) while everything else is served.
type missingTablesFS struct {
	vfs.FS
	missing map[string]bool // base names
}

func (m missingTablesFS) isMissing(name string) bool { return m.missing[m.FS.PathBase(name)] }

func (m missingTablesFS) List(dir string) ([]string, error) {
	names, err := m.FS.List(dir)
	if err != nil {
		return names, err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	for n := range m.missing {
		if !have[n] {
			names = append(names, n)
		}
	}
	return names, nil
}

func (m missingTablesFS) Stat(name string) (vfs.FileInfo, error) {
	if fi, err := m.FS.Stat(name); err == nil || !m.isMissing(name) {
		return fi, err
	}
	return emptyFileInfo{name: m.FS.PathBase(name)}, nil
}

func (m missingTablesFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := m.FS.Open(name, opts...)
	if err == nil || !m.isMissing(name) {
		return f, err
	}
	return emptyFile{name: m.FS.PathBase(name)}, nil
}

type emptyFileInfo struct{ name string }

func (i emptyFileInfo) Name() string       { return i.name }
func (i emptyFileInfo) Size() int64        { return 0 }
func (i emptyFileInfo) Mode() fs.FileMode  { return 0o444 }
func (i emptyFileInfo) ModTime() time.Time { return time.Time{} }
func (i emptyFileInfo) IsDir() bool        { return false }
func (i emptyFileInfo) Sys() any           { return nil }
func (i emptyFileInfo) DeviceID() vfs.DeviceID {
	return vfs.DeviceID{}
}

// emptyFile is a read-only file of no bytes.
type emptyFile struct {
	vfs.File // nil: methods not below are never called on a table read
	name     string
}

func (emptyFile) Close() error                       { return nil }
func (emptyFile) Read([]byte) (int, error)           { return 0, io.EOF }
func (emptyFile) ReadAt([]byte, int64) (int, error)  { return 0, io.EOF }
func (f emptyFile) Stat() (vfs.FileInfo, error)      { return emptyFileInfo{name: f.name}, nil }
func (emptyFile) Prefetch(int64, int64) error        { return nil }
func (emptyFile) Fd() uintptr                        { return vfs.InvalidFd }
func (emptyFile) Preallocate(int64, int64) error     { return nil }
func (emptyFile) SyncData() error                    { return nil }
func (emptyFile) SyncTo(int64) (bool, error)         { return false, nil }
func (emptyFile) Sync() error                        { return nil }
func (emptyFile) Write([]byte) (int, error)          { return 0, fs.ErrPermission }
func (emptyFile) WriteAt([]byte, int64) (int, error) { return 0, fs.ErrPermission }
