// Package index keeps the namespace (directories, regular files, symlinks,
// hard links, FIFOs, sockets and device nodes, and their attributes) and each file's extents in the store's Pebble
// database, next to the chunks (see package chunkstore for the store-wide
// key prefixes and the format version key).
//
// # Glossary
//
//	inode, ino       a file, directory, symlink, ... and its number
//	version, ver     one content of a file: extents are per version; a
//	                 write that would change committed bytes makes a new
//	                 (staged) version, and Commit makes it the file's
//	extent           file bytes [off, off+len) = bytes of one chunk (or a
//	                 page run)
//	lineage, lin     the xl save images of one guest (domain UUID): they
//	                 share one page map
//	generation, gen  one image of a lineage (index.Gen; its number is
//	                 Num): its page entries, and a state (in flight,
//	                 live, dead)
//	floor            the oldest generation a lookup at a generation sees;
//	                 a full generation's floor is itself
//	base             the generation a new one compares its pages with;
//	                 base floor, the base's floor
//	delta chain      the generations with one floor: each has entries only
//	                 for pages that differ from the one before
//	full generation  one with an entry for every page of its image (the
//	                 first of a chain; written every FullEvery)
//	page run         an extent that names pages by pfn, resolved through
//	                 the lineage's page map at its generation
//	page entry       a generation's page of one pfn: a chunk (id, hint,
//	                 tag) or all zero
//	block            a generation's entries for 1024 pfns, one Pebble key
//	hint             where a chunk's record was when an entry was written
//	tag              a page's keyed 128-bit hash (chunkstore.Tag): proof
//	                 that a later page of the pfn is unchanged
//	heir             the next live generation of a dead one's chain: gc
//	                 moves the entries it still sees into it
//	candidate        a chunk that lost a reference: gc's sweep looks at it
//	mark             gc's pass over the page maps that finds which
//	                 candidates a page entry still names
//	staged, orphan   a version not committed yet; an inode with no name,
//	                 purged when closed
//	epoch            not a generation: the content engine's counter
//	                 (fs/content Store.NewEpoch) that a reader's cached
//	                 extents carry; a changed version gets a new one
//	key field        a big-endian uint64 after a key's prefix byte:
//	                 keyLen(n) is a key of n fields, field(k, i) reads one
//
// Words that meant two things elsewhere, each kept to one:
//
//	collect          gc only: dead generations reclaimed and unreferenced
//	                 chunks swept (gc.CollectWith)
//	reap             the content writer takes a finished job's chunks
//	                 into its batch, in order
//	prepare          a writer's job dedups and compresses its chunks
//	beforeMutate     the writer finishes its jobs and cut before a
//	                 mutation that touches bytes they cover
//	putRef           the writer maps file bytes to a chunk or page entry
//	record           chunkstore only: one chunk's bytes in a segment
//	Store            chunkstore.Store holds chunks; content.Store is the
//	                 engine over it; fs.Store is an open store (fs.Open:
//	                 both plus the index); daemon.Store is a store as a
//	                 command reaches it, mounted or not
//
// # Keys and values, format version 4
//
// Integers in keys are big-endian, so keys sort numerically. ino, ver,
// lin (lineage), gen (generation) and pfn are 8 bytes; off is a file offset
// (8 bytes); id is a chunk's 32-byte BLAKE3-256. ^gen is gen with all bits
// flipped, so a pfn's entries sort newest first.
//
//	key                                  value
//	-----------------------------------  ------------------------------------------
//	'i' | ino                            inode (below)
//	'd' | parent ino | name              child ino (8, BE) | mode (4, BE)
//	'e' | ino | ver | off                chunk extent: uvarint(len) |
//	                                     uvarint(chunk off) | id (32), or
//	                                     page run: 0x00 | uvarint(len) |
//	                                     uvarint(run off) | uvarint(lin) |
//	                                     uvarint(gen) | uvarint(floor) |
//	                                     uvarint(n) | n x (uvarint(first pfn) |
//	                                     uvarint(count))
//	's' | ino | ver                      empty: version ver of ino is staged
//	'o' | ino                            empty: ino has no name; purge when closed
//	'x' | ino                            uvarint(len) uuid | uvarint(len) name |
//	                                     uvarint(chunk bytes the file added)
//	                                     [| uvarint(page entries it wrote)]:
//	                                     ino is an xl save image of guest uuid
//	                                     (the last field is optional; absent
//	                                     reads as 0, unknown)
//	'l' | uuid                           lin (8, BE): the lineage of guest uuid
//	'L' | lin | gen                      state (1: in flight, 2: live, 3: dead) |
//	                                     uvarint(floor) | uvarint(ino)
//	                                     [| uvarint(base floor), if not floor]
//	'B' | lin | blk | ^gen               page block: gen's entries for pfns
//	                                     blk*1024 .. blk*1024+1023 (below)
//	'G' | lin | gen | blk                empty: gen has a block blk
//	'y' | ino | lin | gen                empty: ino's image holds generation gen
//	'r' | id | 'e' | ino | ver | off     empty: an extent references chunk id
//	'g' | id                             empty: id lost a reference; gc checks it
//	"mnextino"                           next free inode/version/lineage/generation
//	                                     number (8, BE)
//
// An inode value, 56 fixed bytes then the symlink target (for a
// character or block device, its device number instead: rdev u32; other
// inodes have nothing there):
//
//	mode u32 | uid u32 | gid u32 | nlink u32 | size i64 | ver u64 |
//	atime i64 | mtime i64 | ctime i64 | target (rest of the value) or rdev u32
//
// A file with several names (hard links) has one dirent per name, all with
// its ino, and nlink counts them; its inode goes when the last name does.
//
// Times are nanoseconds since the Unix epoch. The root directory is inode 1.
//
// # Extents and versions
//
// A file's content is the extents of its content version ver, ordered by
// offset and disjoint: extent (off, len, chunk off, id) says file bytes
// [off, off+len) are chunk id's bytes [chunk off, chunk off+len). Bytes no
// extent covers read as zero (holes and all-zero chunks). A reader finds
// the extent for an offset with one seek (SeekLT of the offset + 1), which
// is a binary search in Pebble's sorted keys, and keeps a window of
// extents in memory for the following reads.
//
// # Page maps: xl save images as deltas
//
// In page mode each page payload of an xl save image is a chunk, and the
// image's extents name pages by pfn (page runs) rather than by chunk. A
// guest's images (a lineage, keyed by the domain UUID) share one page map:
// generation gen has entries only for the pfns whose page differs from its
// base generation (the lineage's newest, if that one is live when gen
// starts; else gen is full and its floor is itself). A lookup of pfn at gen
// sees the newest entry of pfn from a generation in [floor, gen].
//
// Entries are kept in blocks of 1024 pfns (BlockPages): one key per
// generation and block it has entries in, never a key per page. A block's
// value, pfns ascending:
//
//	uvarint(n) | n x entry
//	entry: uvarint(pfn - previous pfn; the first: pfn - blk*1024) | kind |
//	       kind 0: nothing (an all-zero page)
//	       kind 1: id (32)
//	       kind 2: id (32) | uvarint(len) | chunkstore Hint (where the
//	               chunk's record was when the entry was written)
//
// A reader (PageReader) merges the blocks of a pfn's block from gen down
// to the floor, newest first, into a table of the block's 1024 pages, and
// answers every lookup in that block from it: a checkpoint's restore
// reads its map block by block, in pfn order. So that this walk stays
// short, the generation after FullEvery (16) deltas of one chain is
// written full: an entry for every page of its image (unchanged ones
// copied from its base, which it still compares with: its record keeps
// the base's floor), and its floor is itself. A chain's blocks cost about
// 40 bytes per page entry; a full map every 16 generations costs 1% of
// the image's pages' size once per 16 checkpoints.
//
// A writer (PageWriter) adds a generation's entries to the batch that
// stores their chunks; they are encoded into blocks when the batch
// commits (chunkstore.Batch.OnCommit, when the chunks' places are known),
// merged into the block an earlier batch of the same generation wrote. A
// pfn put again replaces its entry, and the replaced chunk becomes a gc
// candidate.
//
// Deleting an image marks its generation dead. gc (ReclaimGen) then moves
// each of its entries that the next live generation of the same delta chain
// still sees into that generation's block, and drops the others, making
// their chunks candidates; one batch per block, so it is crash-safe and
// can be redone. A generation still being written (in flight) holds gc back
// for the dead generations of its chain before it, and so does a full
// generation in flight for the chain it copies from.
//
// A receiver (xen receive) begins a checkpoint's generation at its first
// page, before the image's file exists: its 'L' value's ino is 0 and it
// has no 'y' key until Publish creates the file (AdoptGen). Its entries
// are written as pages arrive; a pfn sent twice in one checkpoint has its
// entry replaced. Open ends an in-flight generation with ino 0 as dead
// (no file names it), and gc reclaims its entries.
//
// # References and garbage collection
//
// Every chunk extent has an 'r' key under its chunk, written and deleted
// in the same batch as the extent. Page entries have none (a key per page
// was most of what ingesting a page cost in format 3): gc finds which
// candidates a page still names by one pass over the page map blocks
// (PageReferenced), the mark of a mark and sweep. A reference that goes
// (an extent, a page entry dropped or replaced) makes the chunk a
// candidate ('g'). gc deletes a candidate that no extent and no page
// entry names and that no writer has pinned since the mark began
// (chunkstore.Store.BeginMark, Sweep): a writer pins a chunk before it
// references it, so a reference committed after the mark's snapshot is
// one whose chunk was pinned. The sweep's work is proportional to the
// candidates; the mark's to the page maps (one pass per 256 Ki
// candidates).
//
// # Versions
//
// Version 1 (no 'r', 'g', 'l', 'L', 'y' keys, no page runs) is upgraded
// in place by the first read-write Open: it writes the 'r' keys of every
// extent. Versions 2 and 3 kept a key per page entry ('P' | lin | pfn |
// ^gen -> id [| Hint], empty for a zero page), a by-generation key per
// entry ('Q' | lin | gen | pfn) and a reference key per entry ('r' | id |
// 'p' | lin | pfn | gen); the first read-write Open converts them to blocks,
// one (lineage, block) per batch that writes its blocks and deletes its
// keys, so an interrupted upgrade goes on where it stopped; then the
// version. A read-only open reads the old keys as they are.

