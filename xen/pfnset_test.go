package xen

import "testing"

// TestPfnSet: members below and above the bitmap's range, counted once,
// and reset empties the set.
func TestPfnSet(t *testing.T) {
	var s PFNSet
	pfns := []uint64{0, 63, 64, 1 << 20, pfnBitmapMax - 1, pfnBitmapMax, 1 << 40}
	for _, p := range pfns {
		if !s.Add(p) {
			t.Fatalf("add(%#x) of a new pfn reported false", p)
		}
		if s.Add(p) {
			t.Fatalf("add(%#x) again reported true", p)
		}
	}
	for _, p := range pfns {
		if !s.Has(p) {
			t.Fatalf("has(%#x) false after add", p)
		}
	}
	for _, p := range []uint64{1, 62, 65, 1<<20 + 1, pfnBitmapMax + 1, 1<<40 + 1, 1 << 50} {
		if s.Has(p) {
			t.Fatalf("has(%#x) true, never added", p)
		}
	}
	if s.Len() != int64(len(pfns)) {
		t.Fatalf("Len() = %d, want %d", s.Len(), len(pfns))
	}
	s.Reset()
	for _, p := range pfns {
		if s.Has(p) {
			t.Fatalf("has(%#x) true after reset", p)
		}
	}
	if s.Len() != 0 || !s.Add(63) {
		t.Fatalf("after reset: Len() %d, or 63 not new", s.Len())
	}
}
