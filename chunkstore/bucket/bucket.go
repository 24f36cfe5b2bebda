// Package bucket keeps chunks and file manifests in an S3-compatible
// object store that many hosts share: the off-host tier. Chunks travel in
// packs of up to PackSize bytes, each chunk sealed on its own (so one can
// be read with a ranged GET); a small index object per pack names what it
// holds, so a host learns what the bucket stores by reading the index
// objects, not by listing chunks. Everything stored is encrypted and
// authenticated with keys derived from the hosts' key file (see Keys);
// hosts that share the key name chunks alike, so a chunk any of them
// pushed is stored once.
//
// # Objects, version 1
//
// Under the bucket's prefix P:
//
//	object                      content
//	--------------------------  ---------------------------------------------
//	P/ckptfs-bucket             sealed("config", JSON {"version": 1})
//	P/packs/<16 hex>            blobs, back to back; a blob is
//	                            sealed(name, codec (1) | payload): codec 0 is
//	                            the chunk as is, 1 is S2 (block format)
//	P/index/<pack>              sealed("index/<pack>", S2(n x (name (32) |
//	                            uv(offset) | uv(length)))): the pack's blobs
//	P/files/<host>/<path>       uv(len(h)) | h | sealed("file/<host>/<path>",
//	                            S2(manifest)), h = sealed("file-header/<host>/
//	                            <path>", JSON File): a file pushed by host
//	P/gc/marks/<pack>           decimal nanoseconds since the epoch: when gc
//	                            marked the pack for deletion
//
// sealed(aad, x) is nonce (12) | AES-256-GCM(x, aad) with tag (16). A
// chunk's name is keyed BLAKE3-256 of its id. Object names (hosts and
// paths) are not encrypted.
//
// # Garbage collection
//
// GC deletes in two steps, as duplicacy and Proxmox Backup Server do: a run
// expires manifests by policy, then marks every pack none of whose blobs a
// remaining manifest needs (a pack partly needed is first rewritten: its
// needed blobs copied, verbatim, into a new pack); a later run deletes a
// pack marked at least the grace period before, if it is still not needed,
// and unmarks it otherwise. A pusher never writes a manifest that uses a
// pack marked more than half the grace period ago (it pushes those chunks
// again), so a manifest written while gc runs is always seen by the run
// that would delete what it uses.
package bucket

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"crypto/rand"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/index/manifest"
	"github.com/klauspost/compress/s2"
	"golang.org/x/sync/errgroup"
)

// PackSize is the size a pack is closed at.
var PackSize = 32 << 20

// Options says how to reach a bucket.
type Options struct {
	Endpoint             string // host:port
	Secure               bool   // https
	AccessKey, SecretKey string
	Keys                 *Keys
	// Host is the host whose files List, Manifest and Apply work on.
	Host string
	// Grace is the gc grace period pushers honour (default 1h).
	Grace time.Duration
	// Clock is this host's clock (nil: time.Now). Grace periods are
	// measured on the object store's clock, whatever this one says.
	Clock func() time.Time
}

// Bucket is a bucket opened for one host.
type Bucket struct {
	objs     Objects
	prefix   string
	o        Options
	ctx      context.Context
	What     string
	Sent     atomic.Int64 // bytes uploaded
	Received atomic.Int64 // bytes downloaded

	mu      sync.Mutex
	loc     map[Name]loc
	indexed map[string]bool      // index objects read
	packs   map[string][]loc     // each pack's blobs, from its index
	marks   map[string]time.Time // when each mark was written, by the object store's clock
	headers map[string]transfer.File

	clockOnce sync.Once
	skew      time.Duration // the object store's clock minus this host's
	skewErr   error
}

