package xen_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

type result struct {
	pages   []xen.Page
	noData  int
	records map[string]int
	config  string
	dom     xen.DomainHeader
	done    bool
	err     error
	ckpts   []int // pages seen by the end of each checkpoint
}

// scan feeds b to a scanner in pieces of random sizes.
func scan(b []byte, seed uint64) result {
	r := result{records: map[string]int{}}
	s := xen.NewScanner(xen.Handler{
		Page:     func(p xen.Page) { r.pages = append(r.pages, p) },
		NoData:   func(uint64, uint8) { r.noData++ },
		Record:   func(rec xen.Record) { r.records[string(rec.Layer)+":"+xen.RecordName(rec.Layer, rec.Type)]++ },
		Config:   func(j []byte) { r.config = string(j) },
		LibxcHdr: func(d xen.DomainHeader) { r.dom = d },
		Checkpoint: func(n int, _ int64) {
			if n == len(r.ckpts) {
				r.ckpts = append(r.ckpts, len(r.pages))
			}
		},
	})
	rnd := rand.New(rand.NewPCG(seed, 1))
	for len(b) > 0 {
		n := min(len(b), 1+rnd.IntN(1<<uint(rnd.IntN(21))))
		s.Write(b[:n])
		b = b[n:]
	}
	r.done, r.err = s.Done(), s.Err()
	return r
}

func TestScanGenerated(t *testing.T) {
	for _, g := range []xentest.Guest{
		{Name: "pv", UUID: "u1", Pages: 2500, VCPUs: 2, Seed: 1},
		{Name: "hvm", UUID: "u2", HVM: true, Pages: 2100, VCPUs: 1, Seed: 2},
		{Name: "pv", UUID: "u1", Pages: 2500, VCPUs: 1, Seed: 1, Gen: 3, Dirty: 0.1, Ballooned: 77, ConfigPad: 5},
	} {
		t.Run(fmt.Sprintf("%s-gen%d", g.Name, g.Gen), func(t *testing.T) {
			img := g.Bytes()
			for seed := uint64(0); seed < 5; seed++ {
				r := scan(img, seed)
				if r.err != nil || !r.done {
					t.Fatalf("scan: done=%v err=%v", r.done, r.err)
				}
				want := g.Pages - g.Ballooned
				if int64(len(r.pages)) != want {
					t.Fatalf("%d pages, want %d", len(r.pages), want)
				}
				wantNoData := int(g.Ballooned)
				if g.HVM {
					wantNoData += 16
				}
				if r.noData != wantNoData {
					t.Fatalf("%d entries without data, want %d", r.noData, wantNoData)
				}
				im := memimage.Image{Seed: g.Seed, Pages: g.Pages, Gen: g.Gen, Dirty: g.Dirty, Mix: memimage.DefaultMix}
				page := make([]byte, xen.PageSize)
				for _, p := range r.pages[:50] {
					im.Page(int64(p.PFN), page)
					if !bytes.Equal(img[p.Off:p.Off+xen.PageSize], page) {
						t.Fatalf("page pfn %d at offset %d is not the page's payload", p.PFN, p.Off)
					}
				}
				if !strings.Contains(r.config, `"uuid": "`+g.UUID+`"`) {
					t.Fatalf("config: %q", r.config)
				}
				wantType := uint32(1)
				if g.HVM {
					wantType = 2
				}
				if r.dom.GuestType != wantType || r.dom.Version != 3 {
					t.Fatalf("domain header %+v", r.dom)
				}
				batches := int((g.Pages + 1023) / 1024)
				if g.HVM {
					batches = int((g.Pages + 16 + 1023) / 1024)
				}
				if r.records["libxc:PAGE_DATA"] != batches || r.records["libxl:END"] != 1 || r.records["libxc:END"] != 1 {
					t.Fatalf("records %v", r.records)
				}
			}
		})
	}
}

