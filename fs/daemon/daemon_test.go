package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/fs/transfer"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

// newStore makes a store in a fresh directory holding n plain files in
// dir "d", an hour apart (the newest last), and returns it open.
func newStore(t *testing.T, n int) (*fs.Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	st, err := fs.Open(dir, fs.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.Index.Create(index.RootIno, "d", index.Inode{Mode: syscall.S_IFDIR | 0o755})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Duration(n) * time.Hour).UnixNano()
	for i := range n {
		mtime := base + int64(i)*int64(time.Hour)
		in, err := st.Index.Create(d.Ino, fmt.Sprint("f", i), index.Inode{Mode: syscall.S_IFREG | 0o644, Mtime: mtime})
		if err != nil {
			t.Fatal(err)
		}
		w := st.Data.NewWriter(in)
		if err := w.WriteAt(bytes.Repeat([]byte(fmt.Sprint("file ", i, " ")), 20000), 0, mtime); err != nil {
			t.Fatal(err)
		}
		w.SetMtime(mtime)
		if _, err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if err := st.Index.Sync(); err != nil {
		t.Fatal(err)
	}
	return st, dir
}

// serve serves st as a mount daemon would (its filesystem not mounted).
func serve(t *testing.T, st *fs.Store, dir string) (*Daemon, func()) {
	t.Helper()
	d := &Daemon{Dir: dir, Chunks: st.Chunks, Index: st.Index, FS: fs.New(st.Index, st.Data, fs.Config{StoreDir: dir}), Data: st.Data}
	ctl, err := Listen(d)
	if err != nil {
		t.Fatal(err)
	}
	return d, func() { ctl.Close() }
}

// TestDaemonAndOffline: one Store, whichever side answers. Through a
// running daemon (over its real socket) every call answers what the
// daemon's own methods do, progress streams, and a gc changes the store
// (the daemon's counters count it); once the daemon is gone the same
// Store opens the store itself and sees what the daemon left.
func TestDaemonAndOffline(t *testing.T) {
	st, dir := newStore(t, 4)
	d, stop := serve(t, st, dir)
	s, err := Open(dir, Options{Wait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Mounted() {
		t.Fatal("a served store does not read as mounted")
	}
	stats, err := s.Stats()
	want, _ := d.Stats()
	if err != nil || !reflect.DeepEqual(stats, want) || stats.Files != 4 {
		t.Fatalf("stats through the daemon: %+v %v, want %+v", stats, err, want)
	}
	if w, err := s.Writing(); err != nil || w == nil || len(w) != 0 {
		t.Fatalf("writing: %v %v, want [] (not null)", w, err)
	}
	pol := gc.Policy{KeepLast: 2, AllFiles: true}
	gens, err := s.Generations(pol)
	if err != nil || len(gens) != 4 {
		t.Fatalf("generations: %+v %v", gens, err)
	}
	phases := 0
	r, err := s.Fsck(func(string, int64, int64) { phases++ })
	if err != nil || !r.OK() || r.Files != 4 || phases == 0 {
		t.Fatalf("fsck: %+v %v, %d progress lines", r, err, phases)
	}
	dry, err := s.GC(GCRequest{Policy: pol, DryRun: true}, nil)
	if err != nil || !dry.DryRun || len(dry.Expired) != 2 || dry.WouldFree <= 0 {
		t.Fatalf("gc --dry-run: %+v %v", dry, err)
	}
	rep, err := s.GC(GCRequest{Policy: pol}, nil)
	if err != nil || len(rep.Expired) != 2 || rep.Result == nil || rep.Result.StoredFreed != dry.WouldFree {
		t.Fatalf("gc: %+v %v (the dry run said %d would be freed)", rep, err, dry.WouldFree)
	}
	if runs, expired, freed, _ := d.GCCounters(); runs != 1 || expired != 2 || freed != dry.WouldFree {
		t.Fatalf("the daemon counted %d runs, %d expired, %d freed", runs, expired, freed)
	}
	// The transfer stream over the same socket, as this process's user.
	conn, err := DialTransfer(dir)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := transfer.Dial(conn, dir)
	if err != nil {
		t.Fatal(err)
	}
	files, err := peer.List()
	if err != nil || len(files) != 2 {
		t.Fatalf("listing through the daemon: %+v %v", files, err)
	}
	if err := peer.Remove(files[0]); err != nil {
		t.Fatalf("remove through the daemon: %v", err)
	}
	peer.Close()
	empty, err := s.GC(GCRequest{}, nil)
	if err != nil || empty.Expired == nil {
		t.Fatalf("gc with no policy: %+v %v (want expired [], not null)", empty, err)
	}
	stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Mounted() {
		t.Fatal("a store no daemon serves reads as mounted")
	}
	stats, err = s.Stats()
	if err != nil || stats.Files != 1 {
		t.Fatalf("stats of the unmounted store: %+v %v, want the 1 file gc and the transfer left", stats, err)
	}
	if r, err := s.Fsck(nil); err != nil || !r.OK() {
		t.Fatalf("fsck of the unmounted store: %+v %v", r, err)
	}
	if rep, err := s.GC(GCRequest{Policy: gc.Policy{KeepLast: 0, KeepWithin: time.Nanosecond, AllFiles: true}}, nil); err != nil || len(rep.Expired) != 0 {
		t.Fatalf("gc of the unmounted store: %+v %v", rep, err)
	}
	if rr, err := s.Repair(); err != nil || rr.Accepted != nil {
		t.Fatalf("repair of the unmounted store: %+v %v", rr, err)
	}
}

// TestRefusals: a peer the daemon does not know, a request it cannot
// read, a daemon too old for the request, and a store that is not there,
// each as a plain error of its own kind.
func TestRefusals(t *testing.T) {
	st, dir := newStore(t, 1)
	_, stop := serve(t, st, dir)
	defer func() { stop(); st.Close() }()

	// No peer credentials (not over the socket): refused as denied.
	rec := httptest.NewRecorder()
	onlyOwner(0, http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/stats", nil))
	var de *DeniedError
	if err := Refused(dir, rec.Result()); !errors.As(err, &de) || !strings.Contains(err.Error(), "no peer credentials") {
		t.Fatalf("a request without credentials: %v", err)
	}
	// A body the daemon cannot read: the reply says so, the daemon serves on.
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.http().Post("http://ckptfs/v1/gc", "application/json", strings.NewReader("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	var l line
	json.NewDecoder(resp.Body).Decode(&l)
	resp.Body.Close()
	if l.Kind != "bad-request" || l.Error == "" {
		t.Fatalf("a bad request: %+v", l)
	}
	if _, err := c.Stats(); err != nil {
		t.Fatalf("after a bad request: %v", err)
	}
	// A daemon without /v1 (an older ckptfs still mounted).
	if err := c.call("no-such-op", struct{}{}, new(any), nil); err == nil || !strings.Contains(err.Error(), "older ckptfs") {
		t.Fatalf("an op the daemon does not know: %v", err)
	}
	if _, err := Open(filepath.Join(dir, "nothing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing directory: %v", err)
	}
	// A second daemon on the same store.
	if _, err := Listen(&Daemon{Dir: dir}); !errors.Is(err, ErrServed) {
		t.Fatalf("a second Listen: %v", err)
	}
}

// TestRun: the daemon of a real FUSE mount serves its control socket once
// Ready is called, answers a file written through the mount, and at the
// unmount stores and closes the store, so that it opens again.
func TestRun(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI mounts FUSE as root")
		}
		t.Skip("needs root and /dev/fuse")
	}
	tmp := t.TempDir()
	dir, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	m, err := fs.MountStore(dir, mnt, fs.MountConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- Run(m, false, RunOptions{Ready: func() { close(ready) }}) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("through the mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(mnt, Options{}) // the mountpoint names the store
	if err != nil || !s.Mounted() || s.Dir() != dir {
		t.Fatalf("Open(mountpoint): %v mounted=%v dir=%q", err, s != nil && s.Mounted(), dir)
	}
	if st, err := s.Stats(); err != nil || st.Files != 1 {
		t.Fatalf("stats through Run's socket: %+v %v", st, err)
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(SocketPath(dir)); !os.IsNotExist(err) {
		t.Fatalf("the socket outlived the daemon: %v", err)
	}
	if st, err := NewOffline(dir, Options{}).Stats(); err != nil || st.Files != 1 {
		t.Fatalf("the store after Run: %+v %v", st, err)
	}
}
