package xen

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Format constants (Xen 4.17, see doc.go).
const (
	PageSize = 4096

	xlHeaderLen   = 48
	libxlHdrLen   = 16
	libxcImageLen = 24
	libxcDomLen   = 16
	recHdrLen     = 8

	// MaxRecord is the largest record body libxc writes or reads.
	MaxRecord = 128 << 20
	// MaxBatch bounds a PAGE_DATA record's pfn count (Xen writes 1024).
	MaxBatch = 1 << 16
	// MaxOptional bounds the xl optional data (the JSON config).
	MaxOptional = 16 << 20
)

// XLMagic starts every xl save file.
var XLMagic = []byte("Xen saved domain, xl format\n \x00 \r")

// Layer names the stream layer a record belongs to.
type Layer string

const (
	LayerXL    Layer = "xl"
	LayerLibxl Layer = "libxl"
	LayerLibxc Layer = "libxc"
)

// libxl record types.
const (
	LibxlEnd                  = 0
	LibxlLibxcContext         = 1
	LibxlEmulatorXenstoreData = 2
	LibxlEmulatorContext      = 3
	LibxlCheckpointEnd        = 4
	LibxlCheckpointState      = 5
)

// libxc record types.
const (
	LibxcEnd                    = 0x00
	LibxcPageData               = 0x01
	LibxcX86PVInfo              = 0x02
	LibxcX86PVP2MFrames         = 0x03
	LibxcX86PVVCPUBasic         = 0x04
	LibxcX86PVVCPUExtended      = 0x05
	LibxcX86PVVCPUXsave         = 0x06
	LibxcSharedInfo             = 0x07
	LibxcX86TSCInfo             = 0x08
	LibxcHVMContext             = 0x09
	LibxcHVMParams              = 0x0A
	LibxcToolstack              = 0x0B
	LibxcX86PVVCPUMSRs          = 0x0C
	LibxcVerify                 = 0x0D
	LibxcCheckpoint             = 0x0E
	LibxcCheckpointDirtyPFNList = 0x0F
	LibxcStaticDataEnd          = 0x10
	LibxcX86CPUIDPolicy         = 0x11
	LibxcX86MSRPolicy           = 0x12
	optionalRecord              = 0x80000000
)

var libxlNames = map[uint32]string{
	0: "END", 1: "LIBXC_CONTEXT", 2: "EMULATOR_XENSTORE_DATA", 3: "EMULATOR_CONTEXT",
	4: "CHECKPOINT_END", 5: "CHECKPOINT_STATE",
}

var libxcNames = map[uint32]string{
	0x00: "END", 0x01: "PAGE_DATA", 0x02: "X86_PV_INFO", 0x03: "X86_PV_P2M_FRAMES",
	0x04: "X86_PV_VCPU_BASIC", 0x05: "X86_PV_VCPU_EXTENDED", 0x06: "X86_PV_VCPU_XSAVE",
	0x07: "SHARED_INFO", 0x08: "X86_TSC_INFO", 0x09: "HVM_CONTEXT", 0x0A: "HVM_PARAMS",
	0x0B: "TOOLSTACK", 0x0C: "X86_PV_VCPU_MSRS", 0x0D: "VERIFY", 0x0E: "CHECKPOINT",
	0x0F: "CHECKPOINT_DIRTY_PFN_LIST", 0x10: "STATIC_DATA_END", 0x11: "X86_CPUID_POLICY",
	0x12: "X86_MSR_POLICY",
}

// RecordName returns the spec's name of a record type in a layer.
func RecordName(l Layer, typ uint32) string {
	names := libxcNames
	if l == LayerLibxl {
		names = libxlNames
	}
	if n, ok := names[typ]; ok {
		return n
	}
	if typ&optionalRecord != 0 {
		return fmt.Sprintf("OPTIONAL(%#x)", typ)
	}
	return fmt.Sprintf("UNKNOWN(%#x)", typ)
}

// PFN type nibbles (XEN_DOMCTL_PFINFO_* >> 28), bits 60-63 of a pfn entry.
const (
	PFNTypeBroken = 0xD
	PFNTypeXAlloc = 0xE
	PFNTypeXTab   = 0xF
)

