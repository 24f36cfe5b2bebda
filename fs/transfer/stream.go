package transfer

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index/manifest"
	"github.com/klauspost/compress/s2"
)

// The stream protocol, spoken over ssh (`ckptfs serve`) and a daemon's
// control socket. Both directions are S2 streams (each message group
// flushed) of messages: a tag byte, uv(len), payload.
//
//	request                                   reply
//	----------------------------------------  ------------------------------
//	'L'                                       'l' JSON []File
//	'M' path                                  'm' manifest (no base)
//	'R' ids (32 each)                         'c' data, one per id, then 'r'
//	'H' ids                                   'h' the ids missing
//	'A' uv(len) base path | uv(n) | n ids |   'a' (applied)
//	    manifest; then n x 'c' data
//	'D' JSON File                             'd' (removed)
//	'Q'                                       (the server ends)
//
// Any reply may instead be 'E' message, 'B' (base mismatch) or 'N' (not
// found). A server that fails an apply still reads its chunk messages, so
// the stream stays in step.
//
// Each message's length is checked against the limit for its tag before
// anything is read, and its bytes are read as they arrive (never
// allocated from the length alone), so what a peer can make this side hold
// is bounded whatever it sends (see limit).
const version = "ckptfs-transfer 1\n"

// Message limits, by what the message carries.
const (
	maxIDs     = 1 << 20 // ids in one 'H', 'h' or 'R' message
	maxListing = 64 << 20
	maxSmall   = 64 << 10 // paths, errors, empty messages
)

// limit is the longest message with tag.
func limit(tag byte) uint64 {
	switch tag {
	case 'c':
		return chunkstore.MaxChunkSize
	case 'H', 'h', 'R':
		return maxIDs * chunkstore.IDSize
	case 'l':
		return maxListing
	case 'm':
		return manifest.MaxEncoded
	case 'A':
		return 2*binary.MaxVarintLen64 + maxSmall + manifest.MaxEntries*chunkstore.IDSize + manifest.MaxEncoded
	}
	return maxSmall
}

// DefaultTimeout is how long push and pull wait for the other side to send
// anything before they give up on it.
const DefaultTimeout = 5 * time.Minute

// ErrTimeout is a Remote's error when the other side sent nothing for its
// timeout.
var ErrTimeout = errors.New("the other side sent nothing")

type conn struct {
	r  *bufio.Reader
	sr *s2.Reader
	w  *s2.Writer
	c  io.ReadWriteCloser
	// idle, if set, is called before each message is read (it arms the
	// stream's read deadline).
	idle func()
}

func newConn(rw io.ReadWriteCloser) *conn {
	return &conn{sr: s2.NewReader(rw), w: s2.NewWriter(rw, s2.WriterConcurrency(2)), c: rw}
}

// hello exchanges the version line (plain bytes, before compression): the
// client speaks first.
func hello(rw io.ReadWriter, client bool) error {
	if client {
		if _, err := io.WriteString(rw, version); err != nil {
			return err
		}
	}
	got := make([]byte, len(version))
	if _, err := io.ReadFull(rw, got); err != nil {
		return fmt.Errorf("the other side did not answer (%w)", err)
	}
	if string(got) != version {
		return fmt.Errorf("the other side speaks %q, not %q", got, version)
	}
	if !client {
		_, err := io.WriteString(rw, version)
		return err
	}
	return nil
}

