package main

// xen receive through a mounted store's daemon. The command hands its
// stdin (xl's stream) to the daemon over the control socket (SCM_RIGHTS),
// and the daemon reads the stream itself: while xl sends a checkpoint the
// guest is suspended, and the pages then cross no other process. The
// command relays the daemon's progress lines and ends with it; if the
// command goes away, the daemon closes the stream and publishes only the
// checkpoints already complete.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"syscall"

	"github.com/ckptfs/ckptfs/fs/daemon"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/receive"
)

// receiveRequest is what the command asks of the daemon.
type receiveRequest struct {
	Dir    string    `json:"dir"`
	Policy gc.Policy `json:"policy"`
	Buffer int       `json:"buffer"`
	Nice   int       `json:"nice"`
}

// sendStream asks the daemon of store to receive the stream on fd into the
// request's directory, passes fd, and returns the daemon's progress lines
// (closed when it ends).
func sendStream(store string, fd int, req receiveRequest) (io.ReadCloser, error) {
	q, _ := json.Marshal(req)
	conn, _, resp, err := daemonHandshake(store, "/receive?req="+url.QueryEscape(string(q)))
	if err != nil {
		return nil, err
	}
	// The daemon waits for the descriptor before it answers more.
	if _, _, err := conn.WriteMsgUnix([]byte{'F'}, syscall.UnixRights(fd), nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("daemon of %s: passing the stream: %w", store, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{resp.Body, conn}, nil
}

// hijack takes the connection of a daemon request and answers 200 (with
// header lines extra): what follows on it is the request's own protocol.
func hijack(w http.ResponseWriter, extra string) (net.Conn, *bufio.ReadWriter, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot take the connection", http.StatusInternalServerError)
		return nil, nil, false
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	rw.WriteString("HTTP/1.1 200 OK\r\n" + extra + "Connection: close\r\n\r\n")
	if rw.Flush() != nil {
		conn.Close()
		return nil, nil, false
	}
	return conn, rw, true
}

// daemonHandshake POSTs path to the store's daemon on a connection of its
// own and reads the reply's header: the connection then carries what the
// request is about (a stream's progress, the transfer protocol).
func daemonHandshake(store, path string) (*net.UnixConn, *bufio.Reader, *http.Response, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socketPath(store), Net: "unix"})
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, nil, &exitErr{exitDenied, daemon.Denied(store)}
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w (%v)", store, errNoDaemon, err)
	}
	hr, _ := http.NewRequest(http.MethodPost, "http://ckptfs"+path, nil)
	if err := hr.Write(conn); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w", store, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, hr)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w", store, err)
	}
	if err := daemon.Refused(store, resp); err != nil {
		conn.Close()
		return nil, nil, nil, ctlErr(err)
	}
	return conn, br, resp, nil
}

// serveReceive is the daemon's side: it takes the stream's descriptor
// and runs receive on it, writing progress lines (and a last "error: "
// line) back until the stream ends.
func serveReceive(w http.ResponseWriter, r *http.Request, d *daemon.Daemon, data *content.Store, cs *chunkstore.Store, x *index.Index) {
	var req receiveRequest
	if err := json.Unmarshal([]byte(r.URL.Query().Get("req")), &req); err != nil {
		http.Error(w, "bad receive request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Buffer < 1 || req.Nice < 0 || req.Nice > 19 {
		http.Error(w, "bad receive request: buffer "+strconv.Itoa(req.Buffer)+", nice "+strconv.Itoa(req.Nice), http.StatusBadRequest)
		return
	}
	conn, rw, ok := hijack(w, "Content-Type: text/plain\r\n")
	if !ok {
		return
	}
	defer conn.Close()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return
	}
	stream, err := recvFD(uc)
	if err != nil {
		fmt.Fprintf(conn, "error: %v\n", err)
		return
	}
	defer stream.Close()
	// The command sends nothing more: its end (EOF or an error) means it
	// went away, and so does the stream.
	go func() {
		io.Copy(io.Discard, rw)
		stream.Close()
	}()
	logf := func(f string, a ...any) { fmt.Fprintf(conn, f+"\n", a...) }
	published := func(uuid string, dir uint64) error {
		data.Counters().Images.Add(1)
		d.FS.LatestChanged(dir)
		if req.Policy.Empty() {
			return nil
		}
		_, err := d.GC(daemon.GCRequest{Policy: req.Policy, Lineage: &gc.Scope{UUID: uuid, Dir: dir}, NoCompact: true}, nil)
		return err
	}
	err = receive.Run(stream, cs, x, receive.Options{Dir: req.Dir, Buffer: req.Buffer, Nice: req.Nice, Config: receive.DefaultConfig(), OnPublish: published, Logf: logf, Bytes: bytesStr})
	logf("error: %v", err)
}

// recvFD reads the one descriptor the command passes, as a pollable file
// (so closing it ends a read in progress).
func recvFD(uc *net.UnixConn) (*os.File, error) {
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receiving the stream: %w", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("receiving the stream: no descriptor passed")
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, errors.New("receiving the stream: expected one descriptor")
	}
	syscall.SetNonblock(fds[0], true) // pollable where the kind allows (pipes, sockets)
	return os.NewFile(uintptr(fds[0]), "stream"), nil
}
