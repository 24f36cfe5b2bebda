// Package index keeps the namespace (directories, regular files, symlinks
// and their attributes) and each file's extents in the store's Pebble
// database, next to the chunks (see package chunkstore for the store-wide
// key prefixes and the format version key).
//
// # Keys and values, format version 1
//
// Integers in keys are big-endian, so keys sort numerically. ino and ver
// are 8 bytes; off is a file offset (8 bytes).
//
//	key                                  value
//	-----------------------------------  ------------------------------------------
//	'i' | ino                            inode (below)
//	'd' | parent ino | name              child ino (8, BE) | mode (4, BE)
//	'e' | ino | ver | off                uvarint(len) | uvarint(chunk off) | id (32)
//	's' | ino | ver                      empty: version ver of ino is staged
//	'o' | ino                            empty: ino has no name; purge when closed
//	'x' | ino                            uvarint(len) uuid | uvarint(len) name |
//	                                     uvarint(chunk bytes the file added):
//	                                     ino is an xl save image of guest uuid
//	"mnextino"                           next free inode/version number (8, BE)
//
// An inode value, 56 fixed bytes then the symlink target:
//
//	mode u32 | uid u32 | gid u32 | nlink u32 | size i64 | ver u64 |
//	atime i64 | mtime i64 | ctime i64 | target (rest of the value)
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
package index
