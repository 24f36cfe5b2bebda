package content

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ckptfs/ckptfs/gc"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestPublishRemus: a generated xl remus stream (PV and HVM, 6
// checkpoints) followed by xen.Remus into a Publisher. Every published
// generation reads back byte for byte as the plain save of that state;
// each later one writes page entries only for its dirty pages; deleting
// some and collecting keeps the others exact.
func TestPublishRemus(t *testing.T) {
	for _, g := range []xentest.Guest{
		{Name: "pv", UUID: "r-pv", Pages: 4096, VCPUs: 2, Seed: 4, Dirty: 0.05},
		{Name: "hvm", UUID: "r-hvm", HVM: true, Pages: 3000, VCPUs: 1, Seed: 5, Dirty: 0.05},
	} {
		t.Run(g.Name, func(t *testing.T) {
			s, x, cs := pageModeStore(t)
			const n = 5
			var stream bytes.Buffer
			if err := g.WriteRemus(&stream, n); err != nil {
				t.Fatal(err)
			}
			pub := s.NewPublisher(x, g.UUID, g.Name)
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
				s.cache.Purge()
				for _, i := range gens {
					c := g
					c.Gen = i
					want := c.Bytes()
					in, err := x.Lookup(index.RootIno, fmt.Sprintf("ckpt-%d", i))
					if err != nil {
						t.Fatal(err)
					}
					got := make([]byte, len(want))
					var cur Cursor
					if k, err := s.ReadCommitted(&cur, in.Ino, in.Ver, s.NewGen(), in.Size, got, 0); err != nil || k != len(want) || !bytes.Equal(got, want) {
						t.Fatalf("checkpoint %d: %v, %d of %d bytes, first difference at %d", i, err, k, len(want), firstDiff(got[:k], want))
					}
				}
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
			if rep, err := gc.Fsck(cs, x); err != nil || !rep.OK() {
				t.Fatalf("fsck: %v %+v", err, rep)
			}
		})
	}
}
