package main

// The control socket: while a store is mounted, the daemon holds Pebble's
// lock, so stats and fsck ask the daemon over a unix socket in the store
// directory and print the same output as on an unmounted store.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
)

// SocketName is the control socket's name inside the store directory.
const SocketName = "ckptfs.sock"

func socketPath(store string) string { return filepath.Join(store, SocketName) }

// serveControl answers /stats, /fsck, /fsck-repair and /gc until the
// listener closes.
func serveControl(store string, cs *chunkstore.Store, x *index.Index, d *daemonGC, data *content.Store) (io.Closer, error) {
	p := socketPath(store)
	if c, err := net.Dial("unix", p); err == nil {
		c.Close()
		return nil, fail(exitLocked, "%s: another ckptfs daemon serves this store", store)
	}
	os.Remove(p) // stale, from a daemon that was killed
	owner, err := storeOwner(store)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := listenPrivate(p, owner)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		d.fsys.WaitCommitted() // files closed behind their writers count
		s, err := gc.ComputeStats(cs, x)
		reply(w, s, err)
	})
	mux.HandleFunc("/generations", func(w http.ResponseWriter, r *http.Request) {
		d.fsys.WaitCommitted() // files closed behind their writers count
		var p gc.Policy
		if err := json.Unmarshal([]byte(r.URL.Query().Get("policy")), &p); err != nil {
			http.Error(w, "bad policy: "+err.Error(), http.StatusBadRequest)
			return
		}
		gens, err := gc.List(x, p)
		reply(w, gens, err)
	})
	mux.HandleFunc("/writing", func(w http.ResponseWriter, r *http.Request) {
		reply(w, d.fsys.Writing(), nil)
	})
	mux.HandleFunc("/fsck", func(w http.ResponseWriter, r *http.Request) {
		d.fsys.WaitCommitted() // files closed behind their writers count
		progressReply(w, r, func(p gc.Progress) (any, error) { return gc.FsckProgress(cs, x, p) })
	})
	mux.HandleFunc("/fsck-repair", func(w http.ResponseWriter, r *http.Request) {
		rep, err := d.repair()
		reply(w, rep, err)
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		d.fsys.WaitCommitted() // files closed behind their writers count
		var req gcRequest
		if err := json.Unmarshal([]byte(r.URL.Query().Get("req")), &req); err != nil {
			http.Error(w, "bad gc request: "+err.Error(), http.StatusBadRequest)
			return
		}
		progressReply(w, r, func(p gc.Progress) (any, error) { return d.run(req, p) })
	})
	mux.HandleFunc("/transfer", func(w http.ResponseWriter, r *http.Request) {
		d.fsys.WaitCommitted() // files closed behind their writers count
		cred, _ := r.Context().Value(peerKey{}).(syscall.Ucred)
		serveTransfer(w, &transfer.Local{Chunks: cs, Index: x, Data: data, As: peerCaller(cred), Unlink: d.fsys.Remove})
	})
	mux.HandleFunc("/receive", func(w http.ResponseWriter, r *http.Request) {
		serveReceive(w, r, d, data, cs, x)
	})
	srv := &http.Server{Handler: onlyOwner(owner, mux), ConnContext: withPeer}
	go srv.Serve(l)
	return closerFunc(func() error {
		defer os.Remove(p)
		// Requests already accepted get their answers (a command run right
		// after umount); new ones find no socket and open the store.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return srv.Close()
		}
		return nil
	}), nil
}

// storeOwner returns the uid that owns the store directory.
func storeOwner(store string) (uint32, error) {
	st, err := os.Stat(store)
	if err != nil {
		return 0, err
	}
	return st.Sys().(*syscall.Stat_t).Uid, nil
}