// PageCarriesData reports whether a pfn entry of this type nibble is
// followed by 4096 bytes of page data.
func PageCarriesData(typ uint8) bool { return typ <= 4 || (typ >= 9 && typ <= 0xC) }

func validPFNType(typ uint8) bool { return typ < 5 || typ > 8 }

// Error is a parse error: where, in which layer and record.
type Error struct {
	Off    int64 // stream offset of the offending field
	Layer  Layer
	Record string // record name, "" for stream headers
	Msg    string
}

func (e *Error) Error() string {
	if e.Record != "" {
		return fmt.Sprintf("xl save stream: offset %d: %s %s record: %s", e.Off, e.Layer, e.Record, e.Msg)
	}
	return fmt.Sprintf("xl save stream: offset %d: %s: %s", e.Off, e.Layer, e.Msg)
}

// Record describes one record as the scanner meets it.
type Record struct {
	Layer Layer
	Type  uint32
	Off   int64  // offset of the record header
	Len   uint32 // body length, without padding
}

// Page describes one page payload: 4096 bytes at Off in the stream. It is
// reported when the payload begins, before its bytes arrive.
type Page struct {
	Off  int64
	PFN  uint64
	Type uint8
}

// Handler receives what the scanner finds. Any field may be nil.
type Handler struct {
	Header   func(h Header)
	Config   func(json []byte)
	Record   func(r Record)
	Page     func(p Page)
	NoData   func(pfn uint64, typ uint8) // pfn entries without data (XTAB, XALLOC, BROKEN)
	LibxcHdr func(d DomainHeader)
	// Checkpoint reports the end of checkpoint n (0, 1, ...) of a
	// checkpointed stream (xl remus): the libxl CHECKPOINT_END that follows
	// a libxc CHECKPOINT. off is the stream offset just past it.
	Checkpoint func(n int, off int64)
}

// Header is the xl header.
type Header struct {
	MandatoryFlags, OptionalFlags, OptionalLen uint32
}

// DomainHeader is the libxc image and domain header.
type DomainHeader struct {
	Version   uint32 // libxc stream version, 2 or 3
	GuestType uint32 // 1 x86 PV, 2 x86 HVM
	PageShift uint16
	XenMajor  uint32
	XenMinor  uint32
}

type state int

const (
	stXLHeader state = iota
	stXLOptional
	stLibxlHeader
	stLibxlRecHdr
	stLibxlBody
	stLibxcImage
	stLibxcDomain
	stLibxcRecHdr
	stLibxcBody
	stPageHdr
	stPageDescs
	stPagePayload
	stPad
	stDone
	stFailed
)

// Scanner parses an xl save stream pushed to it with Write, in pieces of
// any size. It never fails a Write: after a parse error it ignores the rest
// of the input and Err reports the error.
type Scanner struct {
	h   Handler
	off int64 // stream offset of the next byte
	st  state
	err error

	buf  []byte // header or small body being collected
	need int    // bytes buf must reach

	rec       Record
	skip      int64 // body bytes still to pass (uncollected)
	pad       int   // padding bytes still to pass
	padAfter  state
	pfns      []uint64
	pageIdx   int // next pfn entry to consider
	pagesLeft int // data pages still expected in the batch
	pageOff   int // bytes of the current page already passed
	dom       DomainHeader
	Records   int  // records seen
	inCkpt    bool // libxl records after a libxc CHECKPOINT
	ckpts     int  // checkpoints ended
}

// NewScanner returns a scanner that reports to h.
func NewScanner(h Handler) *Scanner {
	return &Scanner{h: h, st: stXLHeader, need: xlHeaderLen}
}

// Err returns the parse error, if any.
func (s *Scanner) Err() error { return s.err }

// Done reports whether the stream ended with the libxl END record.
func (s *Scanner) Done() bool { return s.st == stDone }

// Offset is the number of bytes consumed.
func (s *Scanner) Offset() int64 { return s.off }

func (s *Scanner) fail(off int64, l Layer, rec, format string, a ...any) {
	s.err = &Error{Off: off, Layer: l, Record: rec, Msg: fmt.Sprintf(format, a...)}
	s.st = stFailed
}

