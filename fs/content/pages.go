package content

import (
	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// PageSize is the size of a memory page. A chunk of this size that a page
// hook names is a page: it gets the store's keyed tag (chunkstore.PageTag),
// which proves a later page equal to it without hashing.
const PageSize = 4096

// Pages is the page hook: it stores a file that is a memory image page by
// page (package xen/lineage makes one for a file that streams in as an
// xl save image). The engine asks the config's Pages for one when a file
// is written from offset 0, passes it the streamed bytes in order, cuts
// each page payload it names as a chunk of its own, and hands each such
// chunk to Record instead of making an extent of it. Everything else
// about the file (the bytes between pages, rewrites, truncation, commits)
// stays the engine's. Calls come from the file's writer only; the
// lookup Base returns runs in a background job until the next Record.
type Pages interface {
	// Follow starts following a stream from offset 0.
	Follow()
	// Stop stops following (the stream was rewritten, or has a gap the
	// hook never saw). What was recorded stays.
	Stop()
	// Following reports whether the stream is followed.
	Following() bool
	// Write passes the stream's next bytes.
	Write(p []byte)
	// Starts returns the starts of the known page payloads that end
	// after off, ascending; the engine asks about nothing before off
	// again.
	Starts(off int64) []int64
	// Base returns a copy of the starts Starts(off) would return (and
	// forgets nothing) and, if the hook compares pages with a base
	// image, the base's page for the i-th of them. Background jobs call
	// lookup, several at once and while the engine calls Record.
	Base(off int64) (starts []int64, lookup func(i int) (index.PageRef, bool, error))
	// Record records the page at off of file version ver: false if off
	// is not a page the hook records (the engine makes it an extent).
	// compared says the engine compared it with the base (same: equal).
	Record(b *chunkstore.Batch, ver uint64, off int64, ref index.PageRef, compared, same bool) (bool, error)
	// Flush adds what Record collected to b, as extents of version ver.
	Flush(b *chunkstore.Batch, ver uint64) error
	// Committed is called once the file is committed at size, its writer
	// having added newBytes of chunks; it reports whether the file is a
	// whole memory image.
	Committed(size, newBytes int64) (bool, error)
	// Close ends the hook: what was recorded and never committed goes to
	// gc.
	Close()
}