// TestScanErrors damages a generated stream in one place each and checks
// that the error names the layer, the record and the offset.
func TestScanErrors(t *testing.T) {
	g := xentest.Guest{Name: "pv", UUID: "u", Pages: 1100, VCPUs: 1, Seed: 3}
	img := g.Bytes()
	le := binary.LittleEndian
	cfgLen := int(le.Uint32(img[48:]))
	libxl := 52 + cfgLen
	libxc := libxl + 16 + 8
	firstRec := libxc + 40 // X86_PV_INFO header
	// find the first PAGE_DATA record
	var pageRec int
	xen.NewScanner(xen.Handler{Record: func(r xen.Record) {
		if r.Layer == xen.LayerLibxc && r.Type == xen.LibxcPageData && pageRec == 0 {
			pageRec = int(r.Off)
		}
	}}).Write(img)
	for _, tc := range []struct {
		name   string
		mutate func(b []byte) []byte
		want   string // substring of the error
		off    int
	}{
		{"bad magic", func(b []byte) []byte { b[0] = 'x'; return b }, "xl: not an xl save file", 0},
		{"byte order", func(b []byte) []byte { le.PutUint32(b[32:], 0x04030201); return b }, "xl: byte order", 32},
		{"legacy stream", func(b []byte) []byte { le.PutUint32(b[36:], 1); return b }, "legacy (v1) stream", 36},
		{"unknown mandatory flag", func(b []byte) []byte { le.PutUint32(b[36:], 7); return b }, "unknown mandatory flags", 36},
		{"huge optional data", func(b []byte) []byte { le.PutUint32(b[44:], 1<<30); return b }, "optional data", 44},
		{"libxl ident", func(b []byte) []byte { b[libxl] = 'X'; return b }, "libxl: bad stream ident", libxl},
		{"libxl version", func(b []byte) []byte { binary.BigEndian.PutUint32(b[libxl+8:], 3); return b }, "libxl: stream version 3", libxl + 8},
		{"libxc marker", func(b []byte) []byte { b[libxc] = 0; return b }, "libxc: bad image header", libxc},
		{"libxc version", func(b []byte) []byte { binary.BigEndian.PutUint32(b[libxc+12:], 4); return b }, "stream version 4", libxc + 12},
		{"guest type", func(b []byte) []byte { le.PutUint32(b[libxc+24:], 7); return b }, "guest type 7", libxc + 24},
		{"page shift", func(b []byte) []byte { b[libxc+28] = 13; return b }, "page shift 13", libxc + 28},
		{"unknown libxc record", func(b []byte) []byte { le.PutUint32(b[firstRec:], 0x55); return b }, "libxc UNKNOWN(0x55) record: unknown mandatory", firstRec},
		{"libxc record too long", func(b []byte) []byte { le.PutUint32(b[firstRec+4:], 1<<30); return b }, "X86_PV_INFO record: length", firstRec + 4},
		{"page count zero", func(b []byte) []byte { le.PutUint32(b[pageRec+8:], 0); return b }, "PAGE_DATA record: pfn count 0", pageRec + 8},
		{"page length mismatch", func(b []byte) []byte { le.PutUint32(b[pageRec+8:], 1000); return b }, "PAGE_DATA record: length", pageRec + 4},
		{"pfn type 5", func(b []byte) []byte { b[pageRec+16+7] = 0x50; return b }, "PAGE_DATA record: bad pfn entry", pageRec + 16},
		{"pfn reserved bits", func(b []byte) []byte { b[pageRec+16+6] = 0x10; return b }, "bad pfn entry", pageRec + 16},
		{"data after END", func(b []byte) []byte { return append(b, 1, 2, 3) }, "data after the END record", len(img)},
		{"two images", func(b []byte) []byte { return append(b, img...) }, "data after the END record", len(img)},
		{"libxl END with body", func(b []byte) []byte { le.PutUint32(b[len(b)-4:], 8); return append(b, make([]byte, 8)...) }, "libxl END record: length 8", len(img) - 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), img...))
			r := scan(b, 1)
			var e *xen.Error
			if r.err == nil || !strings.Contains(r.err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", r.err, tc.want)
			}
			if err, ok := r.err.(*xen.Error); ok {
				e = err
			}
			if tc.off >= 0 && e.Off != int64(tc.off) {
				t.Fatalf("error at offset %d, want %d (%v)", e.Off, tc.off, r.err)
			}
		})
	}
	// Truncated: no error, not done.
	r := scan(img[:len(img)-100], 2)
	if r.err != nil || r.done {
		t.Fatalf("truncated: err %v done %v", r.err, r.done)
	}
}