// Write consumes p. It always returns len(p), nil.
func (s *Scanner) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && s.st != stFailed {
		if s.st == stDone {
			s.fail(s.off, LayerLibxl, "", "data after the END record")
			break
		}
		var k int
		switch {
		case s.need > 0: // collecting a header into buf
			k = min(len(p), s.need-len(s.buf))
			s.buf = append(s.buf, p[:k]...)
			if len(s.buf) == s.need {
				s.off += int64(k)
				hdr := s.buf
				s.buf, s.need = s.buf[:0], 0
				s.parsed(hdr)
				p = p[k:]
				continue
			}
		case s.skip > 0:
			k = int(min(int64(len(p)), s.skip))
			s.skip -= int64(k)
			if s.skip == 0 {
				s.off += int64(k)
				p = p[k:]
				s.afterBody()
				continue
			}
		case s.pad > 0:
			k = min(len(p), s.pad)
			if !isZero(p[:k]) {
				s.fail(s.off, s.rec.Layer, RecordName(s.rec.Layer, s.rec.Type), "non-zero padding")
				break
			}
			s.pad -= k
			if s.pad == 0 {
				s.off += int64(k)
				p = p[k:]
				s.next(s.padAfter)
				continue
			}
		case s.st == stPagePayload:
			k = min(len(p), PageSize-s.pageOff)
			s.pageOff += k
			if s.pageOff == PageSize {
				s.off += int64(k)
				p = p[k:]
				s.pageOff = 0
				s.pagesLeft--
				s.nextPage()
				continue
			}
		default:
			s.fail(s.off, LayerLibxc, "", "internal: state %d with nothing to read", s.st)
			return n, nil
		}
		s.off += int64(k)
		p = p[k:]
	}
	return n, nil
}

func isZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// expect makes the scanner collect n bytes for state st.
func (s *Scanner) expect(st state, n int) {
	s.st, s.need = st, n
	if cap(s.buf) < n {
		s.buf = make([]byte, 0, n)
	}
}

// next moves to the state that reads the next header of st.
func (s *Scanner) next(st state) {
	switch st {
	case stLibxlRecHdr, stLibxcRecHdr:
		s.expect(st, recHdrLen)
	default:
		s.st = st
	}
}

func padLen(n uint32) int { return int((8 - n%8) % 8) }

