package main

// Opening one side of a push or pull: a store directory (mounted or not),
// a mountpoint, ssh://[user@]host[:port]/path or s3://bucket/prefix.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ckptfs/ckptfs/fs/daemon"

	"github.com/spf13/pflag"

	"github.com/ckptfs/ckptfs/chunkstore/bucket"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/transfer"

	"github.com/ckptfs/ckptfs/xen/lineage"
)

// remoteFlags are how push, pull and bucket reach the other side.
type remoteFlags struct {
	ssh, remoteCmd string
	endpoint, key  string
	host           string
	grace          time.Duration
	timeout        time.Duration
}

func addRemoteFlags(f *pflag.FlagSet, r *remoteFlags) {
	host, _ := os.Hostname()
	f.StringVar(&r.ssh, "ssh", "ssh", "the ssh `command` (and options) for ssh:// URLs")
	f.StringVar(&r.remoteCmd, "remote-ckptfs", "ckptfs", "the ckptfs `command` on the other host of an ssh:// URL")
	f.StringVar(&r.endpoint, "endpoint", "", "the S3 endpoint of an s3:// URL: HOST:PORT (http) or https://HOST:PORT; credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	f.StringVar(&r.key, "key-file", "", "the key `file` that encrypts what goes to an s3:// bucket (32 random bytes or more, mode 0600); hosts that share it dedup across each other")
	f.StringVar(&r.host, "host", host, "this host's `name` in a bucket (files are kept per host)")
	f.DurationVar(&r.grace, "grace", time.Hour, "the bucket gc's grace period (what pushers honour)")
	f.DurationVar(&r.timeout, "timeout", transfer.DefaultTimeout, "give up on the other side (ssh or a mounted store's daemon) when it sends nothing for this long; what was copied stays")
}

// side is an opened peer and what closes it.
type side struct {
	transfer.Peer
	what    string
	close   func() error
	counter interface{ wire() (sent, recv int64) }
	once    sync.Once
	err     error
}

// Close closes the side once; later calls return the first's error.
func (s *side) Close() error {
	s.once.Do(func() {
		s.err = s.Peer.Close()
		if s.close != nil {
			if cerr := s.close(); s.err == nil {
				s.err = cerr
			}
		}
	})
	return s.err
}

type remoteCounter struct{ r *transfer.Remote }

func (c remoteCounter) wire() (int64, int64) { return c.r.Sent.Load(), c.r.Received.Load() }

type bucketCounter struct{ b *bucket.Bucket }

func (c bucketCounter) wire() (int64, int64) { return c.b.Sent.Load(), c.b.Received.Load() }

// openSide opens spec; host is the bucket host name to use for it. A
// destination store directory that does not exist is created (as mount
// creates a store on first use).
func openSide(spec string, r *remoteFlags, host string, dest bool) (*side, error) {
	switch {
	case strings.HasPrefix(spec, "ssh://"):
		return openSSH(spec, r, dest)
	case strings.HasPrefix(spec, "s3://"):
		b, err := openBucket(spec, r, host)
		if err != nil {
			return nil, err
		}
		return &side{Peer: b, what: spec, counter: bucketCounter{b}}, nil
	}
	if dest {
		if _, err := os.Stat(spec); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(spec, 0o700); err != nil {
				return nil, err
			}
			// Said, so that a mistyped destination does not go unnoticed.
			fmt.Fprintf(os.Stderr, "ckptfs: created a new store at %s\n", spec)
		}
	}
	return openLocal(spec, r.timeout)
}

// checkBucketFlags refuses an s3:// spec without the flags it needs.
func checkBucketFlags(spec string, r *remoteFlags) error {
	if !strings.HasPrefix(spec, "s3://") {
		return nil
	}
	if r.key == "" {
		return fail(exitUsage, "%s: a bucket needs --key-file (what leaves the host is encrypted)", spec)
	}
	if r.endpoint == "" {
		return fail(exitUsage, "%s: an s3:// URL needs --endpoint HOST:PORT", spec)
	}
	return nil
}

