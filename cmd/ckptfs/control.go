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
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
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
	l, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(p, 0o600)
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		s, err := gc.ComputeStats(cs, x)
		reply(w, s, err)
	})
	mux.HandleFunc("/fsck", func(w http.ResponseWriter, r *http.Request) {
		rep, err := gc.Fsck(cs, x)
		reply(w, rep, err)
	})
	mux.HandleFunc("/fsck-repair", func(w http.ResponseWriter, r *http.Request) {
		rep, err := d.repair()
		reply(w, rep, err)
	})
	mux.HandleFunc("/gc", func(w http.ResponseWriter, r *http.Request) {
		var req gcRequest
		if err := json.Unmarshal([]byte(r.URL.Query().Get("req")), &req); err != nil {
			http.Error(w, "bad gc request: "+err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := d.run(req)
		reply(w, rep, err)
	})
	mux.HandleFunc("/receive", func(w http.ResponseWriter, r *http.Request) {
		serveReceive(w, r, d, data, x)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	return closerFunc(func() error { defer os.Remove(p); return srv.Close() }), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

var errNoDaemon = errors.New("no daemon")

// askDaemon GETs path from the store's daemon into v; errNoDaemon if no
// daemon listens.
func askDaemon(store, path string, v any) error {
	p := socketPath(store)
	if _, err := os.Stat(p); err != nil {
		return errNoDaemon
	}
	resp, err := daemonClient(store).Get("http://ckptfs" + path)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return errNoDaemon
		}
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("daemon: %s", b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// daemonClient talks HTTP to the store's daemon over its control socket.
func daemonClient(store string) *http.Client {
	p := socketPath(store)
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "unix", p)
	}}}
}

// withStore runs the daemon request, or fn on the unmounted store.
func withStore(store, path string, v any, fn func(*chunkstore.Store, *index.Index) error) error {
	err := askDaemon(store, path, v)
	if !errors.Is(err, errNoDaemon) {
		return err
	}
	cs, x, err := openOffline(store)
	if err != nil {
		return err
	}
	defer cs.Close()
	return fn(cs, x)
}
