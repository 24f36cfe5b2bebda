package index

import (
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// AddExtent records e in content version ver of inode ino, in b. The caller
// guarantees that no extent of that version overlaps e (appends past the
// end of everything staged so far).
func (x *Index) AddExtent(b *pebble.Batch, ino, ver uint64, e Extent) error {
	return putExtent(b, ino, ver, e)
}

// Overlay records e in version ver, trimming or deleting the extents it
// overlaps. It reads the database, so the caller's earlier batches for this
// version must be applied.
func (x *Index) Overlay(b *pebble.Batch, ino, ver uint64, e Extent) error {
	if err := x.Punch(b, ino, ver, e.Off, e.End()); err != nil {
		return err
	}
	return x.AddExtent(b, ino, ver, e)
}

// Punch removes file bytes [from, to) from version ver: they read as zero.
// Like Overlay, it reads the database.
func (x *Index) Punch(b *pebble.Batch, ino, ver uint64, from, to int64) error {
	if from >= to {
		return nil
	}
	p := extentPrefix(ino, ver)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	// The extent starting before from may cover it.
	ok := it.SeekLT(extentKey(ino, ver, from))
	if !ok {
		ok = it.First()
	}
	for ; ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		e, err := DecodeExtent(it.Key(), v)
		if err != nil {
			return err
		}
		if e.Off >= to {
			break
		}
		if e.End() <= from {
			continue
		}
		if err := delExtent(b, ino, ver, e); err != nil {
			return err
		}
		if e.Off < from {
			l := e
			l.Len = from - e.Off
			if err := x.AddExtent(b, ino, ver, l); err != nil {
				return err
			}
		}
		if e.End() > to {
			r := e
			r.Off = to
			r.Len = e.End() - to
			r.ChunkOff = e.ChunkOff + (to - e.Off)
			if err := x.AddExtent(b, ino, ver, r); err != nil {
				return err
			}
		}
	}
	return it.Error()
}

// TruncateExtents drops every byte of version ver at or past size.
func (x *Index) TruncateExtents(b *pebble.Batch, ino, ver uint64, size int64) error {
	return x.Punch(b, ino, ver, size, math.MaxInt64)
}

// Extents returns up to n extents of version ver that end after off, in
// offset order.
func (x *Index) Extents(ino, ver uint64, off int64, n int) ([]Extent, error) {
	p := extentPrefix(ino, ver)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	ok := it.SeekLT(extentKey(ino, ver, off+1))
	if !ok {
		ok = it.First()
	}
	var out []Extent
	for ; ok && len(out) < n; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		e, err := DecodeExtent(it.Key(), v)
		if err != nil {
			return nil, err
		}
		if e.End() <= off {
			continue
		}
		out = append(out, e)
	}
	return out, it.Error()
}

// WalkExtents calls fn for every extent of version ver in offset order.
func (x *Index) WalkExtents(ino, ver uint64, fn func(Extent) error) error {
	p := extentPrefix(ino, ver)
	return x.scan(p, func(k, v []byte) error {
		e, err := DecodeExtent(k, v)
		if err != nil {
			return err
		}
		return fn(e)
	})
}

// Stage starts a new content version of ino in b and returns its number. If
// copyFrom is non-zero, the extents of that version below limit are copied
// into it. Until Commit, the new version is marked as staging, and Open
// deletes it after a crash.
func (x *Index) Stage(b *pebble.Batch, ino, copyFrom uint64, limit int64) (uint64, error) {
	x.mu.Lock()
	ver := x.allocLocked(b)
	x.mu.Unlock()
	if err := b.Set(stagingKey(ino, ver), nil, nil); err != nil {
		return 0, err
	}
	if copyFrom == 0 || limit <= 0 {
		return ver, nil
	}
	err := x.WalkExtents(ino, copyFrom, func(e Extent) error {
		if e.Off >= limit {
			return nil
		}
		e.Len = min(e.Len, limit-e.Off)
		return x.AddExtent(b, ino, ver, e)
	})
	return ver, err
}

// Commit makes version ver the content of ino with the given size and
// modification time, deletes the version it replaces, and syncs. Chunks the
// version names must already be in applied batches: Pebble's WAL is ordered,
// so the synced commit makes them durable first.
func (x *Index) Commit(ino, ver uint64, size, mtime int64) (Inode, error) {
	return x.commitVersion(ino, ver, size, mtime, true)
}

// CommitUnsynced is Commit without waiting for the disk, for a caller
// whose next step is a durable commit anyway (the publisher renames the
// generation into place, then syncs).
func (x *Index) CommitUnsynced(ino, ver uint64, size, mtime int64) (Inode, error) {
	return x.commitVersion(ino, ver, size, mtime, false)
}

func (x *Index) commitVersion(ino, ver uint64, size, mtime int64, durable bool) (Inode, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	in, err := x.Get(ino)
	if err != nil {
		return in, err
	}
	b := x.db.NewBatch()
	if in.Ver != ver {
		if err := x.dropExtents(b, extentPrefix(ino, in.Ver)); err != nil {
			return in, err
		}
		b.Delete(stagingKey(ino, ver), nil)
	}
	in.Ver, in.Size = ver, size
	in.Mtime, in.Ctime = mtime, mtime
	x.putInode(b, &in)
	if !durable {
		return in, x.commit(b)
	}
	return in, x.commitDurable(b)
}
