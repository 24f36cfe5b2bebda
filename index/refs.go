package index

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// Holder kinds in reference keys.
const (
	holderExtent = 'e' // 'r' | id | 'e' | ino | ver | off
	holderPage   = 'p' // 'r' | id | 'p' | lin | pfn | gen (formats 2 and 3)
)

func refPrefix(id chunkstore.ID) []byte {
	k := make([]byte, 1+chunkstore.IDSize, 1+chunkstore.IDSize+holderLen)
	k[0] = prefixRef
	copy(k[1:], id[:])
	return k
}

func refKey(id chunkstore.ID, kind byte, a, b, c uint64) []byte {
	k := append(refPrefix(id), kind)
	k = binary.BigEndian.AppendUint64(k, a)
	k = binary.BigEndian.AppendUint64(k, b)
	return binary.BigEndian.AppendUint64(k, c)
}

func candidateKey(id chunkstore.ID) []byte {
	k := make([]byte, 1+chunkstore.IDSize)
	k[0] = prefixCandidate
	copy(k[1:], id[:])
	return k
}

// extentRef is the reference key of chunk extent e of version ver of ino.
func extentRef(ino, ver uint64, e Extent) []byte {
	return refKey(e.ID, holderExtent, ino, ver, uint64(e.Off))
}

// putExtent records extent e of version ver of ino and, for a chunk extent,
// its reference to the chunk.
func putExtent(b *pebble.Batch, ino, ver uint64, e Extent) error {
	if e.Run == nil {
		if err := b.Set(extentRef(ino, ver, e), nil, nil); err != nil {
			return err
		}
	}
	return b.Set(extentKey(ino, ver, e.Off), encodeExtentValue(e), nil)
}

// unref deletes chunk extent e's reference and makes its chunk a gc
// candidate, in b.
func unref(b *pebble.Batch, ino, ver uint64, e Extent) error {
	if err := b.Delete(extentRef(ino, ver, e), nil); err != nil {
		return err
	}
	return b.Set(candidateKey(e.ID), nil, nil)
}

// delExtent deletes what putExtent recorded and makes the chunk a gc
// candidate.
func delExtent(b *pebble.Batch, ino, ver uint64, e Extent) error {
	if e.Run == nil {
		if err := unref(b, ino, ver, e); err != nil {
			return err
		}
	}
	return b.Delete(extentKey(ino, ver, e.Off), nil)
}

// chunkExtents calls fn for every chunk extent (page runs name no chunk)
// under extent key prefix p, with its inode and version.
func (x *Index) chunkExtents(p []byte, fn func(ino, ver uint64, e Extent) error) error {
	return x.scan(p, func(k, v []byte) error {
		e, err := DecodeExtent(k, v)
		if err != nil || e.Run != nil {
			return err
		}
		return fn(field(k, 0), field(k, 1), e)
	})
}

// dropExtents deletes every extent under prefix p (one version, or all of
// an inode's) with their references, in b.
func (x *Index) dropExtents(b *pebble.Batch, p []byte) error {
	err := x.chunkExtents(p, func(ino, ver uint64, e Extent) error { return unref(b, ino, ver, e) })
	if err != nil {
		return err
	}
	return b.DeleteRange(p, prefixEnd(p), nil)
}

// Referenced reports whether an extent names chunk id. One seek. (Page
// entries keep no reference keys: see PageReferenced.)
func (x *Index) Referenced(id chunkstore.ID) (bool, error) {
	p := refPrefix(id)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, it.Close()
}

// WalkRefs calls fn for every chunk reference, in chunk order (an id once
// per holder).
func (x *Index) WalkRefs(fn func(id chunkstore.ID) error) error {
	return x.scan([]byte{prefixRef}, func(k, _ []byte) error {
		if len(k) != 1+chunkstore.IDSize+holderLen {
			return fmt.Errorf("%w: reference key %x", ErrCorrupt, k)
		}
		return fn(chunkstore.ID(k[1 : 1+chunkstore.IDSize]))
	})
}

// Candidates returns up to n chunks that lost a reference since gc last
// looked, starting after the given id (nil: from the start).
func (x *Index) Candidates(after *chunkstore.ID, n int) ([]chunkstore.ID, error) {
	lo := []byte{prefixCandidate}
	if after != nil {
		lo = append(candidateKey(*after), 0)
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: []byte{prefixCandidate + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []chunkstore.ID
	for it.First(); it.Valid() && len(out) < n; it.Next() {
		if len(it.Key()) != 1+chunkstore.IDSize {
			return nil, fmt.Errorf("%w: candidate key %x", ErrCorrupt, it.Key())
		}
		out = append(out, chunkstore.ID(it.Key()[1:]))
	}
	return out, it.Error()
}

// DropCandidate forgets candidate id in b.
func DropCandidate(b *pebble.Batch, id chunkstore.ID) error {
	return b.Delete(candidateKey(id), nil)
}

// AddCandidate makes id a gc candidate in b (fsck --repair uses it for
// chunks that lost their references before references were recorded).
func AddCandidate(b *pebble.Batch, id chunkstore.ID) error {
	return b.Set(candidateKey(id), nil, nil)
}

// InodeRefs calls fn for each chunk reference the extents of ino (all its
// versions) hold, with the reference's key.
func (x *Index) InodeRefs(ino uint64, fn func(id chunkstore.ID, ref []byte) error) error {
	return x.chunkExtents(binary.BigEndian.AppendUint64([]byte{prefixExtent}, ino), func(ino, ver uint64, e Extent) error {
		return fn(e.ID, extentRef(ino, ver, e))
	})
}

// RefsOf calls fn with the key of every reference to chunk id.
func (x *Index) RefsOf(id chunkstore.ID, fn func(ref []byte) error) error {
	return x.scan(refPrefix(id), func(k, _ []byte) error { return fn(k) })
}

// ReclaimedSpans are the key ranges of the index where gc deletes keys:
// references and extents (xen/lineage has its own). gc compacts them
// (with the chunk range) so that the space comes back.
func ReclaimedSpans() [][2][]byte {
	var out [][2][]byte
	for _, p := range []byte{prefixRef, prefixExtent} {
		out = append(out, [2][]byte{{p}, {p + 1}})
	}
	return out
}

// dropPageRefs deletes the reference keys of formats 2 and 3's page
// entries ('r' | id | 'p' | ...): format 4 keeps none (gc's mark walks the
// page maps instead). The upgrade runs it after the extension converted
// the entries themselves, so a crash between the two leaves only extra
// references (chunks kept a while longer), and the next open finishes.
func (x *Index) dropPageRefs() error {
	b := x.db.NewBatch()
	defer func() { b.Close() }()
	err := x.scan([]byte{prefixRef}, func(k, _ []byte) error {
		if len(k) == 1+chunkstore.IDSize+holderLen && k[1+chunkstore.IDSize] == holderPage {
			b.Delete(k, nil)
			return x.commitIfFull(&b)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}
