package lineage

import (
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestImage follows a generated xl save image: it names one page start
// per page of the guest, records each page in a generation of the guest's
// lineage (a page run over consecutive pages), and reports a whole image
// at its commit. After Stop it names no starts and records nothing (the
// engine stores the rest as extents), and a file that is not an xl save
// image is never paged.
func TestImage(t *testing.T) {
	x, cs := index.TestIndex(t, Keys)
	g := xentest.Guest{Name: "pv", UUID: "img-pv", Pages: 512, VCPUs: 1, Seed: 2}
	img := g.Bytes()
	newFile := func(name string) index.Inode {
		in, err := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG | 0o644})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}

	in := newFile("g0")
	m := NewImage(x, in.Ino, true)
	m.Follow()
	for rest := img; len(rest) > 0; {
		k := min(len(rest), 100000)
		m.Write(rest[:k])
		rest = rest[k:]
	}
	starts := m.Starts(0)
	if len(starts) != int(g.Pages) {
		t.Fatalf("%d page starts, want %d", len(starts), g.Pages)
	}
	b := cs.NewBatch()
	defer b.Close()
	recorded := 0
	for _, off := range starts {
		ref := index.PageRef{ID: chunkstore.Sum(img[off : off+xen.PageSize])}
		ok, err := m.Record(b, in.Ver, off, ref, false, false)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			recorded++
		}
		// A page recorded twice is the engine's to store as an extent.
		if again, _ := m.Record(b, in.Ver, off, ref, false, false); again {
			t.Fatalf("page at %d recorded twice", off)
		}
	}
	if recorded != len(starts) {
		t.Fatalf("%d of %d pages recorded", recorded, len(starts))
	}
	if err := m.Flush(b, in.Ver); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Commit(in.Ino, in.Ver, int64(len(img)), 1); err != nil {
		t.Fatal(err)
	}
	whole, err := m.Committed(int64(len(img)), 1234)
	if err != nil || !whole {
		t.Fatalf("Committed: %v, %v; want a whole image", whole, err)
	}
	info, err := Of(x).GetXen(in.Ino)
	if err != nil || info.UUID != g.UUID || info.Pages != int64(g.Pages) || info.NewBytes != 1234 {
		t.Fatalf("guest record %+v (%v), want uuid %s, %d pages, 1234 new bytes", info, err, g.UUID, g.Pages)
	}
	m.Close()
	live := 0
	Of(x).WalkGens(func(r GenRecord) error {
		if r.Ino == in.Ino && r.State == GenLive {
			live++
		}
		return nil
	})
	if live != 1 {
		t.Fatalf("%d live generations of the file, want 1", live)
	}

	// Stopped: no starts, nothing recorded; not a whole image.
	in1 := newFile("g1")
	m = NewImage(x, in1.Ino, true)
	m.Follow()
	m.Write(img[:len(img)/2])
	off := m.Starts(0)[0]
	m.Stop()
	if s := m.Starts(0); len(s) != 0 {
		t.Fatalf("%d starts after Stop", len(s))
	}
	if ok, _ := m.Record(b, in1.Ver, off, index.PageRef{Zero: true}, false, false); ok {
		t.Fatal("a page recorded after Stop")
	}
	if whole, _ := m.Committed(int64(len(img)/2), 0); whole {
		t.Fatal("a stopped stream reported as a whole image")
	}
	m.Close()

	// Not an xl save image.
	m = NewImage(x, newFile("other").Ino, true)
	m.Follow()
	m.Write(make([]byte, 1<<20))
	if s := m.Starts(0); len(s) != 0 {
		t.Fatalf("%d page starts in zeros", len(s))
	}
	m.Close()
}
