package lineage

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

func FuzzDecodeBlock(f *testing.F) {
	var id chunkstore.ID
	id[5] = 7
	seed := []blockEntry{{pfn: 2048, ref: index.PageRef{Zero: true}}, {pfn: 2050, ref: index.PageRef{ID: id}},
		{pfn: 2051, ref: index.PageRef{ID: id, Tag: chunkstore.Tag{1, 2}, Tagged: true}}, {pfn: 3071, ref: index.PageRef{ID: id}}}
	f.Add(uint64(2), appendBlock(nil, 2, seed))
	f.Add(uint64(0), appendBlock(nil, 0, nil))
	f.Add(uint64(1<<54-1), []byte{1, 0xff, 0x07, 0})
	f.Fuzz(func(t *testing.T, blk uint64, v []byte) {
		k := blockKey(9, blk, 4)
		es, err := decodeBlock(k, v, nil)
		if err != nil {
			return
		}
		for i, e := range es {
			if e.pfn>>BlockShift != blk || (i > 0 && e.pfn <= es[i-1].pfn) {
				t.Fatalf("entry %d: pfn %#x outside block %d or out of order", i, e.pfn, blk)
			}
		}
		back, err := decodeBlock(k, appendBlock(nil, blk, es), nil)
		if err != nil || len(back) != len(es) {
			t.Fatalf("re-encode: %v (%d of %d entries)", err, len(back), len(es))
		}
		for i := range es {
			if back[i] != es[i] {
				t.Fatalf("re-encode: entry %d is %+v, want %+v", i, back[i], es[i])
			}
		}
	})
}

// pageID is the fake chunk of version v of pfn (never stored: the page
// map does not look at chunks).
func pageID(pfn uint64, v int) chunkstore.ID {
	return chunkstore.Sum(fmt.Appendf(nil, "%d/%d", pfn, v))
}

