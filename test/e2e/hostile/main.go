// Command hostile is a peer of the transfer protocol that lies, for the
// attacks the e2e tests play against the real ckptfs binary. As a server
// (the --ssh command of a pull; its own arguments come first, ssh's
// follow and are ignored) or as a client of `ckptfs serve STORE`.
//
//	hostile stall ...               answer the handshake, then say nothing
//	hostile redirect STORE FROM TO ...
//	                                serve STORE, but answer a manifest request
//	                                for FROM with one for TO
//	hostile bigchunk STORE ...      serve STORE, but answer every chunk request
//	                                with a 1 GiB message (35 KiB on the wire)
//	hostile ctlname STORE ...       serve STORE, listing and sending each file
//	                                under a name with a control byte
//	hostile apply CKPTFS STORE ATTACK [BASE]
//	                                run `CKPTFS serve STORE` and send it ATTACK:
//	                                copies (a manifest of copy ops of BASE that
//	                                expands a thousandfold), bigchunk (a 1 GiB
//	                                chunk message), zeros (a 1 TiB file of zero
//	                                runs between one-byte chunks), forge PATH
//	                                (a setuid root-owned file at PATH)
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/index/manifest"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

const version = "ckptfs-transfer 1\n"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

type stdio struct{}

func (stdio) Read(b []byte) (int, error)  { return os.Stdin.Read(b) }
func (stdio) Write(b []byte) (int, error) { return os.Stdout.Write(b) }
func (stdio) Close() error                { return os.Stdout.Close() }

func run(args []string) error {
	switch args[0] {
	case "stall":
		got := make([]byte, len(version))
		io.ReadFull(os.Stdin, got)
		io.WriteString(os.Stdout, version)
		time.Sleep(time.Hour)
		return nil
	case "redirect", "bigchunk", "ctlname":
		l, closeFn, err := open(args[1])
		if err != nil {
			return err
		}
		defer closeFn()
		var p transfer.Peer = l
		switch args[0] {
		case "redirect":
			p = &redirect{Local: l, from: args[2], to: args[3]}
		case "ctlname":
			p = &ctlname{Local: l}
		case "bigchunk":
			return serveBigChunk(l)
		}
		return transfer.Serve(stdio{}, p)
	case "apply":
		return apply(args[1], args[2], args[3], args[4:])
	}
	return fmt.Errorf("unknown mode %q", args[0])
}

func open(dir string) (*transfer.Local, func(), error) {
	o := chunkstore.DefaultOptions()
	o.ReadOnly = true
	cs, err := chunkstore.Open(dir, o)
	if err != nil {
		return nil, nil, err
	}
	x, err := index.OpenReadOnly(cs.DB())
	if err != nil {
		return nil, nil, err
	}
	cfg := content.DefaultConfig()
	cfg.Pages = fs.XenPages(x, true)
	cfg.Runs = lineage.Of(x)
	data := content.New(cs, cs, x, cfg)
	return &transfer.Local{Chunks: cs, Index: x, Data: data, Images: lineage.Of(x)}, func() { data.Close(); cs.Close() }, nil
}

// redirect answers a manifest request for from with to's manifest.
type redirect struct {
	*transfer.Local
	from, to string
}

func (r *redirect) Manifest(p string) (*manifest.Manifest, error) {
	m, err := r.Local.Manifest(p)
	if err == nil && p == r.from {
		m.Path = r.to
		m.UID, m.GID = 0, 0
	}
	return m, err
}

// ctlname lists and sends every file under a name with a control byte.
type ctlname struct{ *transfer.Local }

func (c *ctlname) List() ([]transfer.File, error) {
	fs, err := c.Local.List()
	for i := range fs {
		fs[i].Path += "\x01x"
	}
	return fs, err
}

func (c *ctlname) Manifest(p string) (*manifest.Manifest, error) {
	m, err := c.Local.Manifest(p[:len(p)-2])
	if err == nil {
		m.Path = p
	}
	return m, err
}

// conn is the framing: a version line, then S2-compressed messages of a
// tag, uv(len) and the payload.
type conn struct {
	r *bufio.Reader
	w *s2.Writer
}

func newConn(r io.Reader, w io.Writer) *conn {
	return &conn{r: bufio.NewReader(s2.NewReader(r)), w: s2.NewWriter(w)}
}

func (c *conn) send(tag byte, payload []byte) {
	c.w.Write(append([]byte{tag}, binary.AppendUvarint(nil, uint64(len(payload)))...))
	c.w.Write(payload)
}

// sendZeros sends a message claiming n bytes of zeros (they compress to
// almost nothing).
func (c *conn) sendZeros(tag byte, n int) {
	c.w.Write(append([]byte{tag}, binary.AppendUvarint(nil, uint64(n))...))
	z := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(z))
		if _, err := c.w.Write(z[:k]); err != nil {
			return
		}
		n -= k
	}
}

// recvAll reads a whole message (from the server under attack: trusted).
func (c *conn) recvAll() (byte, []byte, error) {
	tag, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, err
	}
	b := make([]byte, n)
	_, err = io.ReadFull(c.r, b)
	return tag, b, err
}

func (c *conn) recv() (byte, []byte, error) {
	tag, err := c.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(c.r)
	if err != nil {
		return 0, nil, err
	}
	b := make([]byte, min(n, 1<<20))
	_, err = io.ReadFull(c.r, b)
	return tag, b, err
}

