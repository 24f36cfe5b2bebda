package chunkstore

import (
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/memimage"
)

// BenchmarkCodec compresses and decompresses memory-image-like chunks
// (48 KiB, the default chunker's typical size) with each codec and reports
// the stored/plain ratio and the speeds, raw being the baseline of the run.
func BenchmarkCodec(b *testing.B) {
	img := memimage.Image{Seed: 4, Pages: 16384, Mix: memimage.DefaultMix}.Bytes() // 64 MiB
	const chunk = 48 << 10
	var chunks [][]byte
	for off := 0; off+chunk <= len(img); off += chunk {
		if c := img[off : off+chunk]; !IsZero(c) { // zero chunks are never stored
			chunks = append(chunks, c)
		}
	}
	var plain int
	for _, c := range chunks {
		plain += len(c)
	}
	for _, codec := range []Codec{CodecRaw, CodecS2, CodecZstd} {
		b.Run(codec.String(), func(b *testing.B) {
			var enc, dec time.Duration
			var stored int
			buf := make([]byte, 0, 2*chunk)
			var out []byte
			for i := 0; i < b.N; i++ {
				stored = 0
				for _, c := range chunks {
					t0 := time.Now()
					v := encodeValue(buf[:0], codec, c)
					t1 := time.Now()
					var err error
					out, err = decodeValue(out[:0], v)
					enc += t1.Sub(t0)
					dec += time.Since(t1)
					if err != nil {
						b.Fatal(err)
					}
					stored += len(v)
				}
			}
			n := float64(b.N) * float64(plain) / 1e6
			b.ReportMetric(float64(stored)/float64(plain), "stored/plain")
			b.ReportMetric(n/enc.Seconds(), "encode-MB/s")
			b.ReportMetric(n/dec.Seconds(), "decode-MB/s")
		})
	}
}

// BenchmarkPageCheck is what checking one 4 KiB page on read costs: the
// record's CRC-32C against re-hashing it with BLAKE3 (README's budget).
func BenchmarkPageCheck(b *testing.B) {
	page := memimage.Random(4096, 1)
	rec := appendRecord(nil, Sum(page), page)
	b.Run("crc32c", func(b *testing.B) {
		b.SetBytes(4096)
		for i := 0; i < b.N; i++ {
			if _, _, _, err := parseRecord(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("blake3", func(b *testing.B) {
		b.SetBytes(4096)
		for i := 0; i < b.N; i++ {
			Sum(page)
		}
	})
}
