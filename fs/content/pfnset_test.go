package content

import "testing"

// TestPfnSet: members below and above the bitmap's range, counted once,
// and reset empties the set.
func TestPfnSet(t *testing.T) {
	var s pfnSet
	pfns := []uint64{0, 63, 64, 1 << 20, pfnBitmapMax - 1, pfnBitmapMax, 1 << 40}
	for _, p := range pfns {
		if !s.add(p) {
			t.Fatalf("add(%#x) of a new pfn reported false", p)
		}
		if s.add(p) {
			t.Fatalf("add(%#x) again reported true", p)
		}
	}
	for _, p := range pfns {
		if !s.has(p) {
			t.Fatalf("has(%#x) false after add", p)
		}
	}
	for _, p := range []uint64{1, 62, 65, 1<<20 + 1, pfnBitmapMax + 1, 1<<40 + 1, 1 << 50} {
		if s.has(p) {
			t.Fatalf("has(%#x) true, never added", p)
		}
	}
	if s.n != int64(len(pfns)) {
		t.Fatalf("n = %d, want %d", s.n, len(pfns))
	}
	s.reset()
	for _, p := range pfns {
		if s.has(p) {
			t.Fatalf("has(%#x) true after reset", p)
		}
	}
	if s.n != 0 || !s.add(63) {
		t.Fatalf("after reset: n %d, or 63 not new", s.n)
	}
}
