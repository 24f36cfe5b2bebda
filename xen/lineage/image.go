package lineage

import (
	"fmt"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
)

// Extents is what an image needs of the index: page runs go in as
// extents.
type Extents interface {
	AddExtent(b *pebble.Batch, ino, ver uint64, e index.Extent) error
}

// Image is the page mode of one file being written (the content engine's
// page hook, content.Pages): it follows the bytes streaming in from
// offset 0 with an xl save scanner, names where each page payload starts,
// and records each page the engine cuts there in the file's generation of
// its guest's lineage: an entry of the generation's page map if the page
// differs from the base generation's, a slot of a page run (an extent
// over the lineage) in any case.
//
// The generation outlives the scanner: a rewrite stops the following,
// but the pages recorded so far stay in the generation, and the engine
// stores later pages as plain extents.
type Image struct {
	x     Extents
	maps  *Maps
	ino   uint64
	pages bool // page mode: record pages (else only the guest record)

	// The stream, while followed.
	sc     *xen.Scanner
	starts []int64  // starts of page payloads not yet wholly cut, ascending
	pfns   []uint64 // their pfns
	guest  XenInfo

	gen       Gen         // Gen 0: none yet
	failed    bool        // BeginGen failed: pages are stored as plain extents
	base      *PageReader // taken with baseMu: jobs look up pages in it
	baseMu    sync.Mutex
	pw        *PageWriter  // gen's page map
	run       index.Extent // page run being collected (Len 0: none)
	committed bool         // a commit happened after the generation began
	entries   int64        // page-map entries written (the changed pages)
	// seen holds the pfns the page map already has an entry or run slot
	// for in this image. A pfn sent again in the same file (an xl remus
	// stream or live-migration precopy rounds written as one file) is
	// stored as a plain extent: the map holds one page per pfn per
	// generation, and the earlier copy must keep reading as written.
	seen xen.PFNSet
}

// NewImage returns the page hook of file ino. With pages false it only
// records the guest of a whole xl save image (for lineage stats), and the
// engine stores every byte by content.
func NewImage(x *index.Index, ino uint64, pages bool) *Image {
	return &Image{x: x, maps: Of(x), ino: ino, pages: pages}
}

// Follow starts following a stream from offset 0 (a new file, or one
// truncated to nothing and written again).
func (m *Image) Follow() {
	m.starts, m.pfns, m.guest = nil, nil, XenInfo{}
	h := xen.Handler{Config: func(j []byte) {
		if cfg, err := xen.ParseConfig(j); err == nil {
			m.guest.UUID, m.guest.Name = cfg.UUID, cfg.Name
		}
	}}
	if m.pages {
		h.Page = func(pg xen.Page) {
			m.starts = append(m.starts, pg.Off)
			m.pfns = append(m.pfns, pg.PFN)
		}
	}
	m.sc = xen.NewScanner(h)
}

// Stop stops following: the stream was rewritten, or continues past a gap
// the scanner never saw.
func (m *Image) Stop() { m.sc, m.starts, m.pfns = nil, nil, nil }

// Following reports whether the stream is followed.
func (m *Image) Following() bool { return m.sc != nil }

// Write passes the stream's next bytes to the scanner.
func (m *Image) Write(p []byte) {
	if m.sc != nil {
		m.sc.Write(p)
	}
}

// Starts returns the known page starts of pages that end after off, and
// forgets the ones before: the engine asks about no page ending at or
// before off again.
func (m *Image) Starts(off int64) []int64 {
	i := 0
	for i < len(m.starts) && m.starts[i]+xen.PageSize <= off {
		i++
	}
	m.starts, m.pfns = m.starts[i:], m.pfns[i:]
	return m.starts
}

// pfnAt returns the pfn of the page payload starting at off.
func (m *Image) pfnAt(off int64) (uint64, bool) {
	i := sort.Search(len(m.starts), func(i int) bool { return m.starts[i] >= off })
	if i < len(m.starts) && m.starts[i] == off {
		return m.pfns[i], true
	}
	return 0, false
}

// begin starts the image's generation at its first page, and reports
// whether pages go into one: an xl save image of a known guest in page
// mode whose generation could begin.
func (m *Image) begin() bool {
	if m.sc == nil || !m.pages || m.guest.UUID == "" || m.failed {
		return false
	}
	if m.gen.Num == 0 {
		g, err := m.maps.BeginGen(m.ino, m.guest.UUID)
		if err != nil {
			m.failed = true
			return false
		}
		m.gen, m.pw = g, m.maps.NewPageWriter(g)
		if g.Base != 0 {
			m.base = m.maps.NewPageReader(g.Lin)
		}
	}
	return true
}

