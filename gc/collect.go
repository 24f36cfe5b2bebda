package gc

import (
	"context"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/gc/policy"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// Result is what one Collect did.
type Result struct {
	GensReclaimed int   `json:"generations_reclaimed"`
	GensWaiting   int   `json:"generations_waiting"` // a later generation of their chain is being written
	PageEntries   int   `json:"page_entries"`        // entries relabelled or dropped
	Candidates    int   `json:"candidates"`          // chunks that had lost a reference
	ChunksDeleted int   `json:"chunks_deleted"`
	StoredFreed   int64 `json:"stored_bytes_freed"`
	// Segments removed whole, rewritten (live records copied), and the
	// live bytes copied: see chunkstore.Compact.
	SegmentsRemoved   int   `json:"segments_removed"`
	SegmentsRewritten int   `json:"segments_rewritten"`
	BytesMoved        int64 `json:"bytes_moved"`
	// DeadWaiting is the freed bytes that stay on disk, in
	// DeadWaitingSegments segments under SegmentGarbage (or that found no
	// room to be rewritten); rewriting them would copy WaitingCopy bytes.
	// NoRoom says the disk had no room for some rewrites.
	DeadWaiting         int64   `json:"dead_bytes_waiting"`
	DeadWaitingSegments int     `json:"dead_waiting_segments"`
	WaitingCopy         int64   `json:"waiting_copy_bytes"`
	NoRoom              bool    `json:"no_room,omitempty"`
	DiskBefore          int64   `json:"disk_bytes_before"`
	DiskAfter           int64   `json:"disk_bytes_after"`
	Seconds             float64 `json:"seconds"`
}

// sweepBatch is how many candidates one Sweep looks at: it bounds the
// memory of a collection and how long writers' Prepare waits on it.
const sweepBatch = 1024

// markBatch is how many candidates one pass over the page maps marks: it
// bounds the mark's memory (about 100 bytes a candidate), and a store with
// more candidates pays one pass per markBatch of them.
const markBatch = 1 << 18

// SegmentGarbage is the dead fraction of a segment past which Collect
// rewrites it (policy.SegmentGarbage).
const SegmentGarbage = policy.SegmentGarbage

// settleTimeout bounds how long Collect waits for background compactions.
const settleTimeout = 30 * time.Second

// Collect reclaims what nobody references any more, online:
//
//  1. Each dead generation (its image file was purged) is reclaimed: page
//     entries the next live generation of its delta chain still sees move
//     to that generation; the others go and their chunks become
//     candidates. A generation whose successor is still being written
//     waits for the next collection.
//  2. Each candidate chunk (it lost a reference: an extent deleted, a page
//     entry dropped) is deleted unless something references it or a writer
//     has pinned it.
//  3. Segments whose records are all dead are removed; those with at least
//     SegmentGarbage of their bytes dead are rewritten (chunkstore.Compact).
//  4. With compact, the chunk and page key ranges are compacted so that
//     the space their keys took comes back to the filesystem now rather
//     than later.
//
// Its work is proportional to what was deleted since the last collection
// (the dead generations' entries and the candidates), apart from the
// compaction, which rewrites keys (not chunk values) of the compacted
// ranges. Its memory is one batch of candidates. Every step is an atomic
// batch and the work list is persistent, so a crash at any point loses
// nothing live and the next Collect finishes the job. Callers serialize
// Collect calls. Deleting writes before it frees: Collect has the store's
// reserve file (see chunkstore.ReserveFile) while it runs, so it works on
// a full disk.
func Collect(cs *chunkstore.Store, x *index.Index, compact bool) (Result, error) {
	return CollectProgress(cs, x, compact, nil)
}

// Options says how much of what a collection frees it gives back now.
type Options struct {
	// CompactKeys compacts the chunk and page key ranges (step 4).
	CompactKeys bool
	// RewriteAll rewrites every segment holding dead bytes, however few
	// (gc --compact): all of what was freed comes back now, at the price
	// of copying the segments' live records.
	RewriteAll bool
}

// CollectProgress is CollectWith with the default segment rewriting.
func CollectProgress(cs *chunkstore.Store, x *index.Index, compact bool, p Progress) (Result, error) {
	return CollectWith(cs, x, Options{CompactKeys: compact}, p)
}

// Progress is told how long work stands: phase, then done of total
// (total < 0: not known). Calls come from the working goroutine; a nil
// Progress is not called.
type Progress func(phase string, done, total int64)

func (p Progress) report(phase string, done, total int64) {
	if p != nil {
		p(phase, done, total)
	}
}

// CollectWith is Collect as o says, telling p of its phases: the dead
// generations reclaimed (of how many), the candidate chunks swept (their
// number is not known ahead), then segment compaction.
func CollectWith(cs *chunkstore.Store, x *index.Index, o Options, p Progress) (Result, error) {
	compact := o.CompactKeys
	cs.ReleaseReserve()
	defer cs.RestoreReserve()
	start := time.Now()
	r := Result{DiskBefore: int64(cs.DiskUsage())}
	maps := lineage.Of(x)
	var dead []lineage.GenRecord
	err := maps.WalkGens(func(g lineage.GenRecord) error {
		if g.State == lineage.GenDead {
			dead = append(dead, g)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	for i, g := range dead {
		p.report("reclaiming generations", int64(i), int64(len(dead)))
		done, n, err := maps.ReclaimGen(g.Lin, g.Num)
		if err != nil {
			return r, err
		}
		r.PageEntries += n
		if done {
			r.GensReclaimed++
		} else {
			r.GensWaiting++
		}
	}
	// Mark and sweep, a batch of candidates at a time: page entries keep
	// no reference keys, so one pass over the page maps (from a snapshot
	// taken after BeginMark) says which candidates a page still names;
	// chunks pinned meanwhile stay too (chunkstore.Store.BeginMark).
	var after *chunkstore.ID
	total := int64(-1) // known once a mark batch holds them all
	for {
		ids, err := x.Candidates(after, markBatch)
		if err != nil {
			return r, err
		}
		if len(ids) == 0 {
			break
		}
		if after == nil && len(ids) < markBatch {
			total = int64(len(ids))
		}
		after = &ids[len(ids)-1]
		p.report("sweeping candidate chunks", int64(r.Candidates), total)
		cs.BeginMark()
		live, err := maps.PageReferenced(ids)
		if err != nil {
			cs.EndMark()
			return r, err
		}
		for len(ids) > 0 {
			batch := ids[:min(len(ids), sweepBatch)]
			ids = ids[len(batch):]
			r.Candidates += len(batch)
			n, freed, err := cs.Sweep(batch, func(b *pebble.Batch, id chunkstore.ID, pinned bool) (bool, error) {
				if pinned {
					return false, nil // a writer is about to reference it: look again next time
				}
				ref := live[id]
				if !ref {
					var err error
					if ref, err = x.Referenced(id); err != nil {
						return false, err
					}
				}
				return !ref, index.DropCandidate(b, id)
			})
			if err != nil {
				cs.EndMark()
				return r, err
			}
			r.ChunksDeleted += n
			r.StoredFreed += freed
			p.report("sweeping candidate chunks", int64(r.Candidates), total)
		}
		cs.EndMark()
	}
	p.report("compacting segments", 0, -1)
	garbage := SegmentGarbage
	if o.RewriteAll {
		garbage = 0
	}
	cst, err := cs.Compact(garbage)
	r.SegmentsRemoved, r.SegmentsRewritten, r.BytesMoved = cst.Removed, cst.Rewritten, cst.Moved
	r.DeadWaiting, r.DeadWaitingSegments, r.WaitingCopy, r.NoRoom = cst.Waiting, cst.WaitingSegments, cst.WaitingLive, cst.NoRoom > 0
	if err != nil {
		return r, err
	}
	if compact {
		p.report("compacting keys", 0, -1)
		db := cs.DB()
		if err := db.Flush(); err != nil {
			return r, err
		}
		spans := append([][2][]byte{{{chunkstore.PrefixLoc}, {chunkstore.PrefixLoc + 1}}}, append(index.ReclaimedSpans(), lineage.ReclaimedSpans()...)...)
		for _, span := range spans {
			if err := db.Compact(context.Background(), span[0], span[1], true); err != nil {
				return r, err
			}
		}
	}
	if compact {
		// Blob files that hold deleted chunks are rewritten (or dropped) by
		// Pebble's background compactions once the compaction above
		// dropped the keys: give them a bounded while to finish.
		// Rewrites run one blob file at a time: settled is a second with
		// none in progress.
		idle := 0
		for deadline := time.Now().Add(settleTimeout); time.Now().Before(deadline) && idle < 10; {
			time.Sleep(100 * time.Millisecond)
			if cs.DB().Metrics().Compact.NumInProgress == 0 {
				idle++
			} else {
				idle = 0
			}
		}
	}
	r.DiskAfter = int64(cs.DiskUsage())
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// Repair makes every chunk that no extent references a candidate, then
// collects: the sweep deletes those no page entry names either (what a
// crash between writing a chunk and its reference leaves). Chunks a writer
// has pinned stay. It reads every chunk key and reference key and passes
// over the page maps once per markBatch candidates, so its cost grows with
// the store; plain gc does not need it.
func Repair(cs *chunkstore.Store, x *index.Index) (Result, error) {
	b := cs.DB().NewBatch()
	defer b.Close()
	err := cs.Walk(func(i chunkstore.Info) error {
		ref, err := x.Referenced(i.ID)
		if err != nil || ref {
			return err
		}
		if err := index.AddCandidate(b, i.ID); err != nil {
			return err
		}
		if b.Len() > 1<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Reset()
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return Result{}, err
	}
	return Collect(cs, x, true)
}