// serveBigChunk serves l's listing and manifests and answers chunk
// requests with 1 GiB messages.
func serveBigChunk(l *transfer.Local) error {
	got := make([]byte, len(version))
	if _, err := io.ReadFull(os.Stdin, got); err != nil {
		return err
	}
	io.WriteString(os.Stdout, version)
	c := newConn(os.Stdin, os.Stdout)
	for {
		tag, b, err := c.recv()
		if err != nil {
			return nil
		}
		switch tag {
		case 'L':
			fs, _ := l.List()
			j, _ := json.Marshal(fs)
			c.send('l', j)
		case 'M':
			m, err := l.Manifest(string(b))
			if err != nil {
				c.send('N', []byte(err.Error()))
			} else {
				c.send('m', m.Encode(nil))
			}
		case 'R':
			c.sendZeros('c', 1<<30)
		case 'Q':
			return nil
		default:
			c.send('E', []byte("no"))
		}
		c.w.Flush()
	}
}

// apply runs `ckptfs serve store` and plays attack on it; it prints the
// server's replies.
func apply(bin, store, attack string, rest []string) error {
	cmd := exec.Command(bin, "serve", store)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	io.WriteString(in, version)
	got := make([]byte, len(version))
	if _, err := io.ReadFull(out, got); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	c := newConn(out, in)
	switch attack {
	case "copies":
		// A delta on BASE (the server's own file, whose manifest it
		// gives) that copies all of it again and again.
		base := rest[0]
		c.send('M', []byte(base))
		c.w.Flush()
		tag, b, err := c.recvAll()
		if err != nil || tag != 'm' {
			return fmt.Errorf("manifest of %s: %c %v", base, tag, err)
		}
		bm, err := manifest.Decode(b, nil)
		if err != nil {
			return err
		}
		n, dig := uint64(len(bm.Entries)), bm.Digest()
		enc := append([]byte("CKPTMAN\x01"), binary.AppendUvarint(nil, uint64(len("bomb")))...)
		enc = append(enc, "bomb"...)
		enc = binary.AppendUvarint(enc, 0o100644)
		enc = binary.AppendUvarint(enc, 0)
		enc = binary.AppendUvarint(enc, 0)
		enc = binary.AppendVarint(enc, 0)
		enc = binary.AppendUvarint(enc, 1<<40)
		enc = append(enc, 0, 0)
		enc = append(enc, dig[:]...)
		// Within the entry limit: the copy budget must catch it.
		reps := uint64(manifest.MaxEntries) / n
		enc = binary.AppendUvarint(enc, n*reps)
		for range reps {
			enc = append(enc, 3)
			enc = binary.AppendUvarint(enc, 0)
			enc = binary.AppendUvarint(enc, n)
		}
		enc = append(enc, make([]byte, 32)...)
		head := binary.AppendUvarint(nil, uint64(len(base)))
		head = append(head, base...)
		head = binary.AppendUvarint(head, 0)
		c.send('A', append(head, enc...))
	case "bigchunk":
		m := &manifest.Manifest{Path: "bigchunk", Mode: 0o100644, Size: 4096}
		data := make([]byte, 4096)
		data[0] = 1
		id := chunkstore.Sum(data)
		m.Entries = []manifest.Entry{{ID: id, Len: 4096}}
		head := binary.AppendUvarint(nil, 0)
		head = binary.AppendUvarint(head, 1)
		c.send('A', append(append(head, id[:]...), m.Encode(nil)...))
		c.sendZeros('c', 1<<30)
	case "zeros":
		data := []byte{7}
		id := chunkstore.Sum(data)
		m := &manifest.Manifest{Path: "zeros", Mode: 0o100644}
		for m.Size < 1<<40 {
			m.Entries = append(m.Entries, manifest.Entry{Zero: true, Len: 8 << 20}, manifest.Entry{ID: id, Len: 1})
			m.Size += 8<<20 + 1
		}
		head := binary.AppendUvarint(nil, 0)
		head = binary.AppendUvarint(head, 1)
		c.send('A', append(append(head, id[:]...), m.Encode(nil)...))
		c.send('c', data)
	case "forge":
		data := []byte("#!/bin/sh\nid\n")
		id := chunkstore.Sum(data)
		m := &manifest.Manifest{Path: rest[0], Mode: 0o104755, UID: 0, GID: 0, Size: int64(len(data)), Entries: []manifest.Entry{{ID: id, Len: uint64(len(data))}}}
		head := binary.AppendUvarint(nil, 0)
		head = binary.AppendUvarint(head, 1)
		c.send('A', append(append(head, id[:]...), m.Encode(nil)...))
		c.send('c', data)
	case "remove":
		// Remove rest[0] as listed (its size and mtime from the
		// server's own listing, or made up when it lists none).
		c.send('L', nil)
		c.w.Flush()
		tag, b, err := c.recvAll()
		if err != nil || tag != 'l' {
			return fmt.Errorf("listing: %c %v", tag, err)
		}
		var files []transfer.File
		if err := json.Unmarshal(b, &files); err != nil {
			return err
		}
		f := transfer.File{Path: rest[0], Size: 1}
		for _, g := range files {
			if g.Path == rest[0] {
				f = g
			}
		}
		j, _ := json.Marshal(f)
		c.send('D', j)
	default:
		return fmt.Errorf("unknown attack %q", attack)
	}
	c.w.Flush()
	tag, b, err := c.recv()
	if err != nil {
		fmt.Printf("no reply: %v\n", err)
	} else {
		fmt.Printf("reply %c: %s\n", tag, b)
	}
	c.send('Q', nil)
	c.w.Flush()
	in.Close()
	return cmd.Wait()
}
