package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
)

// ErrNoDaemon is a Client's error when no daemon answers on the store's
// socket (none runs, or it exited under the request).
var ErrNoDaemon = errors.New("no daemon serves the store")

// DeniedError is the error for a user the daemon, or the kernel at its
// socket, does not let control the store.
type DeniedError struct {
	Dir, Msg string
}

func (e *DeniedError) Error() string { return e.Dir + ": " + e.Msg }

// Denied is the error for this process's user, whom the kernel does not
// let reach the socket of the store in dir.
func Denied(dir string) error {
	owner, err := StoreOwner(dir)
	if err != nil {
		return &DeniedError{dir, fmt.Sprintf("uid %d may not control this store (it is mounted, and only root and the store's owner may)", os.Geteuid())}
	}
	return &DeniedError{dir, deniedMsg(uint32(os.Geteuid()), owner)}
}

// Refused returns the error a reply that is not 200 OK carries (a
// *DeniedError for a refusal), or nil.
func Refused(dir string, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	var l line
	if json.Unmarshal(b, &l) == nil && l.Error != "" {
		msg = l.Error
	}
	switch resp.StatusCode {
	case http.StatusForbidden:
		return &DeniedError{dir, msg}
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("%s: the daemon serving this store is an older ckptfs that does not know this request (%s): unmount and mount the store again to run this version", dir, msg)
	}
	return fmt.Errorf("daemon: %s", msg)
}

// Client is a store's running daemon, over its control socket.
type Client struct {
	dir string
	hc  *http.Client
}

// Dial returns the daemon serving the store in dir, or ErrNoDaemon.
func Dial(dir string) (*Client, error) {
	c := &Client{dir: dir}
	if _, err := os.Stat(SocketPath(dir)); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, Denied(dir)
		}
		return nil, ErrNoDaemon
	}
	return c, nil
}

func (c *Client) Dir() string { return c.dir }

// Mounted reports whether a daemon answers on the socket.
func (c *Client) Mounted() bool {
	conn, err := net.DialTimeout("unix", SocketPath(c.dir), 2*time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func (c *Client) http() *http.Client {
	if c.hc == nil {
		p := SocketPath(c.dir)
		c.hc = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "unix", p)
		}}}
	}
	return c.hc
}

// call POSTs req to op and decodes the result into v; prog (if set) hears
// the daemon's progress.
func (c *Client) call(op string, req, v any, prog gc.Progress) error {
	p := SocketPath(c.dir)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrPermission) {
			return Denied(c.dir)
		}
		return ErrNoDaemon
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	url := "http://ckptfs/v1/" + op
	if prog != nil {
		url += "?progress=1"
	}
	resp, err := c.http().Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return Denied(c.dir)
		}
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return ErrNoDaemon
		}
		if daemonLeft(p) {
			return ErrNoDaemon // it closed its socket under this request
		}
		return fmt.Errorf("daemon: %w", err)
	}
	defer resp.Body.Close()
	if err := Refused(c.dir, resp); err != nil {
		return err
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var l line
		if err := dec.Decode(&l); err != nil {
			if daemonLeft(p) {
				return fmt.Errorf("daemon: it exited before answering (%w)", err)
			}
			return fmt.Errorf("daemon: %w", err)
		}
		switch {
		case l.Error != "":
			if l.Kind == "denied" {
				return &DeniedError{c.dir, l.Error}
			}
			return fmt.Errorf("daemon: %s", l.Error)
		case l.Result != nil:
			return json.Unmarshal(l.Result, v)
		case prog != nil:
			prog(l.Phase, l.Done, l.Total)
		}
	}
}

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

func (c *Client) Stats() (r gc.Stats, err error) {
	err = c.call("stats", struct{}{}, &r, nil)
	return r, err
}

func (c *Client) Writing() (r []fs.Writing, err error) {
	err = c.call("writing", struct{}{}, &r, nil)
	if r == nil && err == nil {
		r = []fs.Writing{}
	}
	return r, err
}

func (c *Client) Generations(p gc.Policy) (r []gc.Generation, err error) {
	err = c.call("generations", p, &r, nil)
	return r, err
}

func (c *Client) Fsck(p gc.Progress) (r gc.FsckReport, err error) {
	err = c.call("fsck", struct{}{}, &r, p)
	return r, err
}

func (c *Client) Repair() (r RepairReport, err error) {
	err = c.call("repair", struct{}{}, &r, nil)
	return r, err
}

func (c *Client) GC(req GCRequest, p gc.Progress) (r GCReport, err error) {
	err = c.call("gc", req, &r, p)
	return r, err
}