// storeNow returns the object store's time now: this host's clock
// corrected by the skew measured once (a probe object written and its
// modification time read back). Grace periods are measured on the object
// store's clock alone, so hosts whose clocks disagree still agree on them.
func (b *Bucket) storeNow() (time.Time, error) {
	clock := b.o.Clock
	if clock == nil {
		clock = time.Now
	}
	b.clockOnce.Do(func() {
		rel := "clock/" + b.o.Host
		before := clock()
		if b.skewErr = b.put(rel, nil); b.skewErr != nil {
			return
		}
		mod, err := b.objs.Modified(b.ctx, b.key(rel))
		if err != nil {
			b.skewErr = b.wrap(rel, err)
			return
		}
		after := clock()
		// LastModified has whole seconds: the store's now lies in
		// [LastModified, LastModified+1s); take the middle.
		b.skew = mod.Truncate(time.Second).Add(500 * time.Millisecond).Sub(before.Add(after.Sub(before) / 2))
	})
	return clock().Add(b.skew), b.skewErr
}

// StoreNow is the object store's time now, as grace periods see it.
func (b *Bucket) StoreNow() (time.Time, error) { return b.storeNow() }

// ErrTampered is the error for an object that does not open with the key
// that opens the bucket's config: damaged, or written by someone without
// the key.
var ErrTampered = errors.New("damaged or tampered object")

// open opens sealed, object obj of the bucket, for aad; a failure to open
// names the object (the key is right: it opened the config).
func (b *Bucket) open(obj string, aad, sealed []byte) ([]byte, error) {
	plain, err := b.o.Keys.Open(nil, aad, sealed)
	if errors.Is(err, ErrWrongKey) {
		return nil, fmt.Errorf("%s: %w %s (it does not open with the key that opens the bucket)", b.What, ErrTampered, obj)
	}
	return plain, err
}

type loc struct {
	name     Name
	pack     string
	off, len uint32
}

// ParseURL splits s3://bucket[/prefix].
func ParseURL(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", fmt.Errorf("%q: not s3://BUCKET[/PREFIX]", s)
	}
	return u.Host, strings.Trim(u.Path, "/"), nil
}

// Open opens the bucket of url (s3://bucket/prefix) at o.Endpoint,
// creating the bucket and its config object if they do not exist, and
// checks the key.
func Open(rawURL string, o Options) (*Bucket, error) {
	name, prefix, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if o.Keys == nil {
		return nil, errors.New("a bucket needs --key-file: what leaves the host is encrypted")
	}
	if o.Endpoint == "" {
		return nil, errors.New("an s3:// URL needs --endpoint HOST:PORT")
	}
	objs, err := NewS3Objects(context.Background(), o.Endpoint, o.Secure, o.AccessKey, o.SecretKey, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rawURL, err)
	}
	return OpenObjects(objs, prefix, rawURL, o)
}

