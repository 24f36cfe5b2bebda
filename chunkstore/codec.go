package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Codec says how a chunk value's payload is encoded. The byte values are part
// of the on-disk format: never change or reuse one.
type Codec byte

const (
	CodecRaw  Codec = 0 // payload is the plain chunk
	CodecS2   Codec = 1 // payload is an S2 block (klauspost/compress/s2)
	CodecZstd Codec = 2 // payload is a zstd frame (klauspost/compress/zstd)
)

func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecS2:
		return "s2"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", byte(c))
}

// ParseCodec parses a codec name.
func ParseCodec(s string) (Codec, error) {
	for _, c := range []Codec{CodecRaw, CodecS2, CodecZstd} {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown codec %q (want raw, s2 or zstd)", s)
}

var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
)

// encodeValue appends the value encoding of plain to dst:
//
//	codec (1 byte) | uvarint(len(plain)) | payload
//
// When compression saves less than 1/16 of the bytes, the raw codec is used.
func encodeValue(dst []byte, c Codec, plain []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, binary.MaxVarintLen64+1+s2.MaxEncodedLen(len(plain)))
	}
	dst = append(dst, byte(CodecRaw))
	dst = binary.AppendUvarint(dst, uint64(len(plain)))
	hdr := len(dst)
	switch c {
	case CodecS2:
		need := hdr + s2.MaxEncodedLen(len(plain))
		if cap(dst) < need {
			dst = append(dst[:cap(dst)], make([]byte, need-cap(dst))...)
		}
		out := s2.Encode(dst[hdr:need], plain)
		if len(out) < len(plain)-len(plain)/16 {
			dst[0] = byte(CodecS2)
			return dst[:hdr+len(out)]
		}
	case CodecZstd:
		out := zenc.EncodeAll(plain, dst[:hdr]) // appends after the header
		if len(out)-hdr < len(plain)-len(plain)/16 {
			out[0] = byte(CodecZstd)
			return out
		}
		dst = out[:hdr]
	}
	return append(dst[:hdr], plain...)
}

var errBadValue = errors.New("malformed chunk value")

// decodeValue decodes a value produced by encodeValue, appending to dst.
func decodeValue(dst, v []byte) ([]byte, error) {
	if len(v) < 2 {
		return nil, errBadValue
	}
	c := Codec(v[0])
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > MaxChunkSize {
		return nil, errBadValue
	}
	payload := v[1+k:]
	start := len(dst)
	var out []byte
	var err error
	switch c {
	case CodecRaw:
		out = append(dst, payload...)
	case CodecS2:
		var m int
		m, err = s2.DecodedLen(payload)
		if err == nil && uint64(m) != n {
			err = errBadValue
		}
		if err == nil {
			out = growTo(dst, start+m)
			_, err = s2.Decode(out[start:], payload)
		}
	case CodecZstd:
		out, err = zdec.DecodeAll(payload, dst)
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", errBadValue, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errBadValue, c, err)
	}
	if uint64(len(out)-start) != n {
		return nil, fmt.Errorf("%w: length %d, header says %d", errBadValue, len(out)-start, n)
	}
	return out, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n)
	copy(nb, b)
	return nb
}

// EncodedLen is the size of data's chunk value under codec c: what storing
// it as a new chunk costs.
func EncodedLen(c Codec, data []byte) int { return len(encodeValue(nil, c, data)) }

// DecodedLen is the plain length of encoded value v (ErrCorrupt if its
// header is malformed).
func DecodedLen(v []byte) (int, error) {
	if len(v) < 2 {
		return 0, fmt.Errorf("%w: %w", ErrCorrupt, errBadValue)
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > MaxChunkSize {
		return 0, fmt.Errorf("%w: %w", ErrCorrupt, errBadValue)
	}
	return int(n), nil
}

// DecodeInto decodes value v (as GetManyEncoded hands it) into dst, which
// holds exactly DecodedLen(v) bytes: the plain bytes are written once,
// where they are wanted. A value that does not decode to that length is
// ErrCorrupt, and dst's bytes are then undefined.
func DecodeInto(dst, v []byte) error {
	n, err := DecodedLen(v)
	if err != nil {
		return err
	}
	if len(dst) != n {
		return fmt.Errorf("decoding into %d bytes a value of %d", len(dst), n)
	}
	_, k := binary.Uvarint(v[1:])
	payload := v[1+k:]
	var out []byte
	switch Codec(v[0]) {
	case CodecRaw:
		if len(payload) != n {
			return fmt.Errorf("%w: %w: raw length %d, header says %d", ErrCorrupt, errBadValue, len(payload), n)
		}
		copy(dst, payload)
		return nil
	case CodecS2:
		m, derr := s2.DecodedLen(payload)
		if derr != nil || m != n {
			return fmt.Errorf("%w: %w: s2 length %d (%v), header says %d", ErrCorrupt, errBadValue, m, derr, n)
		}
		out, err = s2.Decode(dst, payload)
	case CodecZstd:
		out, err = zdec.DecodeAll(payload, dst[:0:n])
	default:
		return fmt.Errorf("%w: %w: unknown codec %d", ErrCorrupt, errBadValue, v[0])
	}
	if err != nil {
		return fmt.Errorf("%w: %w: %v", ErrCorrupt, errBadValue, err)
	}
	if len(out) != n {
		return fmt.Errorf("%w: %w: length %d, header says %d", ErrCorrupt, errBadValue, len(out), n)
	}
	if n > 0 && &out[0] != &dst[0] { // the decoder did not write in place
		copy(dst, out)
	}
	return nil
}