// TestScanPadding: a non-zero byte in a record's padding is an error at
// that byte (HVM streams have padded records: HVM_CONTEXT, EMULATOR_CONTEXT).
func TestScanPadding(t *testing.T) {
	b := xentest.Guest{Name: "h", UUID: "u", HVM: true, Pages: 100, VCPUs: 1, Seed: 4}.Bytes()
	var at int64 = -1
	var name string
	xen.NewScanner(xen.Handler{Record: func(r xen.Record) {
		if at < 0 && r.Len%8 != 0 {
			at, name = r.Off+8+int64(r.Len), xen.RecordName(r.Layer, r.Type)
		}
	}}).Write(b)
	if at < 0 {
		t.Fatal("no padded record in the HVM image")
	}
	b[at] = 0xAA
	r := scan(b, 3)
	if r.err == nil || !strings.Contains(r.err.Error(), name+" record: non-zero padding") {
		t.Fatalf("error %v, want non-zero padding in %s", r.err, name)
	}
}

func FuzzScanner(f *testing.F) {
	f.Add(xentest.Guest{Name: "a", UUID: "u", Pages: 5, VCPUs: 1, Seed: 1}.Bytes(), uint64(1))
	f.Add(xentest.Guest{Name: "b", UUID: "u", HVM: true, Pages: 3, VCPUs: 1, Seed: 1}.Bytes(), uint64(2))
	f.Add(append([]byte(nil), xen.XLMagic...), uint64(3))
	var remus bytes.Buffer
	xentest.Guest{Name: "r", UUID: "u", Pages: 6, VCPUs: 1, Seed: 1, Dirty: 0.5}.WriteRemus(&remus, 2)
	f.Add(remus.Bytes(), uint64(4))
	f.Fuzz(func(t *testing.T, b []byte, seed uint64) {
		whole := scan(b, 0)
		pieces := scan(b, seed)
		if fmt.Sprint(whole.pages) != fmt.Sprint(pieces.pages) || fmt.Sprint(whole.err) != fmt.Sprint(pieces.err) ||
			whole.done != pieces.done || fmt.Sprint(whole.ckpts) != fmt.Sprint(pieces.ckpts) {
			t.Fatalf("piecewise scan differs from whole: %v / %v", whole.err, pieces.err)
		}
		for _, p := range whole.pages {
			// A page is reported when its payload begins; a truncated
			// stream may end inside it.
			if p.Off < 0 || p.Off > int64(len(b)) {
				t.Fatalf("page at %d outside the input", p.Off)
			}
		}
	})
}