// OpenObjects opens the bucket kept in objs under prefix (what names it
// in errors), writing its config object if there is none, and checks the
// key.
func OpenObjects(objs Objects, prefix, what string, o Options) (*Bucket, error) {
	if o.Keys == nil {
		return nil, errors.New("a bucket needs --key-file: what leaves the host is encrypted")
	}
	if o.Grace == 0 {
		o.Grace = time.Hour
	}
	b := &Bucket{objs: objs, prefix: prefix, o: o, ctx: context.Background(), What: what,
		loc: map[Name]loc{}, indexed: map[string]bool{}, packs: map[string][]loc{}, marks: map[string]time.Time{}, headers: map[string]transfer.File{}}
	cfg, err := b.get("ckptfs-bucket", 0, 0)
	if isNotFound(err) {
		return b, b.put("ckptfs-bucket", o.Keys.Seal(nil, []byte("config"), []byte(`{"version":1}`)))
	}
	if err != nil {
		return nil, err
	}
	plain, err := o.Keys.Open(nil, []byte("config"), cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var c struct{ Version int }
	if json.Unmarshal(plain, &c) != nil || c.Version != 1 {
		return nil, fmt.Errorf("%s: bucket format %q, this ckptfs reads version 1", what, plain)
	}
	return b, nil
}

func (b *Bucket) key(rel string) string {
	if b.prefix == "" {
		return rel
	}
	return b.prefix + "/" + rel
}

func (b *Bucket) wrap(obj string, err error) error {
	if err == nil {
		return nil
	}
	if obj != "" {
		return fmt.Errorf("%s: %s: %w", b.What, obj, err)
	}
	return fmt.Errorf("%s: %w", b.What, err)
}

func isNotFound(err error) bool { return errors.Is(err, ErrNoObject) }

// get reads object rel, or its bytes [off, off+n) when n > 0.
func (b *Bucket) get(rel string, off, n int64) ([]byte, error) {
	data, err := b.objs.Get(b.ctx, b.key(rel), off, n)
	b.Received.Add(int64(len(data)))
	return data, b.wrap(rel, err)
}

func (b *Bucket) put(rel string, data []byte) error {
	err := b.objs.Put(b.ctx, b.key(rel), data)
	if err == nil {
		b.Sent.Add(int64(len(data)))
	}
	return b.wrap(rel, err)
}

func (b *Bucket) remove(rel string) error {
	return b.wrap(rel, b.objs.Remove(b.ctx, b.key(rel)))
}

// list returns the objects under rel (a prefix ending in /), names relative
// to it, with their modification times.
func (b *Bucket) list(rel string) (map[string]time.Time, error) {
	objs, err := b.objs.List(b.ctx, b.key(rel))
	if err != nil {
		return nil, b.wrap(rel, err)
	}
	out := make(map[string]time.Time, len(objs))
	for k, t := range objs {
		out[strings.TrimPrefix(k, b.key(rel))] = t
	}
	return out, nil
}

// refresh reads the index objects and marks it has not seen.
func (b *Bucket) refresh() error {
	idx, err := b.list("index/")
	if err != nil {
		return err
	}
	var todo []string
	b.mu.Lock()
	for p := range idx {
		if !b.indexed[p] {
			todo = append(todo, p)
		}
	}
	for p := range b.indexed { // packs gc deleted
		if _, ok := idx[p]; !ok {
			for _, l := range b.packs[p] {
				if b.loc[l.name].pack == p {
					delete(b.loc, l.name)
				}
			}
			delete(b.packs, p)
			delete(b.indexed, p)
		}
	}
	b.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(8)
	for _, p := range todo {
		g.Go(func() error {
			ls, err := b.readIndex(p)
			if err != nil {
				return err
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			b.indexed[p] = true
			b.packs[p] = ls
			for _, l := range ls {
				if cur, ok := b.loc[l.name]; !ok || p < cur.pack {
					b.loc[l.name] = l
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	marks, err := b.readMarks()
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.marks = marks
	b.mu.Unlock()
	return nil
}

// readMarks returns when each mark was written, by the object store's
// clock (the mark object's modification time; what it holds is the
// marking host's clock, for people only).
func (b *Bucket) readMarks() (map[string]time.Time, error) {
	return b.list("gc/marks/")
}

func (b *Bucket) readIndex(pack string) ([]loc, error) {
	data, err := b.get("index/"+pack, 0, 0)
	if err != nil {
		return nil, err
	}
	plain, err := b.open(b.key("index/"+pack), []byte("index/"+pack), data)
	if err != nil {
		return nil, err
	}
	ls, err := parseIndex(plain, pack)
	if err != nil {
		return nil, fmt.Errorf("%s: index of pack %s: %w", b.What, pack, err)
	}
	return ls, nil
}

// maxIndex bounds an index object's decoded size (a full pack's index is
// well under 1 MiB), maxManifest a manifest's (a 16 GiB guest's is about
// 160 MB).
const (
	maxIndex    = 64 << 20
	maxManifest = 1 << 30
)

// parseIndex decodes an index object's plain content.
func parseIndex(plain []byte, pack string) ([]loc, error) {
	if n, err := s2.DecodedLen(plain); err != nil || n > maxIndex {
		return nil, fmt.Errorf("%w: index of %d bytes", chunkstore.ErrCorrupt, n)
	}
	raw, err := s2.Decode(nil, plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", chunkstore.ErrCorrupt, err)
	}
	var ls []loc
	for len(raw) > 0 {
		var l loc
		if len(raw) < 32 {
			return nil, chunkstore.ErrCorrupt
		}
		copy(l.name[:], raw)
		raw = raw[32:]
		off, k1 := binary.Uvarint(raw)
		if k1 <= 0 {
			return nil, chunkstore.ErrCorrupt
		}
		n, k2 := binary.Uvarint(raw[k1:])
		if k2 <= 0 || off > 1<<32-1 || n > chunkstore.MaxChunkSize+64 {
			return nil, chunkstore.ErrCorrupt
		}
		raw = raw[k1+k2:]
		l.pack, l.off, l.len = pack, uint32(off), uint32(n)
		ls = append(ls, l)
	}
	return ls, nil
}

func encodeIndex(ls []loc) []byte {
	var raw []byte
	for _, l := range ls {
		raw = append(raw, l.name[:]...)
		raw = binary.AppendUvarint(raw, uint64(l.off))
		raw = binary.AppendUvarint(raw, uint64(l.len))
	}
	return s2.Encode(nil, raw)
}

func newPackName() string {
	var r [8]byte
	rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// Close does nothing: every Apply finishes its uploads.
func (b *Bucket) Close() error { return nil }

// List returns the host's files.
func (b *Bucket) List() ([]transfer.File, error) {
	fs, err := b.ListAll(b.o.Host)
	for i := range fs {
		fs[i].Path = strings.TrimPrefix(fs[i].Path, b.o.Host+"/")
	}
	return fs, err
}

// ListAll returns the files of host ("" for every host), with paths that
// start with the host's name.
func (b *Bucket) ListAll(host string) ([]transfer.File, error) {
	rel := "files/"
	if host != "" {
		rel += host + "/"
	}
	objs, err := b.list(rel)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var out []transfer.File
	var g errgroup.Group
	g.SetLimit(8)
	for o := range objs {
		full := strings.TrimPrefix(rel, "files/") + o
		g.Go(func() error {
			f, err := b.header(full)
			if isNotFound(err) {
				return nil // expired meanwhile
			}
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, f)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// header reads the header of files/<full> (full = host/path).
func (b *Bucket) header(full string) (transfer.File, error) {
	b.mu.Lock()
	f, ok := b.headers[full]
	b.mu.Unlock()
	if ok {
		return f, nil
	}
	data, err := b.get("files/"+full, 0, 4096)
	if err != nil {
		return f, err
	}
	h, _, err := b.splitFile(full, data, true)
	if err != nil {
		return f, err
	}
	plain, err := b.open(full, []byte("file-header/"+full), h)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(plain, &f); err != nil {
		return f, fmt.Errorf("%s: %s: %w", b.What, full, err)
	}
	host, p, _ := strings.Cut(full, "/")
	f.Host, f.Path = host, full
	if p == "" {
		return f, fmt.Errorf("%s: %s: not host/path", b.What, full)
	}
	b.mu.Lock()
	b.headers[full] = f
	b.mu.Unlock()
	return f, nil
}

// splitFile splits a file object into its sealed header and manifest; a
// prefix of the object (partial) may end inside the manifest, and inside
// the header: then it reads the rest.
func (b *Bucket) splitFile(full string, data []byte, partial bool) (h, m []byte, err error) {
	n, k := binary.Uvarint(data)
	if k <= 0 || n > 1<<20 {
		return nil, nil, fmt.Errorf("%s: %s: %w", b.What, full, chunkstore.ErrCorrupt)
	}
	if uint64(len(data)-k) < n {
		if !partial {
			return nil, nil, fmt.Errorf("%s: %s: %w", b.What, full, chunkstore.ErrCorrupt)
		}
		if data, err = b.get("files/"+full, 0, int64(k)+int64(n)); err != nil {
			return nil, nil, err
		}
		if uint64(len(data)-k) < n {
			return nil, nil, fmt.Errorf("%s: %s: %w", b.What, full, chunkstore.ErrCorrupt)
		}
	}
	return data[k : k+int(n)], data[k+int(n):], nil
}

// Manifest reads the manifest of the host's file at p.
func (b *Bucket) Manifest(p string) (*manifest.Manifest, error) {
	return b.ManifestOf(b.o.Host + "/" + p)
}

// ManifestOf reads the manifest of files/<full>; its Path is full's path
// part.
func (b *Bucket) ManifestOf(full string) (*manifest.Manifest, error) {
	data, err := b.get("files/"+full, 0, 0)
	if isNotFound(err) {
		return nil, fmt.Errorf("%s: %w", full, transfer.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	_, sealed, err := b.splitFile(full, data, false)
	if err != nil {
		return nil, err
	}
	plain, err := b.open(full, []byte("file/"+full), sealed)
	if err != nil {
		return nil, err
	}
	if n, err := s2.DecodedLen(plain); err != nil || n > maxManifest {
		return nil, fmt.Errorf("%s: %s: %w", b.What, full, chunkstore.ErrCorrupt)
	}
	enc, err := s2.Decode(nil, plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", b.What, full, err)
	}
	m, err := manifest.Decode(enc, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", b.What, full, err)
	}
	_, m.Path, _ = strings.Cut(full, "/")
	return m, nil
}

// Missing returns the ids the bucket does not hold in a pack that is not
// marked for deletion.
func (b *Bucket) Missing(ids []chunkstore.ID) ([]chunkstore.ID, error) {
	if err := b.refresh(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []chunkstore.ID
	for _, id := range ids {
		if _, ok := b.usable(b.o.Keys.Name(id)); !ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// usable finds a copy of name in a pack not marked (b.mu held).
func (b *Bucket) usable(n Name) (loc, bool) {
	l, ok := b.loc[n]
	if !ok {
		return l, false
	}
	if _, marked := b.marks[l.pack]; !marked {
		return l, true
	}
	for p, ls := range b.packs { // another copy, in an unmarked pack
		if _, marked := b.marks[p]; marked {
			continue
		}
		for _, o := range ls {
			if o.name == n {
				return o, true
			}
		}
	}
	return l, false
}

// ErrRetry is Apply's error when gc marked, while the file was pushed, a
// pack its chunks are in: pushing it again sends those chunks anew.
var ErrRetry = fmt.Errorf("the bucket's gc marked a pack this file uses: %w", transfer.ErrRetry)

// Apply uploads m's missing chunks in packs, then m.
func (b *Bucket) Apply(m, base *manifest.Manifest, missing []chunkstore.ID, next func() (transfer.Chunk, error)) error {
	if err := transfer.CheckPath(m.Path); err != nil {
		return err
	}
	if _, err := b.header(b.o.Host + "/" + m.Path); err == nil {
		return fmt.Errorf("%s: the bucket holds a file of this name already: %w", m.Path, syscall.EEXIST)
	} else if !isNotFound(err) {
		return err
	}
	up := newUploader(b)
	for range missing {
		c, err := next()
		if err != nil {
			up.abort()
			return err
		}
		if chunkstore.Sum(c.Data) != c.ID {
			up.abort()
			return fmt.Errorf("chunk %v: %w (its content does not hash to its id)", c.ID, chunkstore.ErrCorrupt)
		}
		if err := up.add(b.o.Keys.Name(c.ID), c.Data); err != nil {
			up.abort()
			return err
		}
	}
	if err := up.finish(); err != nil {
		return err
	}
	// Every chunk must now be in a pack; check none of those packs has
	// been marked for long (see the package doc), then write the file.
	if err := b.refresh(); err != nil {
		return err
	}
	now, err := b.storeNow()
	if err != nil {
		return err
	}
	b.mu.Lock()
	for _, id := range m.Chunks() {
		n := b.o.Keys.Name(id)
		l, ok := b.loc[n]
		if !ok {
			b.mu.Unlock()
			return fmt.Errorf("%s: chunk %v is not in the bucket", m.Path, id)
		}
		if t, marked := b.marks[l.pack]; marked && now.Sub(t) > b.o.Grace/2 {
			if _, ok := b.usable(n); !ok {
				b.mu.Unlock()
				return fmt.Errorf("%s: %w", m.Path, ErrRetry)
			}
		}
	}
	b.mu.Unlock()
	return b.putFile(m)
}

// Remove removes the host's file f.Path if its header still says the
// version f names; the bucket's gc then frees the chunks only it used.
func (b *Bucket) Remove(f transfer.File) error {
	if err := transfer.CheckPath(f.Path); err != nil {
		return err
	}
	full := b.o.Host + "/" + f.Path
	h, err := b.header(full)
	if isNotFound(err) {
		return fmt.Errorf("%s: %w", f.Path, transfer.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if h.Size != f.Size || h.Mtime != f.Mtime {
		return fmt.Errorf("%s: %w (%d bytes, listed as %d)", f.Path, transfer.ErrChanged, h.Size, f.Size)
	}
	if err := b.remove("files/" + full); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.headers, full)
	b.mu.Unlock()
	return nil
}

func (b *Bucket) putFile(m *manifest.Manifest) error {
	full := b.o.Host + "/" + m.Path
	f := transfer.File{Path: m.Path, Size: m.Size, Mtime: m.Mtime, Mode: m.Mode, UUID: m.UUID, Name: m.Name}
	hj, _ := json.Marshal(f)
	h := b.o.Keys.Seal(nil, []byte("file-header/"+full), hj)
	obj := binary.AppendUvarint(nil, uint64(len(h)))
	obj = append(obj, h...)
	obj = b.o.Keys.Seal(obj, []byte("file/"+full), s2.Encode(nil, m.Encode(nil)))
	return b.put("files/"+full, obj)
}

// uploader fills packs and uploads each (pack, then its index) while the
// next one fills.
type uploader struct {
	b     *Bucket
	buf   []byte
	ls    []loc
	pack  string
	g     errgroup.Group
	mu    sync.Mutex
	done  []string
	names map[Name]bool
}

func newUploader(b *Bucket) *uploader {
	u := &uploader{b: b, pack: newPackName(), names: map[Name]bool{}}
	u.g.SetLimit(2)
	return u
}

func (u *uploader) add(n Name, data []byte) error {
	if u.names[n] {
		return nil
	}
	u.names[n] = true
	plain := make([]byte, 1, 1+s2.MaxEncodedLen(len(data)))
	if enc := s2.Encode(plain[1:cap(plain)], data); len(enc) < len(data) {
		plain[0] = 1
		plain = plain[:1+len(enc)]
	} else {
		plain = append(plain, data...)
	}
	off := len(u.buf)
	u.buf = u.b.o.Keys.Seal(u.buf, n[:], plain)
	u.ls = append(u.ls, loc{name: n, pack: u.pack, off: uint32(off), len: uint32(len(u.buf) - off)})
	if len(u.buf) >= PackSize {
		u.flush()
	}
	return nil
}

func (u *uploader) flush() {
	if len(u.ls) == 0 {
		return
	}
	pack, buf, ls := u.pack, u.buf, u.ls
	u.pack, u.buf, u.ls = newPackName(), nil, nil
	u.g.Go(func() error {
		if err := u.b.putPack(pack, buf, ls); err != nil {
			return err
		}
		u.mu.Lock()
		u.done = append(u.done, pack)
		u.mu.Unlock()
		return nil
	})
}

// putPack uploads a pack, then its index (a pack without an index is not
// seen by anyone; gc deletes it after the grace period).
func (b *Bucket) putPack(pack string, buf []byte, ls []loc) error {
	if err := b.put("packs/"+pack, buf); err != nil {
		return err
	}
	return b.put("index/"+pack, b.o.Keys.Seal(nil, []byte("index/"+pack), encodeIndex(ls)))
}

func (u *uploader) finish() error {
	u.flush()
	return u.g.Wait()
}

func (u *uploader) abort() { u.g.Wait() }

// Read reads chunks from their packs: neighbouring blobs of a pack in one
// ranged GET, several GETs at once.
func (b *Bucket) Read(ids []chunkstore.ID, fn func(transfer.Chunk) error) error {
	const batch = 1024
	for len(ids) > 0 {
		n := min(len(ids), batch)
		got, err := b.readBatch(ids[:n])
		if err != nil {
			return err
		}
		for i, id := range ids[:n] {
			if err := fn(transfer.Chunk{ID: id, Data: got[i]}); err != nil {
				return err
			}
		}
		ids = ids[n:]
	}
	return nil
}

// span is a byte range of a pack and the chunks in it.
type span struct {
	pack     string
	off, end uint32
	idx      []int
}

func (b *Bucket) readBatch(ids []chunkstore.ID) ([][]byte, error) {
	locs := make([]loc, len(ids))
	b.mu.Lock()
	stale := false
	for i, id := range ids {
		l, ok := b.loc[b.o.Keys.Name(id)]
		if !ok {
			stale = true
			break
		}
		locs[i] = l
	}
	b.mu.Unlock()
	if stale {
		if err := b.refresh(); err != nil {
			return nil, err
		}
		b.mu.Lock()
		for i, id := range ids {
			l, ok := b.loc[b.o.Keys.Name(id)]
			if !ok {
				b.mu.Unlock()
				return nil, fmt.Errorf("%s: chunk %v: %w", b.What, id, chunkstore.ErrNotFound)
			}
			locs[i] = l
		}
		b.mu.Unlock()
	}
	order := make([]int, len(ids))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool {
		a, c := locs[order[i]], locs[order[j]]
		if a.pack != c.pack {
			return a.pack < c.pack
		}
		return a.off < c.off
	})
	var spans []*span
	for _, i := range order {
		l := locs[i]
		if s := last(spans); s != nil && s.pack == l.pack && l.off <= s.end+64<<10 && l.off+l.len-s.off <= 8<<20 {
			s.end = max(s.end, l.off+l.len)
			s.idx = append(s.idx, i)
			continue
		}
		spans = append(spans, &span{pack: l.pack, off: l.off, end: l.off + l.len, idx: []int{i}})
	}
	out := make([][]byte, len(ids))
	var g errgroup.Group
	g.SetLimit(8)
	for _, s := range spans {
		g.Go(func() error {
			data, err := b.get("packs/"+s.pack, int64(s.off), int64(s.end-s.off))
			if err != nil {
				return err
			}
			for _, i := range s.idx {
				l := locs[i]
				lo, hi := l.off-s.off, l.off-s.off+l.len
				if int(hi) > len(data) {
					return fmt.Errorf("%s: pack %s is shorter than its index says: %w", b.What, s.pack, chunkstore.ErrCorrupt)
				}
				c, err := b.openBlob(l.name, data[lo:hi], ids[i])
				if err != nil {
					return fmt.Errorf("%s: pack %s: %w", b.What, s.pack, err)
				}
				out[i] = c
			}
			return nil
		})
	}
	return out, g.Wait()
}

func last(s []*span) *span {
	if len(s) == 0 {
		return nil
	}
	return s[len(s)-1]
}

// openBlob decrypts, decodes and verifies one blob.
func (b *Bucket) openBlob(n Name, sealed []byte, id chunkstore.ID) ([]byte, error) {
	plain, err := b.open(fmt.Sprintf("(a blob of chunk %v)", id), n[:], sealed)
	if err != nil {
		return nil, err
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("chunk %v: %w", id, chunkstore.ErrCorrupt)
	}
	data := plain[1:]
	switch plain[0] {
	case 0:
	case 1:
		if data, err = s2.Decode(nil, data); err != nil {
			return nil, fmt.Errorf("chunk %v: %w", id, chunkstore.ErrCorrupt)
		}
	default:
		return nil, fmt.Errorf("chunk %v: codec %d: %w", id, plain[0], chunkstore.ErrCorrupt)
	}
	if chunkstore.Sum(data) != id {
		return nil, fmt.Errorf("chunk %v: %w (its content does not hash to its id)", id, chunkstore.ErrCorrupt)
	}
	return data, nil
}

// Hosts returns the hosts that pushed files.
func (b *Bucket) Hosts() ([]string, error) {
	objs, err := b.list("files/")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for o := range objs {
		h, _, _ := strings.Cut(o, "/")
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	sort.Strings(out)
	return out, nil
}