// listenPrivate listens on a unix socket at p that only its owner (the
// store's owner) and root can connect to, with no moment at which it is
// open to anyone else: it is bound inside a fresh 0700 directory, given
// its mode and owner there, then renamed into place.
func listenPrivate(p string, owner uint32) (net.Listener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(p), ".ckptfs-ctl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	l, err := net.Listen("unix", bound)
	if err != nil {
		return nil, err
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	err = os.Chmod(bound, 0o600)
	if err == nil && os.Geteuid() == 0 && owner != 0 {
		err = os.Chown(bound, int(owner), -1)
	}
	if err == nil {
		err = os.Rename(bound, p)
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

type peerKey struct{}

// withPeer records the connecting process's credentials (SO_PEERCRED) in
// the connection's context.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

// mayControl reports whether a peer of uid may control a store owned by
// owner: root, the store's owner and the daemon's own user may.
func mayControl(uid, owner uint32) bool {
	return uid == 0 || uid == owner || uid == uint32(os.Geteuid())
}

// deniedStatus is the HTTP status the daemon refuses a peer with; the
// client turns it into exitDenied.
const deniedStatus = http.StatusForbidden

// onlyOwner refuses every request from a peer that may not control the
// store (or whose credentials are unknown), saying so plainly.
func onlyOwner(owner uint32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, ok := r.Context().Value(peerKey{}).(syscall.Ucred)
		if !ok {
			http.Error(w, "cannot tell who is asking (no peer credentials): refused", deniedStatus)
			return
		}
		if !mayControl(cred.Uid, owner) {
			http.Error(w, deniedMsg(cred.Uid, owner), deniedStatus)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func deniedMsg(uid, owner uint32) string {
	return fmt.Sprintf("uid %d may not control this store: only root and the store's owner (uid %d) may run stats, fsck, gc or xen receive through its daemon", uid, owner)
}

// peerCaller is the user a transfer over the control socket writes as:
// the peer's uid, its primary gid and its supplementary groups (read from
// /proc; none if it has gone).
func peerCaller(cred syscall.Ucred) *transfer.Caller {
	gids := []uint32{cred.Gid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "Groups:"); ok {
				for _, f := range strings.Fields(rest) {
					if g, err := strconv.ParseUint(f, 10, 32); err == nil {
						gids = append(gids, uint32(g))
					}
				}
			}
		}
	}
	return transfer.CallerOf(cred.Uid, gids...)
}

// selfCaller is the user this process writes as (nil for root).
func selfCaller() *transfer.Caller {
	gids := []uint32{uint32(os.Getgid())}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			gids = append(gids, uint32(g))
		}
	}
	return transfer.CallerOf(uint32(os.Geteuid()), gids...)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

var errNoDaemon = errors.New("no daemon")

// daemonLeft reports whether the control socket p goes away within a
// second: its daemon was exiting.
func daemonLeft(p string) bool {
	for range 20 {
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// progressLine is a line of a reply that streams progress (the request
// has progress=1): Phase, Done and Total while the work runs, then Result
// or Error.
type progressLine struct {
	Phase  string          `json:"phase,omitempty"`
	Done   int64           `json:"done,omitempty"`
	Total  int64           `json:"total,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// progressReply runs work and replies with its result; when the request
// asks for progress, as lines of progressLine, at most 5 a second.
func progressReply(w http.ResponseWriter, r *http.Request, work func(gc.Progress) (any, error)) {
	if r.URL.Query().Get("progress") != "1" {
		v, err := work(nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(v)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	var last time.Time
	var lastPhase string
	v, err := work(func(phase string, done, total int64) {
		if phase == lastPhase && time.Since(last) < 200*time.Millisecond {
			return
		}
		last, lastPhase = time.Now(), phase
		enc.Encode(progressLine{Phase: phase, Done: done, Total: total})
		flush()
	})
	if err != nil {
		enc.Encode(progressLine{Error: err.Error()})
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		enc.Encode(progressLine{Error: err.Error()})
		return
	}
	enc.Encode(progressLine{Result: b})
}

// askDaemon GETs path from the store's daemon into v; errNoDaemon if no
// daemon listens. With prog, the daemon streams its progress to prog.
func askDaemon(store, path string, v any, prog gc.Progress) error {
	p := socketPath(store)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return denied(store)
		}
		return errNoDaemon
	}
	if prog != nil {
		if strings.Contains(path, "?") {
			path += "&progress=1"
		} else {
			path += "?progress=1"
		}
	}
	resp, err := daemonClient(store).Get("http://ckptfs" + path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return denied(store)
		}
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return errNoDaemon
		}
		if daemonLeft(p) {
			return errNoDaemon // it closed its socket under this request
		}
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	if err := daemonStatus(store, resp); err != nil {
		return err
	}
	dec := json.NewDecoder(resp.Body)
	if prog == nil {
		return dec.Decode(v)
	}
	for {
		var l progressLine
		if err := dec.Decode(&l); err != nil {
			return fmt.Errorf("daemon: %w", err)
		}
		switch {
		case l.Error != "":
			return fmt.Errorf("daemon: %s", l.Error)
		case l.Result != nil:
			return json.Unmarshal(l.Result, v)
		default:
			prog(l.Phase, l.Done, l.Total)
		}
	}
}

// daemonStatus turns a daemon's refusal into an error.
func daemonStatus(store string, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(resp.Body)
	msg := strings.TrimSpace(string(b))
	if resp.StatusCode == deniedStatus {
		return fail(exitDenied, "%s: %s", store, msg)
	}
	return fmt.Errorf("daemon: %s", msg)
}

// denied is the error for a user whom the kernel does not let reach the
// store's control socket.
func denied(store string) error {
	owner, err := storeOwner(store)
	if err != nil {
		return fail(exitDenied, "%s: uid %d may not control this store (it is mounted, and only root and the store's owner may)", store, os.Geteuid())
	}
	return fail(exitDenied, "%s: %s", store, deniedMsg(uint32(os.Geteuid()), owner))
}

// daemonClient talks HTTP to the store's daemon over its control socket.
func daemonClient(store string) *http.Client {
	p := socketPath(store)
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "unix", p)
	}}}
}

// withStore runs the daemon request, or fn on the unmounted store; p (if
// not nil) hears the daemon's progress.
func withStore(store, path string, v any, p gc.Progress, fn func(*chunkstore.Store, *index.Index) error) error {
	err := askDaemon(store, path, v, p)
	if !errors.Is(err, errNoDaemon) {
		return err
	}
	st, err := openOffline(store)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st.Chunks, st.Index)
}