// TestScanRemus: a checkpointed stream as xl remus sends it (checkpoint 0
// with every page, then only dirtied pages, no END) parses in random
// pieces; each checkpoint ends where expected, every page payload holds
// that generation's content, and a stream cut short reports only the
// checkpoints it completed.
func TestScanRemus(t *testing.T) {
	for _, g := range []xentest.Guest{
		{Name: "pv", UUID: "u1", Pages: 2500, VCPUs: 2, Seed: 1, Dirty: 0.05},
		{Name: "hvm", UUID: "u2", HVM: true, Pages: 2100, VCPUs: 1, Seed: 2, Dirty: 0.05},
	} {
		t.Run(g.Name, func(t *testing.T) {
			const n = 3
			stream := remusStream(t, g, n)
			// Pages each checkpoint must carry: all, then generation i's dirty ones.
			var want []int
			total := 0
			for i := 0; i <= n; i++ {
				c := g
				c.Gen = i
				im := memimage.Image{Seed: c.Seed, Pages: c.Pages, Gen: i, Dirty: c.Dirty, Mix: memimage.DefaultMix}
				k := 0
				for p := int64(0); p < c.Pages; p++ {
					if i == 0 || im.Version(p) == i {
						k++
					}
				}
				total += k
				want = append(want, total)
			}
			for seed := uint64(0); seed < 4; seed++ {
				r := scan(stream, seed)
				if r.err != nil || r.done {
					t.Fatalf("scan: done=%v err=%v (a remus stream has no END)", r.done, r.err)
				}
				if fmt.Sprint(r.ckpts) != fmt.Sprint(want) {
					t.Fatalf("pages by checkpoint end %v, want %v", r.ckpts, want)
				}
				// Page contents: checkpoint i's pages are generation i's.
				ck, page := 0, make([]byte, xen.PageSize)
				for k, p := range r.pages {
					for k >= r.ckpts[ck] {
						ck++
					}
					im := memimage.Image{Seed: g.Seed, Pages: g.Pages, Gen: ck, Dirty: g.Dirty, Mix: memimage.DefaultMix}
					im.Page(int64(p.PFN), page)
					if !bytes.Equal(stream[p.Off:p.Off+xen.PageSize], page) {
						t.Fatalf("checkpoint %d, pfn %#x: wrong payload at %d", ck, p.PFN, p.Off)
					}
				}
			}
			cut := scan(stream[:len(stream)-100], 1)
			if cut.err != nil || len(cut.ckpts) != n {
				t.Fatalf("cut stream: %d checkpoints, err %v; want %d", len(cut.ckpts), cut.err, n)
			}
		})
	}
	// CHECKPOINT must be empty.
	var b bytes.Buffer
	xentest.Guest{Name: "x", UUID: "u", Pages: 4, VCPUs: 1, Seed: 1}.WriteRemus(&b, 0)
	bad := b.Bytes()
	i := bytes.LastIndex(bad, []byte{xen.LibxcCheckpoint, 0, 0, 0, 0, 0, 0, 0})
	bad[i+4] = 8
	if r := scan(bad, 0); r.err == nil || !strings.Contains(r.err.Error(), "CHECKPOINT") {
		t.Fatalf("non-empty CHECKPOINT: %v", r.err)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want xen.Config
		err  bool
	}{
		{`{"c_info":{"type":"pv","name":"web","uuid":"u-1"},"b_info":{"max_memkb":131072,"max_vcpus":2}}`, xen.Config{Name: "web", UUID: "u-1", Type: "pv", MaxMemKB: 131072, MaxVCPUs: 2}, false},
		{`{"c_info":{"name":"x"}}`, xen.Config{Name: "x"}, false},
		{`{}`, xen.Config{}, false},
		{`{"c_info":`, xen.Config{}, true},
	} {
		got, err := xen.ParseConfig([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseConfig(%s) = %+v, %v", tc.in, got, err)
		}
	}
}

// TestGuestUUID: the UUID is read from a prefix holding the config, not
// before; a stream that is no xl save image is decided with no UUID.
func TestGuestUUID(t *testing.T) {
	img := xentest.Guest{Name: "g", UUID: "6a9b3c1e-0000-4000-8000-000000000042", Pages: 64, VCPUs: 1, Seed: 1}.Bytes()
	if u, ok := xen.GuestUUID(img[:16]); ok || u != "" {
		t.Fatalf("16 bytes: %q, %v; want undecided", u, ok)
	}
	if u, ok := xen.GuestUUID(img[:min(len(img), 64<<10)]); !ok || u != "6a9b3c1e-0000-4000-8000-000000000042" {
		t.Fatalf("64 KiB: %q, %v", u, ok)
	}
	if u, ok := xen.GuestUUID(bytes.Repeat([]byte("not an image"), 100)); !ok || u != "" {
		t.Fatalf("not an image: %q, %v", u, ok)
	}
}
