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
//	page run         an extent that names pages of an xl save image by
//	                 pfn, resolved through its guest's page map
//	                 (xen/lineage keeps the lineages, generations and
//	                 page maps; its doc has their glossary)
//	candidate        a chunk that lost a reference: gc's sweep looks at it
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
// # Keys and values, format version 5
//
// Integers in keys are big-endian, so keys sort numerically. ino, ver,
// lin (lineage), gen (generation) are 8 bytes; off is a file offset (8
// bytes); id is a chunk's 32-byte BLAKE3-256. The keys under
// ExtensionPrefixes belong to the Extension Open is given (xen/lineage,
// whose doc has their table); the index never writes there, but hands the
// extension its batches: deleting an image and ending its generation are
// one batch (Extension.Purge).
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
//	'r' | id | 'e' | ino | ver | off     empty: an extent references chunk id
//	'g' | id                             empty: id lost a reference; gc checks it
//	"mnextino"                           next free inode/version/lineage/generation
//	                                     number (8, BE)
//	'l' 'L' 'B' 'G' 'y' 'x' ('P' 'Q')    the lineages' keys: package xen/lineage
//	                                     (ExtensionPrefixes)
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
// # References and garbage collection
//
// Every chunk extent has an 'r' key under its chunk, written and deleted
// in the same batch as the extent. Page entries have none (a key per page
// was most of what ingesting a page cost in format 3): gc finds which
// candidates a page still names by one pass over the page map blocks
// (xen/lineage Maps.PageReferenced), the mark of a mark and sweep. A reference that goes
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
// extent. Versions 2 and 3 kept a reference key per page entry ('r' | id |
// 'p' | lin | pfn | gen); the first read-write Open has the extension
// convert the entries themselves (xen/lineage: to blocks), then deletes
// those reference keys, then records the version; each step is redone by
// the next Open if a crash cut it short. Version 5 changed only
// chunkstore's files (the journal). A read-only open reads the old keys
// as they are.

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