// # Commit order
//
// Writes that would change bytes a file has committed go to a new version
// marked staged ('s' key); Commit writes the inode with the new ver and
// size, deletes the old version's extents (one range deletion) and the
// staging marker, in one synced batch. Until then the old version is what
// readers and a post-crash mount see. Open deletes every staged version
// (its writer never committed) and purges every orphan. Appends past the
// committed size may go into the committed version in place: they are
// invisible until Commit raises the size, and a new writer first drops
// extents past the committed size that a crash may have left.
//
// # Staging names
//
// A name that starts with StagingPrefix (".ckptfs-staging.") is a file
// still being built: receive.Publisher builds each generation `xen
// receive` publishes under StagingPrefix+name and renames it into place in
// one batch. The keys are the ordinary ones; the FUSE layer hides such
// names from lookup and readdir and refuses them as new names, so a
// generation appears whole or not at all. Open removes any that a crash
// left mid-build.
//
// # Durability
//
// Commit (a file's close or fsync) and Sync (fsync of a directory, a
// published generation, the end of gc, and the mount's once-a-second
// sync of pending changes) are durable commits: they go through the
// function SetDurable installs, chunkstore's CommitDurable, which keeps
// the store's durable marker. Every other namespace batch (create,
// rename, unlink, setattr, link) is applied without waiting for the disk
// and becomes durable with the next durable commit, Pebble's log being
// ordered.
package index
