// Package xentest generates realistic xl save images for tests and
// benchmarks: PV and HVM streams with the record order Xen 4.17's save code
// writes, and series of generations of one guest with a chosen fraction of
// dirty pages. Its output passes Xen's verify-stream-v2.
package xentest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen"
)

// Guest describes a guest and which generation of its memory to save.
type Guest struct {
	Name  string
	UUID  string
	HVM   bool
	Pages int64 // guest pages (PV: pfns 0..Pages-1; HVM: below 0xff000, then XTAB holes)
	VCPUs int
	Seed  uint64
	// Gen is the generation: each one after 0 rewrites a fraction Dirty of
	// the pages.
	Gen   int
	Dirty float64
	// ConfigPad lengthens the JSON config (as a changed device list would).
	ConfigPad int
	// Ballooned is the number of pages, from the top, given back to Xen:
	// saved as XTAB entries without data.
	Ballooned int64
	// Precopy makes WriteRemus send checkpoint 0 as live migration does,
	// in rounds: a first round of every pfn in which a third of the pages
	// carry stale content (what the guest later overwrote) and a fifth are
	// XTAB (not yet populated), then a round that sends those again as
	// they end up. The state after checkpoint 0 is the same.
	Precopy bool
}

func (g Guest) image() memimage.Image {
	return memimage.Image{Seed: g.Seed, Pages: g.Pages, Gen: g.Gen, Dirty: g.Dirty, Mix: memimage.DefaultMix}
}

type writer struct {
	w   io.Writer
	err error
	n   int64
}

