package daemon

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
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/gc"
)

// SocketName is the control socket's name inside the store directory.
const SocketName = "ckptfs.sock"

// SocketPath is the control socket of the store in dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketName) }

// ErrServed is Listen's error when another daemon answers on the store's
// socket.
var ErrServed = errors.New("another ckptfs daemon serves this store")

// Listen serves d on the control socket of d.Dir until the returned
// closer is closed: the typed requests, the transfer stream and a passed
// descriptor (see the package doc), behind one owner check.
func Listen(d *Daemon) (io.Closer, error) {
	p := SocketPath(d.Dir)
	if c, err := net.Dial("unix", p); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", d.Dir, ErrServed)
	}
	os.Remove(p) // stale, from a daemon that was killed
	owner, err := StoreOwner(d.Dir)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	l, err := listenPrivate(p, owner)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	ops := map[string]func(r *http.Request, p gc.Progress) (any, error){
		"stats": func(*http.Request, gc.Progress) (any, error) { return d.Stats() },
		"writing": func(*http.Request, gc.Progress) (any, error) {
			return d.Writing()
		},
		"generations": func(r *http.Request, _ gc.Progress) (any, error) {
			var pol gc.Policy
			if err := decode(r, &pol); err != nil {
				return nil, err
			}
			return d.Generations(pol)
		},
		"fsck":   func(_ *http.Request, p gc.Progress) (any, error) { return d.Fsck(p) },
		"repair": func(*http.Request, gc.Progress) (any, error) { return d.Repair() },
		"gc": func(r *http.Request, p gc.Progress) (any, error) {
			var req GCRequest
			if err := decode(r, &req); err != nil {
				return nil, err
			}
			d.FS.WaitCommitted() // files closed behind their writers count
			return d.GC(req, p)
		},
	}
	for op, fn := range ops {
		mux.HandleFunc("POST /v1/"+op, func(w http.ResponseWriter, r *http.Request) { reply(w, r, fn) })
	}
	mux.HandleFunc("POST /v1/transfer", d.serveTransfer)
	mux.HandleFunc("POST /v1/receive", d.serveReceive)
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

// badRequest marks a request the daemon could not read.
type badRequest struct{ error }

func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		return badRequest{fmt.Errorf("a request the daemon cannot read: %w", err)}
	}
	return nil
}

// line is one line of a reply.
type line struct {
	Phase  string          `json:"phase,omitempty"`
	Done   int64           `json:"done,omitempty"`
	Total  int64           `json:"total,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Kind   string          `json:"kind,omitempty"`
}

// reply runs work and writes its lines: progress (when the request asks
// for it, at most 5 a second per phase), then the result or the error.
func reply(w http.ResponseWriter, r *http.Request, work func(*http.Request, gc.Progress) (any, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	var p gc.Progress
	if r.URL.Query().Get("progress") == "1" {
		var last time.Time
		var lastPhase string
		p = func(phase string, done, total int64) {
			if phase == lastPhase && time.Since(last) < 200*time.Millisecond {
				return
			}
			last, lastPhase = time.Now(), phase
			enc.Encode(line{Phase: phase, Done: done, Total: total})
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
		}
	}
	v, err := work(r, p)
	var b []byte
	if err == nil {
		b, err = json.Marshal(v)
	}
	if err != nil {
		kind := "failed"
		if errors.As(err, new(badRequest)) {
			kind = "bad-request"
		}
		enc.Encode(line{Error: err.Error(), Kind: kind})
		return
	}
	enc.Encode(line{Result: b})
}

// StoreOwner returns the uid that owns the store directory.
func StoreOwner(dir string) (uint32, error) {
	st, err := os.Stat(dir)
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

// PeerCred returns the credentials of the process that sent r.
func PeerCred(r *http.Request) (syscall.Ucred, bool) {
	c, ok := r.Context().Value(peerKey{}).(syscall.Ucred)
	return c, ok
}

// MayControl reports whether a peer of uid may control a store owned by
// owner: root, the store's owner and the daemon's own user may.
func MayControl(uid, owner uint32) bool {
	return uid == 0 || uid == owner || uid == uint32(os.Geteuid())
}

// onlyOwner refuses every request from a peer that may not control the
// store (or whose credentials are unknown), saying so plainly.
func onlyOwner(owner uint32, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, ok := PeerCred(r)
		msg := ""
		switch {
		case !ok:
			msg = "cannot tell who is asking (no peer credentials): refused"
		case !MayControl(cred.Uid, owner):
			msg = deniedMsg(cred.Uid, owner)
		}
		if msg != "" {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(line{Error: msg, Kind: "denied"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func deniedMsg(uid, owner uint32) string {
	return fmt.Sprintf("uid %d may not control this store: only root and the store's owner (uid %d) may run stats, fsck, gc or xen receive through its daemon", uid, owner)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