func (c *conn) send(tag byte, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var h [1 + binary.MaxVarintLen64]byte
	h[0] = tag
	k := 1 + binary.PutUvarint(h[1:], uint64(n))
	if _, err := c.w.Write(h[:k]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := c.w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) flush() error { return c.w.Flush() }

func (c *conn) recv() (byte, []byte, error) {
	if c.r == nil {
		c.r = bufio.NewReaderSize(c.sr, 1<<16)
	}
	if c.idle != nil {
		c.idle()
	}
	tag, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, unexpected(err)
	}
	if n > limit(tag) {
		return 0, nil, fmt.Errorf("a %d-byte %q message: over its limit of %d bytes", n, tag, limit(tag))
	}
	// Read as the bytes arrive: a length alone allocates at most a step.
	const step = 1 << 20
	b := make([]byte, 0, min(n, step))
	for uint64(len(b)) < n {
		k := int(min(n-uint64(len(b)), step))
		b = slices.Grow(b, k)
		if _, err := io.ReadFull(c.r, b[len(b):len(b)+k]); err != nil {
			return 0, nil, unexpected(err)
		}
		b = b[:len(b)+k]
	}
	return tag, b, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func appendIDs(b []byte, ids []chunkstore.ID) []byte {
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func parseIDs(b []byte) ([]chunkstore.ID, error) {
	if len(b)%chunkstore.IDSize != 0 {
		return nil, fmt.Errorf("a list of ids of %d bytes", len(b))
	}
	ids := make([]chunkstore.ID, len(b)/chunkstore.IDSize)
	for i := range ids {
		copy(ids[i][:], b[i*chunkstore.IDSize:])
	}
	return ids, nil
}

// Serve answers one client's requests on rw with p until the client quits
// or the stream ends.
func Serve(rw io.ReadWriteCloser, p Peer) error {
	if err := hello(rw, false); err != nil {
		return err
	}
	c := newConn(rw)
	for {
		tag, b, err := c.recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if tag == 'Q' {
			return nil
		}
		if err := serveOne(c, p, tag, b); err != nil {
			return err
		}
		if err := c.flush(); err != nil {
			return err
		}
	}
}

// serveOne answers one request; the error it returns is the stream's.
func serveOne(c *conn, p Peer, tag byte, b []byte) error {
	switch tag {
	case 'L':
		fs, err := p.List()
		if err != nil {
			return replyErr(c, err)
		}
		j, _ := json.Marshal(fs)
		return c.send('l', j)
	case 'M':
		m, err := p.Manifest(string(b))
		if err != nil {
			return replyErr(c, err)
		}
		return c.send('m', m.Encode(nil))
	case 'H':
		ids, err := parseIDs(b)
		if err == nil {
			ids, err = p.Missing(ids)
		}
		if err != nil {
			return replyErr(c, err)
		}
		return c.send('h', appendIDs(nil, ids))
	case 'R':
		ids, err := parseIDs(b)
		if err == nil {
			err = p.Read(ids, func(ch Chunk) error { return c.send('c', ch.Data) })
		}
		if err != nil {
			return replyErr(c, err)
		}
		return c.send('r')
	case 'A':
		return serveApply(c, p, b)
	case 'D':
		var f File
		if err := json.Unmarshal(b, &f); err != nil {
			return replyErr(c, fmt.Errorf("bad remove request: %w", err))
		}
		if err := p.Remove(f); err != nil {
			return replyErr(c, err)
		}
		return c.send('d')
	}
	return replyErr(c, fmt.Errorf("unknown request %q", tag))
}

func serveApply(c *conn, p Peer, b []byte) error {
	var streamErr error
	arrived := 0
	missing, base, m, err := parseApply(p, b)
	next := func() (Chunk, error) {
		if arrived >= len(missing) {
			return Chunk{}, errors.New("more chunks asked for than announced")
		}
		tag, data, err := c.recv()
		if err == nil && tag != 'c' {
			err = fmt.Errorf("message %q where a chunk comes next", tag)
		}
		if err != nil {
			streamErr = err
			return Chunk{}, err
		}
		arrived++
		return Chunk{ID: missing[arrived-1], Data: data}, nil
	}
	if err == nil {
		err = p.Apply(m, base, missing, next)
	}
	for streamErr == nil && arrived < len(missing) {
		next() // read what the failed apply did not
	}
	if streamErr != nil {
		return streamErr
	}
	if err != nil {
		return replyErr(c, err)
	}
	return c.send('a')
}

func parseApply(p Peer, b []byte) (missing []chunkstore.ID, base, m *manifest.Manifest, err error) {
	bl, k := binary.Uvarint(b)
	if k <= 0 || bl > uint64(len(b)-k) {
		return nil, nil, nil, errors.New("bad apply request")
	}
	basePath := string(b[k : k+int(bl)])
	b = b[k+int(bl):]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k)/chunkstore.IDSize {
		return nil, nil, nil, errors.New("bad apply request")
	}
	missing, _ = parseIDs(b[k : k+int(n)*chunkstore.IDSize])
	enc := b[k+int(n)*chunkstore.IDSize:]
	if basePath != "" {
		if base, err = p.Manifest(basePath); err != nil {
			return missing, nil, nil, fmt.Errorf("%s: %w", basePath, ErrBaseMismatch)
		}
	}
	if m, err = manifest.Decode(enc, base); err != nil && base != nil {
		if d, ok := manifest.Base(enc); ok && d != base.Digest() {
			err = fmt.Errorf("%s: %w", basePath, ErrBaseMismatch)
		}
	}
	if err == nil && base != nil {
		base = nil // checked here: the digest matched
	}
	return missing, base, m, err
}

func replyErr(c *conn, err error) error {
	switch {
	case errors.Is(err, ErrBaseMismatch):
		return c.send('B', []byte(err.Error()))
	case errors.Is(err, ErrNotFound):
		return c.send('N', []byte(err.Error()))
	}
	return c.send('E', []byte(chunkstore.OneLine(err.Error())))
}

// Remote is a peer at the other end of a stream.
type Remote struct {
	c *conn
	// Sent and Received count the stream's bytes (compressed, as on the
	// wire).
	Sent, Received atomic.Int64
	what           string
	timeout        time.Duration
}

// RemoteError is an error the other side reported.
type RemoteError struct{ What, Msg string }

func (e *RemoteError) Error() string { return e.What + ": " + e.Msg }

// Dial speaks the protocol on rw (what describes the other side in
// errors).
func Dial(rw io.ReadWriteCloser, what string) (*Remote, error) {
	return DialTimeout(rw, what, 0)
}

// deadliner is a stream whose reads can time out (a pipe, a socket).
type deadliner interface{ SetReadDeadline(time.Time) error }

// DialTimeout is Dial with an idle timeout (0: none): when the other side
// sends nothing for that long while this side waits for it, the call
// fails with ErrTimeout and the stream is closed. rw must have
// SetReadDeadline (an *os.File pipe, a net.Conn) for a timeout to apply.
func DialTimeout(rw io.ReadWriteCloser, what string, timeout time.Duration) (*Remote, error) {
	r := &Remote{what: what, timeout: timeout}
	counted := &countRW{rw: rw, in: &r.Received, out: &r.Sent}
	dl, _ := rw.(deadliner)
	arm := func() {
		if dl != nil && timeout > 0 {
			dl.SetReadDeadline(time.Now().Add(timeout))
		}
	}
	arm()
	if err := hello(counted, true); err != nil {
		return nil, fmt.Errorf("%s: %w", what, r.timedOut(err))
	}
	r.c = newConn(counted)
	r.c.idle = arm
	return r, nil
}

// timedOut names a deadline that passed.
func (r *Remote) timedOut(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w for %v (--timeout): %w", ErrTimeout, r.timeout, err)
	}
	return err
}