func (w *writer) put(b []byte) {
	if w.err == nil {
		var k int
		k, w.err = w.w.Write(b)
		w.n += int64(k)
	}
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// record writes a record header, body and zero padding.
func (w *writer) record(typ uint32, body ...[]byte) {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	hdr := binary.LittleEndian.AppendUint32(le32(typ), uint32(n))
	w.put(hdr)
	for _, b := range body {
		w.put(b)
	}
	w.put(make([]byte, (8-n%8)%8))
}

// config returns the JSON config xl writes (pretty-printed, NUL-terminated).
func (g Guest) config() []byte {
	typ := "pv"
	if g.HVM {
		typ = "hvm"
	}
	pad := bytes.Repeat([]byte("x"), g.ConfigPad)
	s := fmt.Sprintf(`{
  "c_info": {
    "type": %q,
    "name": %q,
    "uuid": %q,
    "run_hotplug_scripts": "True"
  },
  "b_info": {
    "max_vcpus": %d,
    "avail_vcpus": [0],
    "max_memkb": %d,
    "target_memkb": %d,
    "note": %q
  },
  "on_crash": "preserve"
}`, typ, g.Name, g.UUID, g.VCPUs, g.Pages*4, g.Pages*4, pad)
	return append([]byte(s), 0)
}

// Write writes the guest's xl save image to w.
func (g Guest) Write(out io.Writer) error {
	w := &writer{w: out}
	g.preamble(w)
	g.pageData(w, g.pfns())
	g.endRecords(w)
	w.record(xen.LibxcEnd)
	g.emulator(w)
	w.record(xen.LibxlEnd)
	return w.err
}

// WriteRemus writes what `xl remus` sends for the guest: the same preamble
// as Write, checkpoint 0 with every pfn (the guest at generation g.Gen),
// then checkpoints 1..n, each with only the pages generation g.Gen+i
// dirtied, in ascending batches. Each checkpoint ends with the end-of-
// checkpoint records, libxc CHECKPOINT, the libxl emulator records and
// CHECKPOINT_END. There is no END record: the stream stops when the sender
// does. After checkpoint i the guest's state is Guest{Gen: g.Gen+i}, whose
// Write is the plain image a receiver should publish.
func (g Guest) WriteRemus(out io.Writer, n int) error {
	w := &writer{w: out}
	g.preamble(w)
	for i := 0; i <= n; i++ {
		c := g
		c.Gen = g.Gen + i
		pfns := c.pfns()
		if i == 0 && g.Precopy {
			pfns = c.precopyRound(w, pfns)
		} else if i > 0 {
			im := c.image()
			var dirty []uint64
			for _, e := range pfns {
				if p := int64(e & (1<<52 - 1)); xen.PageCarriesData(uint8(e>>60)) && im.Version(p) == c.Gen {
					dirty = append(dirty, e)
				}
			}
			pfns = dirty
		}
		c.pageData(w, pfns)
		c.endRecords(w)
		w.record(xen.LibxcCheckpoint)
		c.emulator(w)
		w.record(xen.LibxlCheckpointEnd)
	}
	return w.err
}

func (g Guest) seeded(n int, salt uint64) []byte {
	return memimage.Random(n, g.Seed*1000003+salt)
}

// preamble writes everything before the first PAGE_DATA: the xl header and
// JSON config, the libxl header, LIBXC_CONTEXT, the libxc image and domain
// headers and the static records.
func (g Guest) preamble(w *writer) {
	cfg := g.config()
	// xl header and optional data
	w.put(xen.XLMagic)
	w.put(le32(0x01020304))
	w.put(le32(3)) // STREAMv2 | JSON
	w.put(le32(0))
	w.put(le32(uint32(4 + len(cfg))))
	w.put(le32(uint32(len(cfg))))
	w.put(cfg)
	// libxl header, LIBXC_CONTEXT
	w.put([]byte("LibxlFmt"))
	w.put(binary.BigEndian.AppendUint32(nil, 2))
	w.put(binary.BigEndian.AppendUint32(nil, 0))
	w.record(xen.LibxlLibxcContext)
	// libxc image and domain headers
	ih := binary.BigEndian.AppendUint64(nil, ^uint64(0))
	ih = append(ih, "XENF"...)
	ih = binary.BigEndian.AppendUint32(ih, 3)
	ih = append(ih, 0, 0, 0, 0, 0, 0, 0, 0)
	w.put(ih)
	gt := uint32(1)
	if g.HVM {
		gt = 2
	}
	dh := le32(gt)
	dh = binary.LittleEndian.AppendUint16(dh, 12)
	dh = append(dh, 0, 0)
	dh = append(dh, le32(4)...)
	dh = append(dh, le32(17)...)
	w.put(dh)

	cpuid := make([]byte, 24*6)
	for i := 0; i < 6; i++ {
		binary.LittleEndian.PutUint32(cpuid[24*i:], uint32(i))
		copy(cpuid[24*i+8:24*i+24], g.seeded(16, uint64(i)))
	}
	msr := make([]byte, 16*2)
	binary.LittleEndian.PutUint32(msr, 0xce)
	binary.LittleEndian.PutUint64(msr[8:], 0x80000000)
	binary.LittleEndian.PutUint32(msr[16:], 0x10a)
	if !g.HVM {
		w.record(xen.LibxcX86PVInfo, []byte{8, 4, 0, 0, 0, 0, 0, 0})
	}
	w.record(xen.LibxcX86CPUIDPolicy, cpuid)
	w.record(xen.LibxcX86MSRPolicy, msr)
	w.record(xen.LibxcStaticDataEnd)
	if !g.HVM {
		p2m := binary.LittleEndian.AppendUint32(le32(0), uint32(g.Pages-1))
		for i := int64(0); i < (g.Pages+511)/512; i++ {
			p2m = binary.LittleEndian.AppendUint64(p2m, uint64(i+10))
		}
		w.record(xen.LibxcX86PVP2MFrames, p2m)
	}
}

// endRecords writes the records that follow the pages: TSC, shared info
// and vCPU state (PV) or HVM context and params.
func (g Guest) endRecords(w *writer) {
	w.record(xen.LibxcX86TSCInfo, tsc(g.Gen))
	if !g.HVM {
		w.record(xen.LibxcSharedInfo, g.seeded(4096, 100+uint64(g.Gen)))
		for v := 0; v < max(g.VCPUs, 1); v++ {
			hdr := binary.LittleEndian.AppendUint32(le32(uint32(v)), 0)
			w.record(xen.LibxcX86PVVCPUBasic, hdr, g.seeded(5168, 200+uint64(v)+uint64(g.Gen)<<8))
			w.record(xen.LibxcX86PVVCPUExtended, hdr, g.seeded(128, 300+uint64(v)))
			w.record(xen.LibxcX86PVVCPUMSRs, hdr, make([]byte, 16))
		}
		return
	}
	w.record(xen.LibxcHVMContext, g.seeded(1234+8*max(g.VCPUs, 1), 400+uint64(g.Gen)))
	params := binary.LittleEndian.AppendUint32(le32(2), 0)
	for _, kv := range [][2]uint64{{1, 0xfeffc}, {2, 0xfeffd}} {
		params = binary.LittleEndian.AppendUint64(params, kv[0])
		params = binary.LittleEndian.AppendUint64(params, kv[1])
	}
	w.record(xen.LibxcHVMParams, params)
}

// emulator writes the libxl emulator records (HVM: QEMU's state).
func (g Guest) emulator(w *writer) {
	if g.HVM {
		emu := binary.LittleEndian.AppendUint32(le32(2), 0)
		w.record(xen.LibxlEmulatorContext, emu, append([]byte("QEVM"), g.seeded(3000, 500+uint64(g.Gen))...))
	}
}

func tsc(gen int) []byte {
	b := le32(0)
	b = append(b, le32(2000000)...)
	b = binary.LittleEndian.AppendUint64(b, uint64(gen)*5e9)
	b = append(b, le32(uint32(gen))...)
	return append(b, le32(0)...)
}

// pfns returns the pfn entries in save order: every pfn of the p2m, those
// past the guest's memory (HVM: the hole below 4 GiB) and ballooned ones
// as XTAB.
func (g Guest) pfns() []uint64 {
	var out []uint64
	for p := int64(0); p < g.Pages; p++ {
		e := uint64(p)
		if p >= g.Pages-g.Ballooned {
			e |= uint64(xen.PFNTypeXTab) << 60
		}
		out = append(out, e)
	}
	if g.HVM {
		// The HVM pfn space runs past the hole below 4 GiB: 0xff000 and up
		// are saved as XTAB entries without data.
		for p := uint64(0xff000); p < 0xff010; p++ {
			out = append(out, p|uint64(xen.PFNTypeXTab)<<60)
		}
	}
	return out
}

// precopyRound writes the first live round of checkpoint 0 (see Precopy)
// and returns the pfns the final round must send again.
func (g Guest) precopyRound(w *writer, pfns []uint64) []uint64 {
	var first, again []uint64
	stale := g.image()
	stale.Seed += 7919
	for _, e := range pfns {
		p := e & (1<<52 - 1)
		switch {
		case !xen.PageCarriesData(uint8(e >> 60)):
			first = append(first, e)
		case p%5 == 1:
			first = append(first, p|uint64(xen.PFNTypeXTab)<<60)
			again = append(again, e)
		case p%3 == 0:
			first = append(first, e)
			again = append(again, e)
		default:
			first = append(first, e)
		}
	}
	cur := g.image()
	g.pageDataOf(w, first, func(p int64, page []byte) {
		if p%3 == 0 && p%5 != 1 {
			stale.Page(p, page)
		} else {
			cur.Page(p, page)
		}
	})
	return again
}

// pageData writes the PAGE_DATA batches of 1024 pfns (a short last one).
func (g Guest) pageData(w *writer, pfns []uint64) {
	im := g.image()
	g.pageDataOf(w, pfns, im.Page)
}

// pageDataOf is pageData with the pages' content from fill.
func (g Guest) pageDataOf(w *writer, pfns []uint64, fill func(pfn int64, page []byte)) {
	page := make([]byte, xen.PageSize)
	for i := 0; i < len(pfns); i += 1024 {
		batch := pfns[i:min(i+1024, len(pfns))]
		hdr := binary.LittleEndian.AppendUint32(le32(uint32(len(batch))), 0)
		var body [][]byte
		body = append(body, hdr)
		desc := make([]byte, 0, 8*len(batch))
		for _, e := range batch {
			desc = binary.LittleEndian.AppendUint64(desc, e)
		}
		body = append(body, desc)
		for _, e := range batch {
			if xen.PageCarriesData(uint8(e >> 60)) {
				fill(int64(e&(1<<52-1)), page)
				body = append(body, append([]byte(nil), page...))
			}
		}
		w.record(xen.LibxcPageData, body...)
	}
}

// Bytes returns the image.
func (g Guest) Bytes() []byte {
	var b bytes.Buffer
	// The pages and a little for the records around them: the buffer
	// grows once, not by doubling (whose copies and clears were most of a
	// benchmark's set-up time).
	b.Grow(int(g.Pages)*(4096+8) + 1<<20)
	if err := g.Write(&b); err != nil {
		panic(err) // bytes.Buffer does not fail
	}
	return b.Bytes()
}
