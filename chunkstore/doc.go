// Package chunkstore keeps content-defined chunks, named by the
// BLAKE3-256 hash of their plain content and stored once: their bytes in
// append-only segment files in the order they were written, their locators
// in Pebble.
//
// # On-disk format, version 5
//
// A store is a directory: one Pebble database holds chunk locators (this
// package) and the namespace and extents (package index); the chunks'
// bytes are records in append-only segment files beside it, in the order
// they were written. Keys start with a one-byte prefix that names their
// owner. Prefixes, codec bytes and layouts below are part of the format:
// never change or reuse one without bumping FormatVersion.
//
//	prefix  owner       key                          value
//	------  ----------  ---------------------------  -------------------------------
//	0x00    chunkstore  "\x00format"                 "ckptfs <version>" (ASCII)
//	0x00    chunkstore  "\x00durable"                durable commits so far (8, BE); see DurableFile
//	0x00    chunkstore  "\x00segdead" | seg (4, BE)  bytes of the segment's dead records (8, BE)
//	0x00    chunkstore  "\x00tagkey"                 the store's secret page tag key (32 random bytes; see Tag)
//	'C'     chunkstore  'C' | id (32 bytes)          locator (below)
//	'c'     chunkstore  'c' | id (32 bytes)          chunk value inline (versions 1 and 2 only)
//	'd'     index       see package index             directory entry
//	'e'     index       see package index             extent
//	'i'     index       see package index             inode
//	'm'     index       see package index             counters
//	'o'     index       see package index             orphan marker
//	's'     index       see package index             staging marker
//	'x'     index       see package index             xl save image info
//	'l' 'L' index       see package index             lineages, generations
//	'B' 'G' index       see package index             page map blocks (entries with a Hint)
//	'P' 'Q' index       see package index             page entries (versions 2 and 3 only)
//	'r'     index       see package index             chunk references of extents
//	'g'     index       see package index             gc candidates
//	'y'     index       see package index             image -> generation
//
// Files of the store directory:
//
//	name                    what
//	----------------------  ------------------------------------------------
//	*.sst *.log MANIFEST-*  Pebble's (tables, write-ahead log, manifest, ...)
//	OPTIONS-* marker.*
//	segments/NNNNNNNN.seg   chunk records, appended (SegmentDir; 8 decimal
//	                        digits, from 00000001; a new one past SegmentBytes)
//	segments/journal/       the journal (JournalDir, format 5; below)
//	  NNNNNN.log.zst        one of Pebble's write-ahead logs, kept once Pebble
//	                        is done with it, as one zstd stream
//	  NNNNNN.log            a second name (hard link) of a live log of Pebble's,
//	                        made when Pebble creates it, removed once it is kept
//	  dump-NNNNNN.ckd       every key of the database as of a snapshot, taken
//	                        while log NNNNNN was the newest (zstd stream)
//	damaged-TIME/           what a rebuild moved aside (Pebble's files and
//	                        the journal it read); nothing reads it again
//	CKPTFS-DURABLE          the durable marker (DurableFile)
//	CKPTFS-RESERVE          space kept free for gc (ReserveFile)
//	ckptfs.sock             the control socket, while mounted
//
// A locator (all uvarints):
//
//	+---------+------------------+------------------+
//	| segment | offset in it     | record length    |
//	+---------+------------------+------------------+
//
// A record in a segment:
//
//	+--------------+--------------------+-------+------------------------+
//	| id (32 B)    | uvarint(len value) | value | CRC-32C of all before  |
//	|              |                    |       | (Castagnoli, 4 B, LE)  |
//	+--------------+--------------------+-------+------------------------+
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
// A segment's bytes after its last record named by a locator may be a torn
// record (a crash during an append) or records of a batch that never
// committed: nothing names them, appends go on after them, and gc counts
// them only when the segment is rewritten. A Hint (kept in page entries)
// is a locator as it was when the entry was written: a reader that finds
// the right record there skips the lookup; one that does not looks up the
// locator.
//
// # The journal (format 5)
//
// A store's database is its namespace: one damaged table or a deleted
// directory of them would cost every file while every chunk byte sits
// intact in the segments. So the database is also kept in the segments'
// directory, in the journal, from which Rebuild (`ckptfs fsck --rebuild`)
// makes it again. The journal is Pebble's own write-ahead log: every batch
// anyone commits (this package's locators, package index's namespace,
// extents and page map blocks) is in it, in commit order, synced when the
// commit is. A writable open gives Pebble the ArchiveCleaner, which never
// recycles a log (so each log holds only its own batches) and hands each
// obsolete log to the store's filesystem wrapper (journalFS), which
// compresses it into the journal and removes it; a clean close does the
// same with the logs left, so after it the store's directory holds no log.
// Each live log also has a second name in the journal from its creation (a
// hard link; Pebble never rewrites a log in place without recycling), so
// a database removed after a crash is rebuilt with every synced commit.
// Keeping a log costs its compression in the background, not the write
// path.
//
// A dump bounds the journal: once the logs kept since the last dump exceed
// JournalDumpBytes (64 MiB) or the last dump's size, a background dump
// writes every key as of a snapshot, named after the newest log at the
// time, then removes the older dumps and every kept log numbered below
// it. A rebuild applies the newest dump that reads whole, then every log
// from its number on (kept ones, then live ones: their links in the
// journal, or the store's directory),
// each batch as it was committed: a batch that the dump already holds sets
// or deletes the same keys again, which ends in the same state, since
// every later batch follows in order. (That holds for Set, Delete and
// DeleteRange, the only operations the store commits: a Merge or a
// SingleDelete applied twice would not end the same.) Writing dumps costs at most what the
// logs did; the journal holds about a dump, the logs since it and the
// database's share of the last period.
//
// A dump is a zstd stream of records in Pebble's log record format
// (package record: checksummed, chunked):
//
//	record   content
//	-------  ----------------------------------------------------------
//	first    "ckptfs journal dump 1 <log number>" (ASCII)
//	middle   a Pebble batch representation setting up to 1 MiB of keys
//	last     "ckptfs journal dump end <keys>" (ASCII; a dump without it,
//	         or with another count, is cut short and not used)
//
// A rebuild reads the journal only; it builds the database in
// STORE/rebuild.tmp, moves the old database's files and the journal into
// STORE/damaged-TIME, moves the new database in, sets the durable marker
// to the rebuilt database's count, and opens the store, which writes the
// rebuilt database's first dump. A journal file that fails its checks
// (zstd's, the record checksums) is named in the report; a rebuild goes on
// past it with the next log and what it held is missing (fsck, which runs
// after the rebuild, says what that costs); a torn tail of the newest log
// is what a crash leaves and is not damage.
//
// # Versions
//
//	version  change                                              upgrade on the first read-write open
//	-------  --------------------------------------------------  -----------------------------------------------
//	1        chunks inline in Pebble ('c'), no chunk references  package index records every extent's references
//	2        index page maps and chunk references                chunks move to segments (below)
//	3        chunk bytes in segments, locators in Pebble ('C')   package index turns page keys into blocks
//	4        page maps as blocks of 1024 pfns, no page refs      the first dump is written (the journal starts)
//	5        the journal in segments/journal                     -
//
// The upgrade to 3 moves every inline value into segments, in batches that
// each write the records, add their locators and delete the inline values
// (synced), so an interrupted upgrade goes on at the next open; reads
// find a chunk either way, so a read-only open serves an old store as it
// is; it records version 3. The upgrade to 4 is package index's (page
// keys become blocks), which records the current version when done. The
// upgrade to 5 is the journal's first dump, written by every writable
// open of a store without one, before package index records the version.
// test/e2e/testdata holds a store of each old version, checked by
// every test run. Opening a store whose format key holds another version
// fails with ErrFormat; a database without the key, or a non-empty
// directory that is not a Pebble database, fails with ErrNotStore.
//
// # Invariants
//
// A read checks the record's CRC-32C and that it is the chunk's (its id):
// a mismatch, a short read or a decode failure is ErrCorrupt, and no bytes
// are returned with it. The BLAKE3 name was checked when the chunk was
// written; Verify (fsck) re-hashes every chunk, and a format 2 store's
// inline chunks are re-hashed on every read. (Re-hashing every 4 KiB page
// on every read costs 1.0 core-second per GiB on this machine, the CRC
// 0.06: BenchmarkPageCheck.)
//
// A batch (Batch, the one write transaction every writer uses) appends its
// chunk records to the active segment in one write before it commits the
// locators that name them, so a locator never names bytes not written; a
// synced commit (and every durable commit) syncs the segments first, so
// after a crash every extent's chunk exists; the crash can leave only
// chunks nobody references, which fsck --repair removes. Writers pin the
// chunks they are about to reference (Prepare) until their batch is
// applied; Sweep, under the same lock, deletes only unpinned chunks, so gc
// never races a writer that deduplicates against a chunk it is deleting.
// Sweep counts the deleted records' bytes as their segment's dead bytes;
// Compact removes a segment whose records are all dead and rewrites one
// past a threshold (its live records copied to the active segment, their
// locators committed and synced, then the file removed), so space comes
// back with work proportional to what was deleted. The store remembers
// recently put chunk IDs (so that a stream's repeats are encoded once);
// Delete forgets them, so a collected chunk is written again when it
// reappears.
package chunkstore
