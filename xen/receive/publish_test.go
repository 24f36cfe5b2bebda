package receive

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestPublishRemus: a generated xl remus stream (PV and HVM, 6
// checkpoints) followed by xen.Remus into a Publisher. Every published
// generation reads back byte for byte as the plain save of that state;
// each later one writes page entries only for its dirty pages; deleting
// some and collecting keeps the others exact.
func TestPublishRemus(t *testing.T) {
	for _, g := range []xentest.Guest{
		{Name: "pv", UUID: "r-pv", Pages: 4096, VCPUs: 2, Seed: 4, Dirty: 0.05, Precopy: true},
		{Name: "hvm", UUID: "r-hvm", HVM: true, Pages: 3000, VCPUs: 1, Seed: 5, Dirty: 0.05, Precopy: true},
		{Name: "pv-one-round", UUID: "r-pv1", Pages: 2048, VCPUs: 1, Seed: 6, Dirty: 0.05},
	} {
		t.Run(g.Name, func(t *testing.T) {
			s, x, cs := pageModeStore(t)
			const n = 5
			var stream bytes.Buffer
			if err := g.WriteRemus(&stream, n); err != nil {
				t.Fatal(err)
			}
			pub := NewPublisher(cs, x, lineage.Of(x), DefaultConfig(), g.UUID, g.Name)
			defer pub.Close()
			published := map[int]index.Inode{}
			r := xen.NewRemus(xen.RemusHandler{
				Page: pub.Page,
				Checkpoint: func(i int, img *xen.PlainImage) error {
					in, err := pub.Publish(index.RootIno, fmt.Sprintf("ckpt-%d", i), img, int64(i+1))
					if err != nil {
						return err
					}
					published[i] = in
					lo, hi := 0.5*g.Dirty*float64(g.Pages), 1.2*g.Dirty*float64(g.Pages)+16
					if i == 0 {
						lo, hi = float64(g.Pages), float64(g.Pages)+32
					}
					if c := float64(pub.Changed); c < lo || c > hi {
						return fmt.Errorf("checkpoint %d wrote %d page entries, want %.0f..%.0f", i, pub.Changed, lo, hi)
					}
					return nil
				},
			})
			for rest := stream.Bytes(); len(rest) > 0; {
				k := min(len(rest), 1<<20)
				if _, err := r.Write(rest[:k]); err != nil {
					t.Fatal(err)
				}
				rest = rest[k:]
			}
			check := func(gens []int) {
				t.Helper()
				s.CacheForTest().Purge()
				for _, i := range gens {
					c := g
					c.Gen = i
					want := c.Bytes()
					in, err := x.Lookup(index.RootIno, fmt.Sprintf("ckpt-%d", i))
					if err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(want))
					var cur content.Cursor
					if k, err := s.ReadCommitted(&cur, in.Ino, in.Ver, s.NewEpoch(), in.Size, got, 0); err != nil || k != len(want) || !bytes.Equal(got, want) {
						t.Fatalf("checkpoint %d: %v, %d of %d bytes, first difference at %d", i, err, k, len(want), firstDiff(got[:k], want))
					}
				}
			}
			check([]int{0, 1, 2, 3, 4, 5})
			// Published pages hold no pins; the stale pages of the precopy
			// round were never referenced, and gc reclaims them at once.
			if n := cs.Pinned(); n != 0 {
				t.Fatalf("%d chunks still pinned after publishing", n)
			}
			res, err := gc.Collect(cs, x, false)
			if err != nil {
				t.Fatal(err)
			}
			if g.Precopy && res.ChunksDeleted < int(g.Pages/10) {
				t.Fatalf("gc after publishing reclaimed %d chunks, want the precopy round's stale pages (about %d)", res.ChunksDeleted, g.Pages/5)
			}
			if un := unreferenced(t, cs, x); un != 0 {
				t.Fatalf("%d chunks nobody references after gc", un)
			}
			check([]int{0, 1, 2, 3, 4, 5})
			for _, i := range []int{0, 3} {
				if _, err := x.Unlink(index.RootIno, fmt.Sprintf("ckpt-%d", i), 9); err != nil {
					t.Fatal(err)
				}
				if err := x.Purge(published[i].Ino); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := gc.Collect(cs, x, false); err != nil {
				t.Fatal(err)
			}
			check([]int{1, 2, 4, 5})
			if un := unreferenced(t, cs, x); un != 0 {
				t.Fatalf("%d chunks nobody references after deleting 2 and gc", un)
			}
			if rep, err := gc.Fsck(cs, x); err != nil || !rep.OK() {
				t.Fatalf("fsck: %v %+v", err, rep)
			}
		})
	}
}

// unreferenced counts the stored chunks no reference key names.
func unreferenced(t *testing.T, cs *chunkstore.Store, x *index.Index) int {
	t.Helper()
	var ids []chunkstore.ID
	if err := cs.Walk(func(i chunkstore.Info) error { ids = append(ids, i.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	paged, err := lineage.Of(x).PageReferenced(ids)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, id := range ids {
		ref, err := x.Referenced(id)
		if err != nil {
			t.Fatal(err)
		}
		if !ref && !paged[id] {
			n++
		}
	}
	return n
}

// TestPublisherCloseDropsUnpublished: the pages of a checkpoint that never
// completed are stored as they arrive, in a generation that ends dead when
// the publisher closes, and gc leaves only what the published generation
// references.
func TestPublisherCloseDropsUnpublished(t *testing.T) {
	s, x, cs := pageModeStore(t)
	g := xentest.Guest{Name: "pv", UUID: "c-pv", Pages: 1024, VCPUs: 1, Seed: 9, Dirty: 0.2}
	pub := NewPublisher(cs, x, lineage.Of(x), DefaultConfig(), g.UUID, g.Name)
	published := feedUnfinished(t, pub, cs, g)
	if cs.Pinned() == 0 {
		t.Fatal("checkpoint 1's pages are not pinned while it is open")
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if n := cs.Pinned(); n != 0 {
		t.Fatalf("%d chunks pinned after Close", n)
	}
	storedMore(t, cs, published)
	collectedToPublished(t, s, x, cs, g, published)
}

// TestReceiverCrashMidCheckpoint: a receiver that dies inside a checkpoint
// (no Close) leaves its in-flight generation with entries of the pages
// applied so far and no file; the next open ends it dead, and gc takes
// those pages while the published generation stays exact.
func TestReceiverCrashMidCheckpoint(t *testing.T) {
	x, cs := index.TestIndex(t, lineage.Keys)
	cfg := DefaultConfig()
	cfg.BatchBytes = 16 << 10 // apply often: the crash finds entries in the store
	g := xentest.Guest{Name: "pv", UUID: "crash-pv", Pages: 2048, VCPUs: 1, Seed: 12, Dirty: 0.2}
	pub := NewPublisher(cs, x, lineage.Of(x), cfg, g.UUID, g.Name)
	published := feedUnfinished(t, pub, cs, g)
	storedMore(t, cs, published)
	inFlight := 0
	lineage.Of(x).WalkGens(func(r lineage.GenRecord) error {
		if r.State == lineage.GenInFlight && r.Ino == 0 {
			inFlight++
		}
		return nil
	})
	if inFlight != 1 {
		t.Fatalf("%d in-flight generations with no file, want 1 (the unfinished checkpoint)", inFlight)
	}
	// The crash: the publisher is never closed; the store is opened again.
	cs.Unpin(pub.pinned...) // a new process holds no pins
	x2, err := index.Open(cs.DB(), 2, 0, 0, lineage.Keys)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := content.DefaultConfig()
	cfg2.Runs = lineage.Of(x2)
	s2 := content.New(cs, cs, x2, cfg2)
	t.Cleanup(s2.Close)
	collectedToPublished(t, s2, x2, cs, g, published)
}

// chunkCount is how many chunks cs holds.
func chunkCount(t *testing.T, cs *chunkstore.Store) int {
	t.Helper()
	n := 0
	if err := cs.Walk(func(chunkstore.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// feedUnfinished feeds g's remus stream of checkpoints 0 and 1 to pub but
// for its last 200 bytes: checkpoint 0 is published, checkpoint 1's pages
// arrive and its end does not. It returns the chunks stored once
// checkpoint 0 was published.
func feedUnfinished(t *testing.T, pub *Publisher, cs *chunkstore.Store, g xentest.Guest) int {
	t.Helper()
	var stream bytes.Buffer
	if err := g.WriteRemus(&stream, 1); err != nil {
		t.Fatal(err)
	}
	published := 0
	r := xen.NewRemus(xen.RemusHandler{
		Page: pub.Page,
		Checkpoint: func(i int, img *xen.PlainImage) error {
			_, err := pub.Publish(index.RootIno, fmt.Sprint("ckpt-", i), img, 1)
			published = chunkCount(t, cs)
			return err
		},
	})
	b := stream.Bytes()
	if _, err := r.Write(b[:len(b)-200]); err != nil {
		t.Fatal(err)
	}
	return published
}

// storedMore checks that the unfinished checkpoint's pages are in the
// store: at least 100 chunks more than when checkpoint 0 was published.
func storedMore(t *testing.T, cs *chunkstore.Store, published int) {
	t.Helper()
	if n := chunkCount(t, cs) - published; n < 100 {
		t.Fatalf("only %d chunks stored for the unfinished checkpoint", n)
	}
}

// collectedToPublished runs gc and checks that it leaves the store as it
// was when checkpoint 0 was published (published chunks, none
// unreferenced), and checkpoint 0 byte for byte.
func collectedToPublished(t *testing.T, s *content.Store, x *index.Index, cs *chunkstore.Store, g xentest.Guest, published int) {
	t.Helper()
	if _, err := gc.Collect(cs, x, false); err != nil {
		t.Fatal(err)
	}
	if n := unreferenced(t, cs, x); n != 0 {
		t.Fatalf("%d unreferenced chunks survive gc", n)
	}
	if n := chunkCount(t, cs); n != published {
		t.Fatalf("%d chunks after gc, %d when checkpoint 0 was published", n, published)
	}
	in, err := x.Lookup(index.RootIno, "ckpt-0")
	if err != nil {
		t.Fatal(err)
	}
	want := g.Bytes()
	got := make([]byte, len(want))
	var cur content.Cursor
	if k, err := s.ReadCommitted(&cur, in.Ino, in.Ver, s.NewEpoch(), in.Size, got, 0); err != nil || !bytes.Equal(got[:k], want) {
		t.Fatalf("checkpoint 0 after gc: %v, first difference at %d", err, firstDiff(got[:k], want))
	}
}