// Base returns the page starts the engine's background job cuts by (a
// copy of the known starts of pages that end after off) and, when pages
// are recorded and the generation has a base, lookup: the base
// generation's page for the i-th of them (found false: the base has
// none). Jobs may call lookup from any goroutine, also while the engine
// records: the base's reader is taken in turn (baseMu).
func (m *Image) Base(off int64) (starts []int64, lookup func(i int) (index.PageRef, bool, error)) {
	i := sort.Search(len(m.starts), func(i int) bool { return m.starts[i]+xen.PageSize > off })
	if i == len(m.starts) {
		return nil, nil
	}
	starts = append([]int64(nil), m.starts[i:]...)
	if !m.begin() || m.base == nil {
		return starts, nil
	}
	pfns := append([]uint64(nil), m.pfns[i:]...)
	return starts, func(i int) (index.PageRef, bool, error) { return m.lookupBase(pfns[i]) }
}

// lookupBase returns the base generation's page of pfn.
func (m *Image) lookupBase(pfn uint64) (index.PageRef, bool, error) {
	m.baseMu.Lock()
	defer m.baseMu.Unlock()
	return m.base.Lookup(pfn, m.gen.Base, m.gen.BaseFloor)
}

// Record records the page payload at off of file version ver in the
// image's generation: an entry if it differs from the base generation
// (same says, if compared; else it looks), a slot of the page run in any
// case. It returns false if off is not a page it records: the engine
// stores it as an extent.
func (m *Image) Record(b *chunkstore.Batch, ver uint64, off int64, ref index.PageRef, compared, same bool) (bool, error) {
	if !m.begin() {
		return false, nil
	}
	pfn, ok := m.pfnAt(off)
	if !ok || !m.seen.Add(pfn) {
		return false, nil
	}
	if !compared && m.base != nil {
		old, found, err := m.lookupBase(pfn)
		if err != nil {
			return true, err
		}
		same = found && old.Holds(ref.ID, ref.Zero)
	} else if !compared {
		same = false
	}
	switch {
	case !same:
		m.pw.Put(b, pfn, ref)
		m.entries++
	case m.gen.Full():
		// Unchanged, but a full generation names every page: the base's
		// entry, copied (the base's chain stays while this generation is
		// in flight: ReclaimGen is blocked).
		old, found, err := m.lookupBase(pfn)
		if err != nil {
			return true, err
		}
		if !found {
			return true, fmt.Errorf("%w: pfn %#x compared equal to a page its base does not have", index.ErrCorrupt, pfn)
		}
		m.pw.Put(b, pfn, old)
	}
	r := &m.run
	if r.Len > 0 && (r.End() != off || r.Run.Pages() >= index.MaxRunPages) {
		if err := m.Flush(b, ver); err != nil {
			return true, err
		}
	}
	if r.Len == 0 {
		*r = index.Extent{Off: off, Run: &index.PageRun{Lin: m.gen.Lin, Gen: m.gen.Num, Floor: m.gen.Floor}}
	}
	r.Len += xen.PageSize
	r.Run.Add(pfn)
	return true, nil
}

// Flush adds the page run being collected to the batch, as an extent of
// version ver.
func (m *Image) Flush(b *chunkstore.Batch, ver uint64) error {
	if m.run.Len == 0 {
		return nil
	}
	e := m.run
	m.run = index.Extent{}
	return m.x.AddExtent(b.Batch, m.ino, ver, e)
}

// Committed is called once the file's content is committed at size,
// newBytes being the chunk bytes its writer added. It reports whether the
// file is a whole xl save image of a known guest (recorded for lineage
// stats).
func (m *Image) Committed(size, newBytes int64) (bool, error) {
	if m.gen.Num != 0 {
		m.committed = true
	}
	if m.sc == nil || !m.sc.Done() || m.guest.UUID == "" || m.sc.Offset() != size {
		return false, nil
	}
	m.guest.NewBytes, m.guest.Pages = newBytes, m.entries
	return true, m.maps.SetXen(m.ino, m.guest)
}

// Close ends the generation: live if its content was committed, else dead
// (named by no file's committed extents: gc may take it).
func (m *Image) Close() {
	if m.gen.Num == 0 {
		return
	}
	if m.base != nil {
		m.base.Close()
	}
	_ = m.maps.EndGen(m.gen, m.committed)
	*m = Image{x: m.x, ino: m.ino, pages: m.pages}
}
