package fs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
)

// Mounted is a store mounted for a test.
type Mounted struct {
	Dir, StoreDir string
	Server        *fuse.Server
	Store         *chunkstore.Store
	Index         *index.Index
	Data          *content.Store
	FS            *FS

	unmountOnce, closeOnce sync.Once
	closeErr               error
	stop, synced           chan struct{}
}

// SyncInterval bounds how long a namespace change (create, rename,
// unlink, chmod...) stays only in memory: the mount syncs them this often.
// close(2), fsync(2) of a file or directory, and a published generation
// are durable when they return.
const SyncInterval = time.Second

func (m *Mounted) syncLoop(l *log.Logger) {
	defer close(m.synced)
	if m.Index == nil || m.Store == nil {
		return
	}
	t := time.NewTicker(SyncInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		if err := m.Index.SyncPending(); err != nil && !failing {
			if l != nil {
				l.Printf("ERROR syncing the namespace: %v", err)
			}
			failing = true
		} else if err == nil {
			failing = false
		}
	}
}

// MountConfig configures MountStore.
type MountConfig struct {
	ReadOnly, AllowOther, Debug bool
	// Store are the chunk store's options (nil: chunkstore.DefaultOptions).
	Store *chunkstore.Options
	// Content sizes the engine: zero fields take the defaults, a nil
	// Pages XenPages (see OpenOptions).
	Content content.Config
	// NoXenPages stores xl save images by content only (debugging).
	NoXenPages bool
	Config     Config
}

// MountStore opens the store in storeDir (Open) and mounts it on mnt
// (created if missing).
func MountStore(storeDir, mnt string, mc MountConfig) (*Mounted, error) {
	st, err := Open(storeDir, OpenOptions{ReadOnly: mc.ReadOnly, Chunks: mc.Store, Content: mc.Content, NoXenPages: mc.NoXenPages})
	if err != nil {
		return nil, err
	}
	cs, x, data := st.Chunks, st.Index, st.Data
	if cs.Degraded() {
		for f, what := range cs.DamagedFiles() {
			log.Printf("store %s is damaged: %s: %s; serving read-only what the other tables hold", storeDir, f, chunkstore.OneLine(what))
		}
	}
	mc.Config.ReadOnly = mc.ReadOnly
	mc.Config.StoreDir = storeDir
	f := New(x, data, mc.Config)
	if !mc.ReadOnly {
		// Files a killed daemon had spooled behind their writers: their
		// closes returned, so they must be there before anything is served.
		rec, err := f.RecoverSpool()
		for _, r := range rec {
			logSpooled(mc.Config.Logger, r)
		}
		if err != nil {
			data.Close()
			cs.Close()
			return nil, fmt.Errorf("recovering %s: %w", filepath.Join(storeDir, SpoolDir), err)
		}
	} else if ents, _ := os.ReadDir(filepath.Join(storeDir, SpoolDir)); len(ents) > 0 {
		logf(mc.Config.Logger, "%s holds files closed before a daemon was killed: a writable mount stores them", filepath.Join(storeDir, SpoolDir))
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		data.Close()
		cs.Close()
		return nil, err
	}
	srv, err := gofs.Mount(mnt, f.Root(), f.MountOptions(mc.AllowOther, mc.Debug))
	if err != nil {
		if _, mounted, _ := MountAt(mnt); mounted {
			Abort(mnt) // mounted, then failed to start serving
		}
		data.Close()
		cs.Close()
		return nil, err
	}
	_ = SetReadAhead(mnt, ReadAheadKB) // not root: the kernel's default
	m := &Mounted{Dir: mnt, StoreDir: storeDir, Server: srv, Store: cs, Index: x, Data: data, FS: f, stop: make(chan struct{}), synced: make(chan struct{})}
	go m.syncLoop(mc.Config.Logger)
	return m, nil
}

func logf(l *log.Logger, format string, args ...any) {
	if l == nil {
		l = log.Default()
	}
	l.Printf(format, args...)
}

func logSpooled(l *log.Logger, r Spooled) {
	name := r.Path
	if name == "" {
		name = fmt.Sprintf("inode %d", r.Ino)
	}
	switch {
	case r.Unfinished:
		logf(l, "/%s was being written when the daemon stopped (never closed): its spooled bytes are dropped, as an unclosed file's are", name)
	case errors.Is(r.Err, errSpoolOrphan):
		logf(l, "/%s was deleted before its spooled bytes were stored: dropped", name)
	case r.Err != nil:
		logf(l, "ERROR /%s: closed before the daemon stopped, but its spool cannot be stored: %v (kept in the spool directory; the next writable mount tries again)", name, r.Err)
	default:
		logf(l, "recovered /%s: %d bytes closed before the daemon stopped, stored from its spool", name, r.Size)
	}
}

// Wait blocks until the filesystem is unmounted (by Unmount or umount(8)),
// then closes the store.
func (m *Mounted) Wait() error {
	m.Server.Wait()
	return m.close()
}

func (m *Mounted) close() error {
	m.closeOnce.Do(func() {
		// go-fuse's Wait returns once its readers stop, not its request
		// handlers: the kernel's last RELEASEs (a file closed just
		// before the unmount) may still be running, and a writer they
		// have not closed yet would hold the store open under it.
		m.FS.waitReleased(2 * time.Second)
		m.FS.StopBehind() // files closed behind their writers are stored first
		close(m.stop)
		<-m.synced
		m.Data.Close()
		m.closeErr = m.Store.Close()
	})
	return m.closeErr
}

// Close closes the store after the filesystem is unmounted (for a caller
// that waited on Server itself).
func (m *Mounted) Close() error { return m.close() }

// Unmount unmounts and closes the store. Calling it again does nothing.
func (m *Mounted) Unmount() error {
	var err error
	m.unmountOnce.Do(func() {
		err = m.Server.Unmount()
		m.Server.Wait()
	})
	if cerr := m.close(); err == nil {
		err = cerr
	}
	return err
}

// Abort ends the FUSE connection of the mount at mnt at once and detaches
// it: every request in flight fails with ENOTCONN. A daemon that must exit
// on an unrecoverable error calls it first, so that no process (the
// daemon's own threads included) is left waiting on a server that is gone.
func Abort(mnt string) {
	if m, ok, _ := MountAt(mnt); ok {
		const ctl = "/sys/fs/fuse/connections"
		p := fmt.Sprintf("%s/%d/abort", ctl, m.Minor)
		if _, err := os.Stat(p); err != nil && os.Geteuid() == 0 {
			syscall.Mount("fusectl", ctl, "fusectl", 0, "")
		}
		os.WriteFile(p, []byte("1"), 0)
	}
	syscall.Unmount(mnt, syscall.MNT_DETACH)
}