type countRW struct {
	rw      io.ReadWriteCloser
	in, out *atomic.Int64
}

func (c *countRW) Read(p []byte) (int, error) {
	n, err := c.rw.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countRW) Write(p []byte) (int, error) {
	n, err := c.rw.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *countRW) Close() error { return c.rw.Close() }

// call sends one request and reads the first message of its reply.
func (r *Remote) call(tag byte, want byte, payload ...[]byte) ([]byte, error) {
	if err := r.c.send(tag, payload...); err != nil {
		return nil, r.streamErr(err)
	}
	if err := r.c.flush(); err != nil {
		return nil, r.streamErr(err)
	}
	return r.reply(want)
}

func (r *Remote) reply(want byte) ([]byte, error) {
	tag, b, err := r.c.recv()
	if err != nil {
		return nil, r.streamErr(err)
	}
	switch tag {
	case want:
		return b, nil
	case 'B':
		return nil, fmt.Errorf("%s: %s (%w)", r.what, b, ErrBaseMismatch)
	case 'N':
		return nil, fmt.Errorf("%s: %s (%w)", r.what, b, ErrNotFound)
	case 'E':
		return nil, &RemoteError{What: r.what, Msg: string(b)}
	}
	return nil, r.streamErr(fmt.Errorf("reply %q where %q was expected", tag, want))
}