// TestPageMapLineage writes a long lineage of generations (each changing
// a few pages, as checkpoints of a running guest do), checks that every
// generation reads as written, that a chain never grows past FullEvery
// (a full generation starts a new one), then deletes most generations and
// checks that reclaiming them moves what the survivors still see, drops
// the rest as gc candidates (exactly the chunks the dry run, DropPlan,
// said would go), and that the mark (PageReferenced) names exactly the
// chunks a surviving generation sees.
func TestPageMapLineage(t *testing.T) {
	x, cs := index.TestIndex(t, Keys)
	m := Of(x)
	const pages, gens = 3000, 40 // pages cross three blocks, one partial
	rng := rand.New(rand.NewPCG(1, 2))
	cur := make([]int, pages) // the model: pfn's current version (-1: zero)
	type written struct {
		g     Gen
		ino   uint64
		state []int
	}
	var all []written
	for n := 0; n < gens; n++ {
		in, err := x.Create(index.RootIno, fmt.Sprintf("c%d", n), index.Inode{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		g, err := m.BeginGen(in.Ino, "guest")
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 && g.Base == 0 {
			t.Fatalf("generation %d: no base", n)
		}
		if g.Full() != (n > 0 && g.Floor == g.Num) {
			t.Fatalf("generation %d: Full() wrong for %+v", n, g)
		}
		w := m.NewPageWriter(g)
		b := cs.NewBatch()
		for pfn := uint64(0); pfn < pages; pfn++ {
			changed := n == 0 || rng.IntN(20) == 0
			if changed {
				cur[pfn] = n
				if rng.IntN(10) == 0 {
					cur[pfn] = -1
				}
			}
			if changed || g.Floor == g.Num {
				ref := index.PageRef{Zero: cur[pfn] < 0}
				if !ref.Zero {
					ref.ID = pageID(pfn, cur[pfn])
				}
				w.Put(b, pfn, ref)
			}
			if pfn%700 == 0 { // batches end mid-block, as a writer's do
				if err := b.Commit(pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				b.Close()
				b = cs.NewBatch()
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		b.Close()
		if err := m.EndGen(g, true); err != nil {
			t.Fatal(err)
		}
		all = append(all, written{g: g, ino: in.Ino, state: append([]int(nil), cur...)})
	}
	check := func(what string, w written) {
		t.Helper()
		r := m.NewPageReader(w.g.Lin)
		defer r.Close()
		for pfn := uint64(0); pfn < pages; pfn++ {
			ref, ok, err := r.Lookup(pfn, w.g.Num, w.g.Floor)
			want := w.state[pfn]
			if err != nil || !ok || ref.Zero != (want < 0) || (want >= 0 && ref.ID != pageID(pfn, want)) {
				t.Fatalf("%s: generation %d pfn %d: %+v found %v err %v, want version %d", what, w.g.Num, pfn, ref, ok, err, want)
			}
		}
	}
	depth := 0
	for i, w := range all {
		check("written", w)
		if w.g.Floor == w.g.Num {
			depth = 0
		}
		if depth++; depth > FullEvery {
			t.Fatalf("generation %d: a delta chain of %d generations (FullEvery %d)", i, depth, FullEvery)
		}
	}
	// Keep every seventh generation and the last; delete the rest. First
	// the dry run's answer (DropPlan, the doomed generations still live,
	// named dead), before anything is deleted.
	before, err := x.Candidates(nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	dead := map[uint64]bool{}
	for i, w := range all {
		if !(i%7 == 0 || i == len(all)-1) {
			dead[w.g.Num] = true
		}
	}
	planned := map[chunkstore.ID]bool{}
	for gen := range dead {
		if err := m.DropPlan(all[0].g.Lin, gen, dead, func(id chunkstore.ID, _ []byte) error {
			planned[id] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var kept []written
	for i, w := range all {
		if i%7 == 0 || i == len(all)-1 {
			kept = append(kept, w)
			continue
		}
		if _, err := x.Unlink(index.RootIno, fmt.Sprintf("c%d", i), 2); err != nil {
			t.Fatal(err)
		}
		if err := x.Purge(w.ino); err != nil {
			t.Fatal(err)
		}
	}
	err = m.WalkGens(func(r GenRecord) error {
		if r.State == GenDead {
			if done, _, err := m.ReclaimGen(r.Lin, r.Num); err != nil || !done {
				return fmt.Errorf("reclaim %d: done %v: %v", r.Num, done, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[chunkstore.ID]bool{}
	for _, w := range kept {
		check("after reclaim", w)
		for pfn, v := range w.state {
			if v >= 0 {
				seen[pageID(uint64(pfn), v)] = true
			}
		}
	}
	// Every chunk some generation held: named by a survivor, or a
	// candidate.
	var ids []chunkstore.ID
	for _, w := range all {
		for pfn, v := range w.state {
			if v >= 0 {
				ids = append(ids, pageID(uint64(pfn), v))
			}
		}
	}
	live, err := m.PageReferenced(ids)
	if err != nil {
		t.Fatal(err)
	}
	cands, err := x.Candidates(nil, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	isCand := map[chunkstore.ID]bool{}
	for _, id := range cands {
		isCand[id] = true
	}
	// The reclaim made candidates of exactly what the dry run said it
	// would drop.
	for _, id := range before {
		delete(isCand, id)
	}
	if len(planned) == 0 || len(planned) != len(isCand) {
		t.Fatalf("the dry run planned to drop %d chunks, the reclaim made %d candidates", len(planned), len(isCand))
	}
	for id := range planned {
		if !isCand[id] {
			t.Fatalf("chunk %s: planned to drop, no candidate after the reclaim", id)
		}
	}
	for _, id := range before {
		isCand[id] = true
	}
	for _, id := range ids {
		if live[id] != seen[id] {
			t.Fatalf("chunk %s: marked %v, a surviving generation sees it: %v", id, live[id], seen[id])
		}
		if !seen[id] && !isCand[id] {
			t.Fatalf("chunk %s: nobody sees it and it is no gc candidate", id)
		}
	}
}

// TestPageWriterReplaces: a pfn put again in the same generation (in the
// same batch or a later one) reads as the last put, and the chunks it
// replaced become gc candidates.
func TestPageWriterReplaces(t *testing.T) {
	x, cs := index.TestIndex(t, Keys)
	m := Of(x)
	g, err := m.BeginGen(0, "g")
	if err != nil {
		t.Fatal(err)
	}
	w := m.NewPageWriter(g)
	commit := func(puts map[uint64]int) {
		b := cs.NewBatch()
		defer b.Close()
		for pfn, v := range puts {
			w.Put(b, pfn, index.PageRef{ID: pageID(pfn, v)})
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	commit(map[uint64]int{1: 1, 2: 1, 1500: 1})
	b := cs.NewBatch()
	w.Put(b, 2, index.PageRef{ID: pageID(2, 2)})
	w.Put(b, 2, index.PageRef{ID: pageID(2, 3)})
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	b.Close()
	r := m.NewPageReader(g.Lin)
	defer r.Close()
	for pfn, v := range map[uint64]int{1: 1, 2: 3, 1500: 1} {
		ref, ok, err := r.Lookup(pfn, g.Num, g.Floor)
		if err != nil || !ok || ref.ID != pageID(pfn, v) {
			t.Fatalf("pfn %d: %+v %v %v, want version %d", pfn, ref, ok, err, v)
		}
	}
	cands, err := x.Candidates(nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := map[chunkstore.ID]bool{pageID(2, 1): true, pageID(2, 2): true}
	if len(cands) != len(want) || !want[cands[0]] || !want[cands[1]] {
		t.Fatalf("candidates %v, want the two replaced chunks of pfn 2", cands)
	}
}

// BenchmarkMark measures gc's mark: one PageReferenced pass over the page
// maps of a 1 GiB guest's lineage (262144 pages, 20 generations at 5%
// dirty, with the full generation FullEvery brings), reported per page
// entry read and as seconds per TiB of page entries.
func BenchmarkMark(b *testing.B) {
	x, cs := index.TestIndex(b, Keys)
	m := Of(x)
	const pages, gens = 1 << 18, 20
	rng := rand.New(rand.NewPCG(3, 4))
	entries := 0
	for n := 0; n < gens; n++ {
		g, err := m.BeginGen(0, "guest")
		if err != nil {
			b.Fatal(err)
		}
		w := m.NewPageWriter(g)
		bt := cs.NewBatch()
		for pfn := uint64(0); pfn < pages; pfn++ {
			if n == 0 || g.Floor == g.Num || rng.IntN(20) == 0 {
				w.Put(bt, pfn, index.PageRef{ID: pageID(pfn, n), Tag: chunkstore.Tag{byte(n)}, Tagged: true})
				entries++
			}
			if pfn%4096 == 4095 {
				if err := bt.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				bt.Close()
				bt = cs.NewBatch()
			}
		}
		if err := bt.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		bt.Close()
		if err := m.EndGen(g, true); err != nil {
			b.Fatal(err)
		}
	}
	if err := cs.DB().Flush(); err != nil {
		b.Fatal(err)
	}
	ids := make([]chunkstore.ID, 1024)
	for i := range ids {
		ids[i] = pageID(uint64(i), 99) // named by no entry: the pass reads all
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.PageReferenced(ids); err != nil {
			b.Fatal(err)
		}
	}
	per := b.Elapsed().Seconds() / float64(b.N) / float64(entries)
	b.ReportMetric(per*1e9, "ns/entry")
	b.ReportMetric(per*float64(int64(1)<<40/4096), "s/TiB-of-entries")
}
