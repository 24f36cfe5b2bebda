// Package lineage stores xl save images page by page into their guest's
// lineage, and keeps the lineages: each guest's generations, their page
// maps and the guest record of each image, in the index's database beside
// the namespace, under the key prefixes the index leaves to its extension
// (index.ExtensionPrefixes). Keys is that extension: index.Open has it
// upgrade and recover these keys, and purging an image marks its
// generation dead in the same batch. Of gives the lineages of an open
// index (Maps): generations (BeginGen, EndGen), page map writers and
// readers, gc's reclaim of dead generations and its mark, the guest
// records.
//
// Image is the content engine's page hook (content.Pages) for one file
// being written: it follows the stream with xen.Scanner, names where each
// page payload starts so that the engine cuts every page as a chunk of its
// own, and records each page in the file's generation (an entry of the
// page map if it differs from the base generation, a slot of a page run in
// any case). The engine reads page runs back through Maps.ResolveRun
// (content.Config.Runs); it knows no pfn.
//
// # Glossary
//
//	lineage, lin     the xl save images of one guest (domain UUID): they
//	                 share one page map
//	generation, gen  one image of a lineage (Gen; its number is
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
//	mark             gc's pass over the page maps that finds which
//	                 candidates a page entry still names
//
// # Keys and values, format version 5
//
// Integers in keys are big-endian, so keys sort numerically. ino, lin
// (lineage), gen (generation), blk (block) and pfn are 8 bytes. ^gen is
// gen with all bits flipped, so a block's generations sort newest first.
//
//	key                                  value
//	-----------------------------------  ------------------------------------------
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
//
// Numbers of lineages and generations come from the index's counter of
// inodes and versions ("mnextino"), in the batch that uses them
// (index.Index.Txn).
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
//	entry: uvarint(pfn - previous pfn; the first: pfn - blk*1024) |
//	       flags (1 byte) | [id (32)] | [uvarint(len) | hint] | [tag (16)]
//
//	flags  bit  what follows
//	-----  ---  ------------------------------------------------------------
//	0      -    nothing: an all-zero page
//	chunk  0x1  id (32): the page's chunk; every non-zero entry has it
//	hint   0x2  uvarint(len) | chunkstore Hint: where the chunk's record
//	            was when the entry was written
//	tag    0x4  the page's keyed tag (chunkstore.Tag, 16): a later page of
//	            the pfn with the same tag is unchanged (no BLAKE3)
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
// entry replaced. a writable open (Keys.Recover) ends an in-flight
// generation with ino 0 as dead (no file names it), and gc reclaims its entries.
//
// # Versions
//
// Versions 2 and 3 kept a key per page entry ('P' | lin | pfn | ^gen ->
// id [| Hint], empty for a zero page) and a by-generation key per entry
// ('Q' | lin | gen | pfn). The first read-write open converts them to
// blocks (Keys.Upgrade), one (lineage, block) per batch that writes its
// blocks and deletes its keys, so an interrupted upgrade goes on where it
// stopped; the index then deletes the entries' reference keys and records
// the version. A read-only open of such a store reads the old keys as they
// are (Maps of a format below 4). Versions 4 and 5 are the tables above.
package lineage
