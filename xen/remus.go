package xen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Remus follows a checkpointed stream, as `xl remus` sends it, and at the
// end of every checkpoint describes the plain `xl save` image of the guest
// as of that checkpoint, which stock `xl restore` reads:
//
//	the stream's preamble (xl header and config, libxl header,
//	LIBXC_CONTEXT, libxc image and domain headers, static records),
//	every pfn's latest page in ascending PAGE_DATA batches of 1024,
//	the checkpoint's end records (TSC, shared info and vCPUs, or HVM
//	context and params), libxc END,
//	the checkpoint's libxl records (emulator state), libxl END.
//
// Pages are handed to RemusHandler.Page as they arrive and named by pfn in
// the image, so the caller stores each once and builds each generation
// from references. Memory is the preamble, one checkpoint's non-page
// records, a pfn map (one byte per pfn) and whatever part of the stream a
// Write leaves unfinished; and, while a checkpoint's image is described,
// its pfn lists (16 bytes per pfn).
type Remus struct {
	sc       *Scanner
	h        RemusHandler
	buf      []byte // stream bytes from bufOff on
	bufOff   int64
	events   []remusEvent
	preamble []byte // nil until the first PAGE_DATA
	types    pfnTypes
	endRecs  []byte // this checkpoint's libxc records other than PAGE_DATA and CHECKPOINT
	libxl    []byte // libxl records between CHECKPOINT and CHECKPOINT_END
	inLibxl  bool
	err      error
}

// RemusHandler receives what Remus finds. Page's data, and Checkpoint's
// image, are valid only during the call.
type RemusHandler struct {
	Config     func(json []byte) // the xl JSON config, before any page
	Page       func(pfn uint64, data []byte) error
	Checkpoint func(n int, img *PlainImage) error
}

// PlainImage is a plain xl save image as a sequence of segments, each
// either meta bytes or consecutive page payloads named by pfn. It is
// produced segment by segment (Each), so that describing a big guest's
// image takes memory for one PAGE_DATA batch, not for every pfn.
type PlainImage struct {
	r     *Remus
	pages int64 // pfns sent (each has an entry in a PAGE_DATA batch)
	data  int64 // those whose page carries data
}

// Segment is Meta bytes, or (Meta nil) the payloads of PFNs in order.
type Segment struct {
	Meta []byte
	PFNs []uint64
}

// Size is the image's length in bytes.
func (p *PlainImage) Size() int64 {
	r := p.r
	batches := (p.pages + MaxBatchPlain - 1) / MaxBatchPlain
	meta := int64(len(r.preamble)) + batches*(recHdrLen+8) + 8*p.pages +
		int64(len(r.endRecs)) + recHdrLen + int64(len(r.libxl)) + recHdrLen
	return meta + p.data*PageSize
}

// Each calls fn with the image's segments in order; a segment's slices
// are valid only during the call. It stops at fn's first error.
func (p *PlainImage) Each(fn func(Segment) error) error {
	r := p.r
	meta := slices.Clone(r.preamble)
	batch := make([]uint64, 0, MaxBatchPlain)
	data := make([]uint64, 0, MaxBatchPlain)
	var err error
	flush := func() {
		body := 8 + 8*len(batch) + PageSize*len(data)
		meta = binary.LittleEndian.AppendUint32(meta, LibxcPageData)
		meta = binary.LittleEndian.AppendUint32(meta, uint32(body))
		meta = binary.LittleEndian.AppendUint32(meta, uint32(len(batch)))
		meta = binary.LittleEndian.AppendUint32(meta, 0)
		for _, pfn := range batch {
			meta = binary.LittleEndian.AppendUint64(meta, pfn|uint64(r.types.get(pfn))<<60)
		}
		if len(data) > 0 && err == nil {
			if err = fn(Segment{Meta: meta}); err == nil {
				err = fn(Segment{PFNs: data})
			}
			meta, data = meta[:0], data[:0]
		}
		batch = batch[:0]
	}
	r.types.each(func(pfn uint64, typ uint8) {
		batch = append(batch, pfn)
		if PageCarriesData(typ) {
			data = append(data, pfn)
		}
		if len(batch) == MaxBatchPlain {
			flush()
		}
	})
	if len(batch) > 0 {
		flush()
	}
	if err != nil {
		return err
	}
	meta = append(meta, r.endRecs...)
	meta = append(meta, make([]byte, recHdrLen)...) // libxc END
	meta = append(meta, r.libxl...)
	meta = append(meta, make([]byte, recHdrLen)...) // libxl END
	return fn(Segment{Meta: meta})
}