// parsed handles a complete header (or small body) in hdr.
func (s *Scanner) parsed(hdr []byte) {
	start := s.off - int64(len(hdr))
	le := binary.LittleEndian
	be := binary.BigEndian
	switch s.st {
	case stXLHeader:
		if !bytes.Equal(hdr[:32], XLMagic) {
			s.fail(start, LayerXL, "", "not an xl save file (bad magic)")
			return
		}
		if bo := le.Uint32(hdr[32:]); bo != 0x01020304 {
			s.fail(start+32, LayerXL, "", "byte order %#x, want little-endian 0x01020304", bo)
			return
		}
		h := Header{MandatoryFlags: le.Uint32(hdr[36:]), OptionalFlags: le.Uint32(hdr[40:]), OptionalLen: le.Uint32(hdr[44:])}
		if h.MandatoryFlags&^3 != 0 {
			s.fail(start+36, LayerXL, "", "unknown mandatory flags %#x", h.MandatoryFlags)
			return
		}
		if h.MandatoryFlags&2 == 0 {
			s.fail(start+36, LayerXL, "", "legacy (v1) stream: not supported")
			return
		}
		if h.OptionalLen > MaxOptional {
			s.fail(start+44, LayerXL, "", "optional data of %d bytes exceeds %d", h.OptionalLen, MaxOptional)
			return
		}
		if s.h.Header != nil {
			s.h.Header(h)
		}
		if h.OptionalLen == 0 {
			s.expect(stLibxlHeader, libxlHdrLen)
			return
		}
		s.expect(stXLOptional, int(h.OptionalLen))
	case stXLOptional:
		if len(hdr) >= 4 && s.h.Config != nil {
			l := le.Uint32(hdr)
			if int64(l) <= int64(len(hdr)-4) {
				s.h.Config(bytes.TrimRight(hdr[4:4+l], "\x00"))
			}
		}
		s.expect(stLibxlHeader, libxlHdrLen)
	case stLibxlHeader:
		if string(hdr[:8]) != "LibxlFmt" {
			s.fail(start, LayerLibxl, "", "bad stream ident %q", hdr[:8])
			return
		}
		if v := be.Uint32(hdr[8:]); v != 2 {
			s.fail(start+8, LayerLibxl, "", "stream version %d, want 2", v)
			return
		}
		if o := be.Uint32(hdr[12:]); o&1 != 0 {
			s.fail(start+12, LayerLibxl, "", "big-endian stream: not supported")
			return
		}
		s.expect(stLibxlRecHdr, recHdrLen)
	case stLibxlRecHdr:
		name := s.recordHeader(LayerLibxl, hdr, start)
		switch t := s.rec.Type; {
		case t == LibxlEnd || t == LibxlLibxcContext || t == LibxlCheckpointEnd:
			if s.rec.Len != 0 {
				s.fail(start+4, LayerLibxl, name, "length %d, want 0", s.rec.Len)
				return
			}
			switch {
			case t == LibxlEnd:
				s.st = stDone
			case t == LibxlLibxcContext:
				s.expect(stLibxcImage, libxcImageLen)
			case s.inCkpt:
				// A checkpoint ends: the libxc stream resumes, with no new
				// LIBXC_CONTEXT or image header (libxl_stream_read.c).
				s.inCkpt = false
				if s.h.Checkpoint != nil {
					s.h.Checkpoint(s.ckpts, start+recHdrLen)
				}
				s.ckpts++
				s.expect(stLibxcRecHdr, recHdrLen)
			default:
				s.expect(stLibxlRecHdr, recHdrLen)
			}
		case t <= LibxlCheckpointState || t&optionalRecord != 0:
			if s.rec.Len > MaxRecord {
				s.fail(start+4, LayerLibxl, name, "length %d exceeds %d", s.rec.Len, MaxRecord)
				return
			}
			s.body(stLibxlBody, stLibxlRecHdr)
		default:
			s.fail(start, LayerLibxl, name, "unknown mandatory record type")
		}
	case stLibxcImage:
		if be.Uint64(hdr) != ^uint64(0) || string(hdr[8:12]) != "XENF" {
			s.fail(start, LayerLibxc, "", "bad image header marker/id")
			return
		}
		v := be.Uint32(hdr[12:])
		if v != 2 && v != 3 {
			s.fail(start+12, LayerLibxc, "", "stream version %d, want 2 or 3", v)
			return
		}
		if be.Uint16(hdr[16:])&1 != 0 {
			s.fail(start+16, LayerLibxc, "", "big-endian stream: not supported")
			return
		}
		s.dom.Version = v
		s.expect(stLibxcDomain, libxcDomLen)
	case stLibxcDomain:
		s.dom.GuestType = le.Uint32(hdr)
		s.dom.PageShift = le.Uint16(hdr[4:])
		s.dom.XenMajor, s.dom.XenMinor = le.Uint32(hdr[8:]), le.Uint32(hdr[12:])
		if s.dom.GuestType != 1 && s.dom.GuestType != 2 {
			s.fail(start, LayerLibxc, "", "guest type %d, want 1 (x86 PV) or 2 (x86 HVM)", s.dom.GuestType)
			return
		}
		if s.dom.PageShift != 12 {
			s.fail(start+4, LayerLibxc, "", "page shift %d, want 12", s.dom.PageShift)
			return
		}
		if s.h.LibxcHdr != nil {
			s.h.LibxcHdr(s.dom)
		}
		s.expect(stLibxcRecHdr, recHdrLen)
	case stLibxcRecHdr:
		name := s.recordHeader(LayerLibxc, hdr, start)
		if s.rec.Len > MaxRecord {
			s.fail(start+4, LayerLibxc, name, "length %d exceeds %d", s.rec.Len, MaxRecord)
			return
		}
		switch t := s.rec.Type; {
		case t == LibxcEnd || t == LibxcCheckpoint:
			if s.rec.Len != 0 {
				s.fail(start+4, LayerLibxc, name, "length %d, want 0", s.rec.Len)
				return
			}
			// Both hand the stream to libxl: END for good, CHECKPOINT until
			// libxl's CHECKPOINT_END.
			s.inCkpt = t == LibxcCheckpoint
			s.expect(stLibxlRecHdr, recHdrLen)
		case t == LibxcPageData:
			if s.rec.Len < 8 {
				s.fail(start+4, LayerLibxc, name, "length %d, want at least 8", s.rec.Len)
				return
			}
			s.expect(stPageHdr, 8)
		case t <= LibxcX86MSRPolicy || t&optionalRecord != 0:
			s.body(stLibxcBody, stLibxcRecHdr)
		default:
			s.fail(start, LayerLibxc, name, "unknown mandatory record type")
		}
	case stPageHdr:
		count := le.Uint32(hdr)
		if count == 0 || count > MaxBatch {
			s.fail(start, LayerLibxc, "PAGE_DATA", "pfn count %d, want 1..%d", count, MaxBatch)
			return
		}
		if uint64(8)+8*uint64(count) > uint64(s.rec.Len) {
			s.fail(start, LayerLibxc, "PAGE_DATA", "pfn count %d does not fit length %d", count, s.rec.Len)
			return
		}
		s.expect(stPageDescs, 8*int(count))
	case stPageDescs:
		s.pfns = s.pfns[:0]
		data := 0
		for i := 0; i < len(hdr); i += 8 {
			e := le.Uint64(hdr[i:])
			typ := uint8(e >> 60)
			if !validPFNType(typ) || (e>>52)&0xff != 0 {
				s.fail(start+int64(i), LayerLibxc, "PAGE_DATA", "bad pfn entry %#x", e)
				return
			}
			s.pfns = append(s.pfns, e)
			if PageCarriesData(typ) {
				data++
			}
		}
		if want := 8 + uint64(len(hdr)) + PageSize*uint64(data); want != uint64(s.rec.Len) {
			s.fail(s.rec.Off+4, LayerLibxc, "PAGE_DATA", "length %d, want %d for %d pfns with %d data pages", s.rec.Len, want, len(s.pfns), data)
			return
		}
		s.pageIdx, s.pagesLeft = 0, data
		s.nextPage()
	default:
		s.fail(start, LayerLibxc, "", "internal: header in state %d", s.st)
	}
}

