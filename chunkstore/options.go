package chunkstore

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures Open.
type Options struct {
	// FS is the filesystem Pebble runs on; nil means the real disk.
	FS vfs.FS
	// Codec compresses new chunks. Existing chunks keep theirs.
	Codec Codec
	// ValueSeparation stores chunk values in Pebble blob files so that
	// compactions move keys, not chunk bytes.
	ValueSeparation bool
	// ReadOnly opens the store read-only.
	ReadOnly bool
	// CacheBytes is Pebble's block cache size; MemTableBytes its memtable size.
	CacheBytes, MemTableBytes int64
	// TableBytes, if set, is the target size of Pebble's tables at every
	// level (Pebble's defaults otherwise; tests make many small tables).
	TableBytes int64
	// Logger receives Pebble's messages; nil discards informational ones.
	Logger pebble.Logger
	// AllowLost opens a writable store that lost durable writes (see
	// DurableFile) instead of failing with *LostWrites: for fsck, which
	// reports it and, repairing, accepts the loss. A read-only open always
	// succeeds and reports it through Lost.
	AllowLost bool
	// NoKnownFilter turns off the in-memory filter of stored chunk ids
	// (see known): every dedup check of a new chunk asks Pebble. For
	// benchmarks that measure the filter.
	NoKnownFilter bool
	// NoJournal keeps no journal (see doc.go): Pebble recycles and
	// deletes its logs, as format 4 did. For benchmarks that measure what
	// the journal costs; a store written so cannot be rebuilt.
	NoJournal bool
}

// DefaultOptions are the options ckptfs mounts with. See the README for the
// measurements behind them. Start from them and change what you need:
// Codec and ValueSeparation have no "unset" value (CodecRaw and false are
// choices), so only the sizes are filled in by EnsureDefaults.
func DefaultOptions() Options {
	return Options{Codec: CodecS2, ValueSeparation: true, CacheBytes: 32 << 20, MemTableBytes: 32 << 20}
}

// EnsureDefaults returns o with each zero size (CacheBytes,
// MemTableBytes) set to DefaultOptions', as Pebble's Options.EnsureDefaults
// does: setting one field never drops the others' defaults.
func (o Options) EnsureDefaults() Options {
	d := DefaultOptions()
	if o.CacheBytes <= 0 {
		o.CacheBytes = d.CacheBytes
	}
	if o.MemTableBytes <= 0 {
		o.MemTableBytes = d.MemTableBytes
	}
	return o
}