type remusEvent struct {
	kind     byte // 'r' record, 'p' page, 'c' checkpoint end
	n        int  // checkpoint number ('c')
	rec      Record
	pfn      uint64
	off, end int64 // stream bytes the event needs
}

// NewRemus returns a follower that reports to h.
func NewRemus(h RemusHandler) *Remus {
	r := &Remus{h: h}
	r.sc = NewScanner(Handler{
		Config: h.Config,
		Record: func(rec Record) {
			end := rec.Off + recHdrLen + int64(rec.Len) + int64((8-rec.Len%8)%8)
			r.events = append(r.events, remusEvent{kind: 'r', rec: rec, off: rec.Off, end: end})
		},
		Page: func(p Page) {
			r.types.set(p.PFN, p.Type)
			r.events = append(r.events, remusEvent{kind: 'p', pfn: p.PFN, off: p.Off, end: p.Off + PageSize})
		},
		NoData: func(pfn uint64, typ uint8) { r.types.set(pfn, typ) },
		Checkpoint: func(n int, off int64) {
			r.events = append(r.events, remusEvent{kind: 'c', n: n, off: off, end: off})
		},
	})
	return r
}

// Err returns the stream error (the scanner's, or a handler's) that
// stopped the follower, if any.
func (r *Remus) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.sc.Err()
}

// Offset is how many stream bytes Write has taken.
func (r *Remus) Offset() int64 { return r.sc.Offset() }

// ErrNotCheckpointed is returned when the stream ends (libxl END): it was
// a plain image, not a checkpointed stream.
var ErrNotCheckpointed = errors.New("stream ended with END: not a checkpointed (xl remus) stream")

// Write consumes stream bytes. It returns the first error; the follower is
// then stopped.
func (r *Remus) Write(p []byte) (int, error) {
	if err := r.Err(); err != nil {
		return 0, err
	}
	r.buf = append(r.buf, p...)
	r.sc.Write(p)
	if err := r.drain(); err != nil {
		r.err = err
		return len(p), err
	}
	if r.sc.Done() {
		r.err = ErrNotCheckpointed
		return len(p), r.err
	}
	return len(p), r.sc.Err()
}

// drain handles the events whose bytes have all arrived, in stream order,
// then drops the bytes no later event needs.
func (r *Remus) drain() error {
	have := r.bufOff + int64(len(r.buf))
	i := 0
	for ; i < len(r.events) && r.events[i].end <= have; i++ {
		if err := r.handle(r.events[i]); err != nil {
			return err
		}
	}
	r.events = r.events[i:]
	// A record is reported once its 8-byte header is in: its start may lie
	// in bytes an earlier Write brought, so those stay.
	keep := have - recHdrLen
	if len(r.events) > 0 {
		keep = min(keep, r.events[0].off)
	}
	if r.preamble == nil {
		keep = 0 // the preamble is taken from byte 0 at the first PAGE_DATA
		if have > maxPreamble {
			return fmt.Errorf("no PAGE_DATA in the first %d bytes: not a guest's stream", maxPreamble)
		}
	}
	if keep > r.bufOff {
		r.buf = r.buf[:copy(r.buf, r.buf[keep-r.bufOff:])]
		r.bufOff = keep
	}
	return nil
}

func (r *Remus) bytes(off, end int64) []byte { return r.buf[off-r.bufOff : end-r.bufOff] }