// recordHeader records the header of a record of layer l and returns the
// record's name.
func (s *Scanner) recordHeader(l Layer, hdr []byte, start int64) string {
	s.rec = Record{Layer: l, Type: binary.LittleEndian.Uint32(hdr), Off: start, Len: binary.LittleEndian.Uint32(hdr[4:])}
	s.Records++
	if s.h.Record != nil {
		s.h.Record(s.rec)
	}
	return RecordName(l, s.rec.Type)
}

// body passes a record body (collecting nothing) then its padding.
func (s *Scanner) body(st, after state) {
	s.st = st
	s.padAfter = after
	s.skip = int64(s.rec.Len)
	s.pad = 0
	if s.skip == 0 {
		s.afterBody()
	}
}

func (s *Scanner) afterBody() {
	s.pad = padLen(s.rec.Len)
	if s.pad == 0 {
		s.next(s.padAfter)
	}
}

// nextPage reports pfn entries up to the next data page, or ends the batch.
func (s *Scanner) nextPage() {
	for s.pageIdx < len(s.pfns) {
		e := s.pfns[s.pageIdx]
		s.pageIdx++
		pfn, typ := e&(1<<52-1), uint8(e>>60)
		if PageCarriesData(typ) {
			if s.h.Page != nil {
				s.h.Page(Page{Off: s.off, PFN: pfn, Type: typ})
			}
			s.st, s.pageOff = stPagePayload, 0
			return
		}
		if s.h.NoData != nil {
			s.h.NoData(pfn, typ)
		}
	}
	// PAGE_DATA bodies are 8 + 8C + 4096N bytes: always 8-aligned, no pad.
	s.expect(stLibxcRecHdr, recHdrLen)
}
