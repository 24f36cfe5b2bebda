// Package chunkstore keeps content-defined chunks in Pebble, named by the
// BLAKE3-256 hash of their plain content and stored once.
//
// # On-disk format, version 2
//
// One Pebble database holds a whole store: chunks (this package) and the
// namespace and extents (package index). Keys start with a one-byte prefix
// that names their owner. Prefixes, codec bytes and layouts below are part
// of the format: never change or reuse one without bumping FormatVersion.
//
//	prefix  owner       key                          value
//	------  ----------  ---------------------------  -------------------------------
//	0x00    chunkstore  "\x00format"                 "ckptfs <version>" (ASCII)
//	0x00    chunkstore  "\x00durable"                durable commits so far (8, BE); see DurableFile
//	'c'     chunkstore  'c' | id (32 bytes)          chunk value (below)
//	'd'     index       see package index             directory entry
//	'e'     index       see package index             extent
//	'i'     index       see package index             inode
//	'm'     index       see package index             counters
//	'o'     index       see package index             orphan marker
//	's'     index       see package index             staging marker
//	'x'     index       see package index             xl save image info
//	'l' 'L' index       see package index             lineages, generations
//	'P' 'Q' index       see package index             page entries
//	'r'     index       see package index             chunk references
//	'g'     index       see package index             gc candidates
//	'y'     index       see package index             image -> generation
//
// Beside Pebble's files the store directory holds CKPTFS-DURABLE (the
// durable marker: DurableFile), CKPTFS-RESERVE (space kept free for gc:
// ReserveFile) and, while mounted, the control socket ckptfs.sock. The
// durable key and the two files came after format version 2 was set;
// they are optional (a store without them opens, and gets them on its
// first read-write open), so the version did not change.
//
// A chunk value:
//
//	+-------+-----------------------+---------------------------+
//	| codec | uvarint(plain length) | payload                   |
//	| 1 B   | 1-10 B                | codec-specific            |
//	+-------+-----------------------+---------------------------+
//
//	codec 0  raw    payload is the plain chunk
//	codec 1  s2     payload is one S2 block (klauspost/compress/s2)
//	codec 2  zstd   payload is one zstd frame (klauspost/compress/zstd)
//
// A chunk is compressed with the store's codec (s2 by default) unless that
// saves less than 1/16 of its size; then it is stored raw. Chunks are at
// most MaxChunkSize bytes. All-zero chunks are never stored: the index
// records a hole instead.
//
// Version 2 added the index's page maps and chunk references; a version 1
// store opens, and package index upgrades it on the first read-write open.
// Opening a store whose format key holds another version fails with
// ErrFormat; a database without the key, or a non-empty directory that is
// not a Pebble database, fails with ErrNotStore.
//
// # Invariants
//
// Every read re-hashes the decoded chunk: a mismatch or a decode failure is
// ErrCorrupt, and no bytes are returned with it.
//
// Chunks are written in the same or an earlier Pebble batch than the
// extents that name them, and Pebble's WAL applies batches in order, so
// after a crash every extent's chunk exists; the crash can leave only
// chunks nobody references, which fsck --repair removes. Writers pin the
// chunks they are about to reference (Prepare) until their batch is applied;
// Sweep, under the same lock, deletes only unpinned chunks, so gc never
// races a writer that deduplicates against a chunk it is deleting. The store
// remembers recently put chunk IDs (so that a stream's repeats are encoded
// once); Delete forgets them, so a collected chunk is written again when it
// reappears.
package chunkstore
