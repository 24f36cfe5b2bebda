// Package transfer copies files between stores so that only the chunks
// the destination lacks travel, plus each file's manifest (package
// index/manifest), delta-encoded against a file both sides hold.
//
// A Peer is one side: a store opened here (Local), a store at the other end
// of a byte stream (Dial, spoken by Serve: over ssh to `ckptfs serve`, or
// to a mounted store's daemon over its control socket), or an object store
// bucket (package chunkstore/bucket). Copy moves files from one to another.
//
// What a transfer guarantees: each chunk that arrives is re-hashed and must
// match its id; each manifest decodes only if its digest matches; a file
// appears at the destination only whole, renamed from a staging name once
// its content is committed, and files the destination had stay readable
// throughout. An interrupted transfer leaves the chunks the destination
// committed (until its gc takes them, they are not sent again) and the
// files it finished; running it again sends the rest. With Options.Prune,
// a copy also removes the destination's files that the source expired,
// each only if it is still the version listed, and only after every file
// was copied.
package transfer

import (
	"errors"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index/manifest"
)

// File is what a listing says of a file.
type File struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Mode  uint32 `json:"mode"`
	// UUID and Name are the guest of an xl save image.
	UUID string `json:"uuid,omitempty"`
	Name string `json:"name,omitempty"`
	// Host is the host that pushed the file (a bucket's listing only).
	Host string `json:"host,omitempty"`
}

// Same reports whether f and g are the same version of a file, by the quick
// check rsync uses: path, size and modification time.
func (f File) Same(g File) bool { return f.Path == g.Path && f.Size == g.Size && f.Mtime == g.Mtime }

// Chunk is one chunk's plain content.
type Chunk struct {
	ID   chunkstore.ID
	Data []byte
}

// Peer is one side of a transfer.
type Peer interface {
	// List returns every regular file.
	List() ([]File, error)
	// Manifest returns the manifest of the file at path.
	Manifest(path string) (*manifest.Manifest, error)
	// Read calls fn with each chunk of ids, in the order of ids.
	Read(ids []chunkstore.ID, fn func(Chunk) error) error
	// Missing returns the ids of ids that the peer does not store.
	Missing(ids []chunkstore.ID) ([]chunkstore.ID, error)
	// Apply makes m a file of the peer. base (nil for none) is the
	// sender's manifest of a file the peer holds at base.Path, which m
	// may be delta-encoded against; missing are the chunks m uses that the
	// peer lacks, which next returns in that order.
	Apply(m, base *manifest.Manifest, missing []chunkstore.ID, next func() (Chunk, error)) error
	// Remove removes the file f names if it is still that version of
	// the file (File.Same): a file changed since the listing is left
	// alone (ErrChanged), one gone already is ErrNotFound.
	Remove(f File) error
	Close() error
}

// ErrChanged is Remove's error when the file at the path is no longer the
// version the listing named.
var ErrChanged = errors.New("the file changed since it was listed")

// ErrBaseMismatch is Apply's error when the base file's manifest at the
// destination is not the one the delta was encoded against: the sender
// retries without a base.
var ErrBaseMismatch = errors.New("the base file differs at the destination")

// ErrNotFound is returned for a path the peer does not have.
var ErrNotFound = errors.New("no such file")

// ErrRetry is Apply's error when the file can be applied if sent again
// (a bucket's gc marked a pack it relied on while it was sent).
var ErrRetry = errors.New("send the file again")
