package content

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestSpans: sequential reads of a page-mode image (pages, zero pages,
// the bytes between) in read sizes that do and do not divide spans come
// back byte for byte, and most of them from spans; a new version of the
// file under a reader's spans is read as the new version; a seek back
// reads through the cursor; closing the cursors gives back every span's
// memory.
func TestSpans(t *testing.T) {
	s, x, _ := pageModeStore(t)
	g := xentest.Guest{Name: "span", UUID: "span-pv", Pages: 6000, VCPUs: 1, Seed: 3}
	data := g.Bytes()
	in := putFile(t, s, x, "img", data)
	for _, rs := range []int{1 << 20, 128 << 10, 4097, 3 << 20} {
		t.Run(fmt.Sprint(rs), func(t *testing.T) {
			before := s.stats.SpanReads.Load()
			var c Cursor
			defer s.CloseCursor(&c)
			got := make([]byte, 0, len(data))
			buf := make([]byte, rs)
			epoch := s.NewEpoch()
			for off := 0; off < len(data); {
				n, err := s.ReadCommitted(&c, in.Ino, in.Ver, epoch, in.Size, buf, int64(off))
				if err != nil || n == 0 {
					t.Fatalf("read at %d: %d, %v", off, n, err)
				}
				got = append(got, buf[:n]...)
				off += n
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back differs at %d", firstDiff(got, data))
			}
			reads := (len(data) + rs - 1) / rs
			if n := s.stats.SpanReads.Load() - before; n < int64(reads)/2 {
				t.Fatalf("%d of %d reads from spans", n, reads)
			}
		})
	}

	// A new version under the spans, and a seek back.
	var c Cursor
	buf := make([]byte, 1<<20)
	epoch := s.NewEpoch()
	for off := int64(0); off < 3<<20; off += 1 << 20 {
		if _, err := s.ReadCommitted(&c, in.Ino, in.Ver, epoch, in.Size, buf, off); err != nil {
			t.Fatal(err)
		}
	}
	g2 := g
	g2.Gen, g2.Dirty = 1, 0.5
	data2 := g2.Bytes()
	w := s.NewWriter(in)
	if err := w.Truncate(0, 2); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data2); off += 1 << 20 {
		if err := w.WriteAt(data2[off:min(off+1<<20, len(data2))], int64(off), 2); err != nil {
			t.Fatal(err)
		}
	}
	in2, err := w.Commit()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if in2.Ver == in.Ver && in2.Size == in.Size {
		t.Logf("rewritten in place (version %d)", in2.Ver)
	}
	epoch2 := s.NewEpoch()
	for _, off := range []int64{3 << 20, 4 << 20, 1 << 20, 2 << 20} {
		n, err := s.ReadCommitted(&c, in2.Ino, in2.Ver, epoch2, in2.Size, buf, off)
		if err != nil || !bytes.Equal(buf[:n], data2[off:off+int64(n)]) {
			t.Fatalf("new version at %d: %v, or other bytes", off, err)
		}
	}
	s.CloseCursor(&c)
	if !s.spanMem.TryAcquire(spanMemory) {
		t.Fatal("span memory still held after every cursor closed")
	}
	s.spanMem.Release(spanMemory)
}

// TestSpansOutOfOrder: the kernel sends a sequential reader's 1 MiB reads
// several at once, and they arrive slightly out of order (the read at
// off+1 MiB before the one at off). Every read comes back byte for byte,
// the spans stay (nearly every read is served from them, none is dropped
// and started again: each span is filled once), and closing the cursor
// gives back their memory.
func TestSpansOutOfOrder(t *testing.T) {
	s, x, _ := pageModeStore(t)
	g := xentest.Guest{Name: "span", UUID: "span-ooo", Pages: 12000, VCPUs: 1, Seed: 4}
	data := g.Bytes()
	in := putFile(t, s, x, "img", data)
	const rs = 1 << 20
	var c Cursor
	epoch := s.NewEpoch()
	before := s.stats.SpanReads.Load()
	read := func(off int) {
		t.Helper()
		buf := make([]byte, rs)
		n, err := s.ReadCommitted(&c, in.Ino, in.Ver, epoch, in.Size, buf, int64(off))
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		want := data[off:min(off+rs, len(data))]
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("read at %d differs at %d", off, firstDiff(buf[:n], want))
		}
	}
	// In order to start the spans (they start at 2 MiB, 4 MiB each), then
	// each pair swapped, so that the first read of a span comes before the
	// last read of the span before it.
	read(0)
	read(rs)
	read(2 * rs)
	reads := 3
	for off := 3 * rs; off < len(data); off += 2 * rs {
		if off+rs < len(data) {
			read(off + rs)
			reads++
		}
		read(off)
		reads++
	}
	if n := s.stats.SpanReads.Load() - before; n < int64(reads)-4 {
		t.Fatalf("%d of %d reads from spans: out-of-order reads dropped them", n, reads)
	}
	s.CloseCursor(&c)
	s.bg.Wait()
	if !s.spanMem.TryAcquire(spanMemory) {
		t.Fatal("span memory not all given back after close")
	}
	s.spanMem.Release(spanMemory)
}