func (r *Remus) handle(e remusEvent) error {
	switch e.kind {
	case 'p':
		if r.h.Page != nil {
			return r.h.Page(e.pfn, r.bytes(e.off, e.end))
		}
	case 'c':
		r.inLibxl = false
		var err error
		if r.h.Checkpoint != nil {
			err = r.h.Checkpoint(e.n, r.image())
		}
		r.endRecs, r.libxl = r.endRecs[:0], r.libxl[:0]
		if err != nil {
			return err
		}
	case 'r':
		rec := e.rec
		switch {
		case rec.Layer == LayerLibxc && rec.Type == LibxcPageData:
			if r.preamble == nil {
				r.preamble = slices.Clone(r.bytes(0, rec.Off))
			}
		case r.preamble == nil: // static records: part of the preamble
		case rec.Layer == LayerLibxc && rec.Type == LibxcCheckpoint:
			r.inLibxl = true
		case rec.Layer == LayerLibxc:
			r.endRecs = append(r.endRecs, r.bytes(e.off, e.end)...)
		case rec.Layer == LayerLibxl && r.inLibxl && rec.Type != LibxlCheckpointEnd:
			r.libxl = append(r.libxl, r.bytes(e.off, e.end)...)
		}
	}
	return nil
}

// image describes the plain image of the checkpoint that just ended.
func (r *Remus) image() *PlainImage {
	img := &PlainImage{r: r}
	r.types.each(func(_ uint64, typ uint8) {
		img.pages++
		if PageCarriesData(typ) {
			img.data++
		}
	})
	return img
}

// maxPreamble bounds the bytes before the first PAGE_DATA (xl header and
// config, static records), which Remus holds.
const maxPreamble = 64 << 20

// MaxBatchPlain is how many pfns a PAGE_DATA record of a plain save
// carries (MAX_BATCH_SIZE in xg_sr_save.c).
const MaxBatchPlain = 1024

// Materialize returns the image's bytes, with page(pfn) giving each
// page's latest content (tests and small images).
func (p *PlainImage) Materialize(page func(pfn uint64) ([]byte, error)) ([]byte, error) {
	out := make([]byte, 0, p.Size())
	err := p.Each(func(s Segment) error {
		out = append(out, s.Meta...)
		for _, pfn := range s.PFNs {
			b, err := page(pfn)
			if err != nil {
				return err
			}
			if len(b) != PageSize {
				return fmt.Errorf("page %#x: %d bytes", pfn, len(b))
			}
			out = append(out, b...)
		}
		return nil
	})
	return out, err
}

// pfnTypes is every pfn's page type, as last sent: a byte per pfn in
// blocks of pfnBlock pfns, allocated as pfns in them are sent, so that a
// guest's dense pfns cost a byte each and a sparse set (HVM holes, fuzzed
// streams) costs its blocks only, in memory and in each.
type pfnTypes struct {
	blocks map[uint64]*[pfnBlock]uint8 // block number -> type | typeKnown (0: never sent)
}

const (
	typeKnown = 0x80
	pfnBlock  = 4096
)

func (t *pfnTypes) set(pfn uint64, typ uint8) {
	b := t.blocks[pfn/pfnBlock]
	if b == nil {
		if t.blocks == nil {
			t.blocks = map[uint64]*[pfnBlock]uint8{}
		}
		b = new([pfnBlock]uint8)
		t.blocks[pfn/pfnBlock] = b
	}
	b[pfn%pfnBlock] = typ&0xf | typeKnown
}

func (t *pfnTypes) get(pfn uint64) uint8 {
	if b := t.blocks[pfn/pfnBlock]; b != nil {
		return b[pfn%pfnBlock] &^ typeKnown
	}
	return 0
}

// each calls fn for every pfn sent, in ascending order.
func (t *pfnTypes) each(fn func(pfn uint64, typ uint8)) {
	for _, n := range slices.Sorted(maps.Keys(t.blocks)) {
		for i, v := range t.blocks[n] {
			if v&typeKnown != 0 {
				fn(n*pfnBlock+uint64(i), v&^typeKnown)
			}
		}
	}
}
