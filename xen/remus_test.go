package xen_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestRemusPlainImages: following a generated xl remus stream (PV and HVM,
// several checkpoints, pages resent in live rounds, pfns sent as XTAB
// first and with data later), fed in random pieces, the plain
// image described at the end of checkpoint i is byte for byte the plain
// save of generation i (xentest.Guest.Write), which is what stock xl
// restore reads. A plain image instead of a remus stream is refused, and a
// stream cut short publishes only its complete checkpoints.
func TestRemusPlainImages(t *testing.T) {
	for _, g := range []xentest.Guest{
		{Name: "pv", UUID: "u1", Pages: 3000, VCPUs: 2, Seed: 1, Dirty: 0.05},
		{Name: "hvm", UUID: "u2", HVM: true, Pages: 2100, VCPUs: 1, Seed: 2, Dirty: 0.1},
		// live rounds: stale pages and XTAB first, then their real content
		{Name: "pv-precopy", UUID: "u3", Pages: 3000, VCPUs: 1, Seed: 3, Dirty: 0.05, Precopy: true, Ballooned: 64},
		{Name: "hvm-precopy", UUID: "u4", HVM: true, Pages: 2100, VCPUs: 2, Seed: 4, Dirty: 0.1, Precopy: true},
	} {
		t.Run(g.Name, func(t *testing.T) {
			const n = 4
			stream := remusStream(t, g, n)
			for seed := uint64(0); seed < 4; seed++ {
				pages := map[uint64][]byte{}
				var got []int
				r := xen.NewRemus(xen.RemusHandler{
					Page: func(pfn uint64, data []byte) error {
						pages[pfn] = bytes.Clone(data)
						return nil
					},
					Checkpoint: func(i int, img *xen.PlainImage) error {
						plain, err := img.Materialize(func(pfn uint64) ([]byte, error) {
							if p, ok := pages[pfn]; ok {
								return p, nil
							}
							return nil, fmt.Errorf("no page %#x", pfn)
						})
						if err != nil {
							return err
						}
						c := g
						c.Gen = i
						if want := c.Bytes(); !bytes.Equal(plain, want) || img.Size() != int64(len(want)) {
							return fmt.Errorf("checkpoint %d: plain image of %d bytes differs from generation %d's save (%d bytes)", i, len(plain), i, len(want))
						}
						got = append(got, i)
						return nil
					},
				})
				rnd := rand.New(rand.NewPCG(seed, 3))
				for rest := stream; len(rest) > 0; {
					k := min(len(rest), 1+rnd.IntN(1<<uint(rnd.IntN(20))))
					if seed == 0 {
						k = len(rest) // all at once: every checkpoint ends in one Write
					}
					if _, err := r.Write(rest[:k]); err != nil {
						t.Fatal(err)
					}
					rest = rest[k:]
				}
				if fmt.Sprint(got) != fmt.Sprint([]int{0, 1, 2, 3, 4}) {
					t.Fatalf("checkpoints %v", got)
				}
			}
			// Cut inside the last checkpoint: the first n are published.
			count := 0
			r := xen.NewRemus(xen.RemusHandler{Checkpoint: func(int, *xen.PlainImage) error { count++; return nil }})
			r.Write(stream[:len(stream)-50])
			if count != n || r.Err() != nil {
				t.Fatalf("cut stream: %d checkpoints, %v", count, r.Err())
			}
		})
	}
	r := xen.NewRemus(xen.RemusHandler{})
	if _, err := r.Write(xentest.Guest{Name: "p", UUID: "u", Pages: 10, VCPUs: 1, Seed: 1}.Bytes()); !errors.Is(err, xen.ErrNotCheckpointed) {
		t.Fatalf("plain image: %v", err)
	}
}

// remusStream returns g's xl remus stream with checkpoints 0..n.
func remusStream(t *testing.T, g xentest.Guest, n int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := g.WriteRemus(&b, n); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// FuzzRemus: any input, whole or in pieces, never panics, and both ways
// publish the same checkpoints with the same sizes.
func FuzzRemus(f *testing.F) {
	var b bytes.Buffer
	xentest.Guest{Name: "r", UUID: "u", Pages: 6, VCPUs: 1, Seed: 1, Dirty: 0.5}.WriteRemus(&b, 2)
	f.Add(b.Bytes(), uint64(1))
	f.Add(xentest.Guest{Name: "h", UUID: "u", HVM: true, Pages: 3, VCPUs: 1, Seed: 1}.Bytes(), uint64(2))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		follow := func(pieces bool) []int64 {
			var sizes []int64
			r := xen.NewRemus(xen.RemusHandler{Checkpoint: func(_ int, img *xen.PlainImage) error {
				sizes = append(sizes, img.Size())
				return nil
			}})
			rnd := rand.New(rand.NewPCG(seed, 5))
			for rest := in; len(rest) > 0; {
				k := len(rest)
				if pieces {
					k = min(k, 1+rnd.IntN(64))
				}
				if _, err := r.Write(rest[:k]); err != nil {
					break
				}
				rest = rest[k:]
			}
			return sizes
		}
		if a, b := follow(false), follow(true); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("whole %v, pieces %v", a, b)
		}
	})
}
