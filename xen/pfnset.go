package xen

// PFNSet is a set of pfns: a bitmap for the dense low range every guest
// uses, a map above it (HVM pfns past the MMIO hole, fuzzed streams).
type PFNSet struct {
	bits []uint64
	high map[uint64]struct{}
	n    int64 // members
}

// Has reports whether pfn is in the set.
func (s *PFNSet) Has(pfn uint64) bool {
	if pfn >= pfnBitmapMax {
		_, ok := s.high[pfn]
		return ok
	}
	i := pfn / 64
	return i < uint64(len(s.bits)) && s.bits[i]&(1<<(pfn%64)) != 0
}

// Reset empties the set, keeping its bitmap's memory.
func (s *PFNSet) Reset() {
	clear(s.bits)
	s.high, s.n = nil, 0
}

const pfnBitmapMax = 1 << 26 // 256 GiB of guest memory in 8 MiB of bitmap

// Add adds pfn and reports whether it was new.
func (s *PFNSet) Add(pfn uint64) bool {
	if pfn >= pfnBitmapMax {
		if _, ok := s.high[pfn]; ok {
			return false
		}
		if s.high == nil {
			s.high = map[uint64]struct{}{}
		}
		s.high[pfn] = struct{}{}
		s.n++
		return true
	}
	i, bit := pfn/64, uint64(1)<<(pfn%64)
	if i >= uint64(len(s.bits)) {
		s.bits = append(s.bits, make([]uint64, i+1-uint64(len(s.bits))+uint64(len(s.bits)/4))...)
	}
	if s.bits[i]&bit != 0 {
		return false
	}
	s.bits[i] |= bit
	s.n++
	return true
}

// Len is the number of members.
func (s *PFNSet) Len() int64 { return s.n }