func (r *Remote) streamErr(err error) error { return &StreamError{What: r.what, Err: r.timedOut(err)} }

// StreamError is an error of the stream itself (it broke, stalled or went
// out of step): nothing more can be sent over it.
type StreamError struct {
	What string
	Err  error
}

func (e *StreamError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *StreamError) Unwrap() error { return e.Err }

// List asks for the listing.
func (r *Remote) List() ([]File, error) {
	b, err := r.call('L', 'l')
	if err != nil {
		return nil, err
	}
	var fs []File
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, fmt.Errorf("%s: bad listing: %w", r.what, err)
	}
	return fs, nil
}

// Manifest asks for a manifest.
func (r *Remote) Manifest(path string) (*manifest.Manifest, error) {
	b, err := r.call('M', 'm', []byte(path))
	if err != nil {
		return nil, err
	}
	return manifest.Decode(b, nil)
}

// Read asks for chunks, checking each against its id.
func (r *Remote) Read(ids []chunkstore.ID, fn func(Chunk) error) error {
	if len(ids) == 0 {
		return nil
	}
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1<<14)]
		ids = ids[len(batch):]
		if err := r.c.send('R', appendIDs(nil, batch)); err != nil {
			return r.streamErr(err)
		}
		if err := r.c.flush(); err != nil {
			return r.streamErr(err)
		}
		var ferr error
		for _, id := range batch {
			data, err := r.reply('c')
			if err != nil {
				return err
			}
			if chunkstore.Sum(data) != id {
				return r.streamErr(fmt.Errorf("chunk %v: %w (its content does not hash to its id)", id, chunkstore.ErrCorrupt))
			}
			if ferr == nil {
				ferr = fn(Chunk{ID: id, Data: data})
			}
		}
		if _, err := r.reply('r'); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
	}
	return nil
}

// Missing asks which ids the other side lacks.
func (r *Remote) Missing(ids []chunkstore.ID) ([]chunkstore.ID, error) {
	var out []chunkstore.ID
	for len(ids) > 0 {
		batch := ids[:min(len(ids), 1<<20)]
		ids = ids[len(batch):]
		b, err := r.call('H', 'h', appendIDs(nil, batch))
		if err != nil {
			return nil, err
		}
		got, err := parseIDs(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.what, err)
		}
		out = append(out, got...)
	}
	return out, nil
}

// Apply sends m (delta-encoded against base), then the missing chunks.
func (r *Remote) Apply(m, base *manifest.Manifest, missing []chunkstore.ID, next func() (Chunk, error)) error {
	basePath := ""
	if base != nil {
		basePath = base.Path
	}
	head := binary.AppendUvarint(nil, uint64(len(basePath)))
	head = append(head, basePath...)
	head = binary.AppendUvarint(head, uint64(len(missing)))
	if err := r.c.send('A', head, appendIDs(nil, missing), m.Encode(base)); err != nil {
		return r.streamErr(err)
	}
	for range missing {
		c, err := next()
		if err != nil {
			// The stream cannot be put back in step: the caller
			// closes it.
			return r.streamErr(err)
		}
		if err := r.c.send('c', c.Data); err != nil {
			return r.streamErr(err)
		}
	}
	if err := r.c.flush(); err != nil {
		return r.streamErr(err)
	}
	_, err := r.reply('a')
	return err
}

// Remove asks the other side to remove f. A server older than the request
// answers that it does not know it.
func (r *Remote) Remove(f File) error {
	j, _ := json.Marshal(f)
	_, err := r.call('D', 'd', j)
	return err
}

// Close ends the session and the stream.
func (r *Remote) Close() error {
	r.c.send('Q')
	r.c.flush()
	return r.c.c.Close()
}