func openBucket(spec string, r *remoteFlags, host string) (*bucket.Bucket, error) {
	if err := checkBucketFlags(spec, r); err != nil {
		return nil, err
	}
	keys, err := bucket.ReadKeyFile(r.key)
	if err != nil {
		return nil, err
	}
	ep, secure := r.endpoint, false
	if e, ok := strings.CutPrefix(ep, "https://"); ok {
		ep, secure = e, true
	}
	ep = strings.TrimPrefix(ep, "http://")
	return bucket.Open(spec, bucket.Options{Endpoint: ep, Secure: secure, Keys: keys, Host: host, Grace: r.grace,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")})
}

// openSSH runs `ssh [-p port] [user@]host ckptfs serve [--create] path`.
func openSSH(spec string, r *remoteFlags, dest bool) (*side, error) {
	rest := strings.TrimPrefix(spec, "ssh://")
	hostPart, p, ok := strings.Cut(rest, "/")
	if !ok || hostPart == "" || p == "" {
		return nil, fail(exitUsage, "%q: want ssh://[user@]host[:port]/path", spec)
	}
	args := strings.Fields(r.ssh)
	if len(args) == 0 {
		return nil, fail(exitUsage, "--ssh: empty command")
	}
	if h, port, ok := strings.Cut(hostPart, ":"); ok {
		hostPart = h
		args = append(args, "-p", port)
	}
	args = append(args, "--", hostPart, r.remoteCmd, "serve")
	if dest {
		args = append(args, "--create")
	}
	args = append(args, "/"+p)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	rw := &pipeRW{r: out, w: in}
	// A peer that stops answering may not exit when its stdin closes:
	// waited for a while, then killed.
	wait := func() error {
		t := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		defer t.Stop()
		return cmd.Wait()
	}
	remote, err := transfer.DialTimeout(rw, spec, r.timeout)
	if err != nil {
		in.Close()
		var ee *exec.ExitError
		if werr := wait(); errors.As(werr, &ee) && ee.ExitCode() == 127 {
			// The remote shell found no such command.
			return nil, fail(exitError, "%s: the other host has no %q in its PATH (ssh exited 127): install ckptfs there, or name it with --remote-ckptfs PATH", spec, r.remoteCmd)
		}
		return nil, err
	}
	return &side{Peer: remote, what: spec, counter: remoteCounter{remote}, close: func() error {
		err := wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s: ssh exited with status %d", spec, ee.ExitCode())
		}
		return err
	}}, nil
}

type pipeRW struct {
	r io.ReadCloser
	w io.WriteCloser
}

func (p *pipeRW) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipeRW) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeRW) Close() error                { return p.w.Close() }

// SetReadDeadline bounds the wait for the other side (a pipe from
// os/exec is an *os.File, which has deadlines).
func (p *pipeRW) SetReadDeadline(t time.Time) error {
	if d, ok := p.r.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// storeDir resolves a mountpoint of a ckptfs store to the store.
func storeDir(spec string) (string, error) { return daemon.StoreDir(spec) }

// openLocal opens a store: through its daemon if mounted, else here.
func openLocal(spec string, timeout time.Duration) (*side, error) {
	dir, err := storeDir(spec)
	if err != nil {
		return nil, err
	}
	if conn, err := dialTransfer(dir); err == nil {
		remote, err := transfer.DialTimeout(conn, dir, timeout)
		if err != nil {
			conn.Close()
			return nil, err
		}
		return &side{Peer: remote, what: dir}, nil
	} else if !errors.Is(err, daemon.ErrNoDaemon) {
		return nil, err
	}
	st, err := openStore(dir, fs.OpenOptions{})
	if err != nil {
		return nil, err
	}
	cs, x, data := st.Chunks, st.Index, st.Data
	return &side{Peer: &transfer.Local{Chunks: cs, Index: x, Data: data, Images: lineage.Of(x), As: selfCaller()}, what: dir, close: func() error {
		return st.Close()
	}}, nil
}
