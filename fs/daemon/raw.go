package daemon

// The two requests that take over their connection: /v1/transfer (the
// transfer stream protocol of fs/transfer, after the reply's header) and
// /v1/receive (a descriptor passed with SCM_RIGHTS: an xl remus stream the
// daemon reads itself, so that while xl sends a checkpoint the guest is
// suspended and the pages cross no other process).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/receive"
)

// hijack takes the connection of a request and answers 200 (with header
// lines extra): what follows on it is the request's own protocol.
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

// handshake POSTs body to path on a connection of its own and reads the
// reply's header: the connection then carries what the request is about.
func handshake(dir, path string, body []byte) (*net.UnixConn, *bufio.Reader, *http.Response, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, nil, Denied(dir)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w (%v)", dir, ErrNoDaemon, err)
	}
	hr, _ := http.NewRequest(http.MethodPost, "http://ckptfs"+path, bytes.NewReader(body))
	if err := hr.Write(conn); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w", dir, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, hr)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("daemon of %s: %w", dir, err)
	}
	if err := Refused(dir, resp); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	return conn, br, resp, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// DialTransfer opens the transfer protocol to the daemon of the store in
// dir, as the user this process runs as (ErrNoDaemon if none serves it).
func DialTransfer(dir string) (net.Conn, error) {
	if _, err := os.Stat(SocketPath(dir)); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, Denied(dir)
		}
		return nil, ErrNoDaemon
	}
	conn, br, _, err := handshake(dir, "/v1/transfer", nil)
	if err != nil {
		return nil, err
	}
	return &bufConn{Conn: conn, r: br}, nil
}

// serveTransfer answers the transfer protocol on the request's
// connection, writing as the peer (its uid and groups).
func (d *Daemon) serveTransfer(w http.ResponseWriter, r *http.Request) {
	d.FS.WaitCommitted() // files closed behind their writers count
	cred, _ := PeerCred(r)
	l := &transfer.Local{Chunks: d.Chunks, Index: d.Index, Data: d.Data, Images: lineage.Of(d.Index), As: PeerCaller(cred), Unlink: d.FS.Remove}
	conn, rw, ok := hijack(w, "")
	if !ok {
		return
	}
	defer conn.Close()
	transfer.Serve(&bufConn{Conn: conn, r: rw.Reader}, l)
}

// PeerCaller is the user a transfer over the control socket writes as:
// the peer's uid, its primary gid and its supplementary groups (read from
// /proc; none if it has gone).
func PeerCaller(cred syscall.Ucred) *transfer.Caller {
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

// ReceiveRequest asks the daemon to receive an xl remus stream into Dir
// (relative to the mount's root).
type ReceiveRequest struct {
	Dir    string    `json:"dir"`
	Policy gc.Policy `json:"policy"`
	Buffer int       `json:"buffer"`
	Nice   int       `json:"nice"`
}

// SendStream asks the daemon of the store in dir to receive the stream on
// fd as req says, passes fd, and returns the daemon's progress lines (the
// last one "error: ..." says why the stream ended); closing it ends the
// receive.
func SendStream(dir string, fd int, req ReceiveRequest) (io.ReadCloser, error) {
	body, _ := json.Marshal(req)
	conn, _, resp, err := handshake(dir, "/v1/receive", body)
	if err != nil {
		return nil, err
	}
	// The daemon waits for the descriptor before it answers more.
	if _, _, err := conn.WriteMsgUnix([]byte{'F'}, syscall.UnixRights(fd), nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("daemon of %s: passing the stream: %w", dir, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{resp.Body, conn}, nil
}

// serveReceive takes the stream's descriptor and runs receive on it,
// writing progress lines (and a last "error: " line) back until the
// stream ends.
func (d *Daemon) serveReceive(w http.ResponseWriter, r *http.Request) {
	var req ReceiveRequest
	if err := decode(r, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
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
		d.Data.Counters().Images.Add(1)
		d.FS.LatestChanged(dir)
		if req.Policy.Empty() {
			return nil
		}
		_, err := d.GC(GCRequest{Policy: req.Policy, Lineage: &gc.Scope{UUID: uuid, Dir: dir}, NoCompact: true}, nil)
		return err
	}
	human := d.Human
	if human == nil {
		human = func(n int64) string { return strconv.FormatInt(n, 10) + " bytes" }
	}
	err = receive.Run(stream, d.Chunks, d.Index, lineage.Of(d.Index), receive.Options{Dir: req.Dir, Buffer: req.Buffer, Nice: req.Nice, Config: receive.DefaultConfig(), OnPublish: published, Logf: logf, Bytes: human})
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
