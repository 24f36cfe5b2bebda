package chunkstore

import (
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/memimage"

	"github.com/dchest/siphash"
	"github.com/minio/highwayhash"
	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
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

// BenchmarkPageHash measures what proving a 4 KiB page equal to the base
// generation's could cost, one page at a time on one core (engine issue,
// item 3): BLAKE3-256 (the chunk id, what is done today), keyed BLAKE3,
// keyed HighwayHash-128 and SipHash-128 (per-store secret keys), xxh3-128
// (unkeyed: a guest that picks its pages can collide it, so it is here
// only as the floor), and BLAKE3-256 of 16 pages as one input (what a
// multi-page SIMD pass could approach: zeebo/blake3 spreads one input's
// 1 KiB chunks over the AVX-512 lanes, a single page fills 4 of 16).
func BenchmarkPageHash(b *testing.B) {
	pages := memimage.Random(16*4096, 7)
	page := pages[:4096]
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	keyed, _ := blake3.NewKeyed(key)
	hh, _ := highwayhash.New128(key)
	var sum [32]byte
	cases := []struct {
		name string
		fn   func()
	}{
		{"blake3-256", func() { Sum(page) }},
		{"blake3-keyed", func() { keyed.Reset(); keyed.Write(page); keyed.Sum(sum[:0]) }},
		{"highwayhash-128-keyed", func() { hh.Reset(); hh.Write(page); hh.Sum(sum[:0]) }},
		{"siphash-128-keyed", func() { siphash.Hash128(0x0706050403020100, 0x0f0e0d0c0b0a0908, page) }},
		{"xxh3-128-unkeyed", func() { xxh3.Hash128(page) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(4096)
			for i := 0; i < b.N; i++ {
				c.fn()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/page")
		})
	}
	b.Run("blake3-256-of-16-pages", func(b *testing.B) {
		b.SetBytes(int64(len(pages)))
		for i := 0; i < b.N; i++ {
			Sum(pages)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/16, "ns/page")
	})
}
