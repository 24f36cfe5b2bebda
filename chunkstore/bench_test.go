package chunkstore

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

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

// BenchmarkValueSeparation writes 1 GiB of incompressible 48 KiB chunks
// into an on-disk store with and without Pebble's value separation, waits
// for compactions to settle, and reports throughput and write
// amplification (bytes Pebble wrote to disk / chunk bytes).
func BenchmarkValueSeparation(b *testing.B) {
	const total, chunk = 1 << 30, 48 << 10
	src := memimage.Random(64<<20, 7)
	for _, vsep := range []bool{false, true} {
		b.Run(fmt.Sprint("vsep=", vsep), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				o := DefaultOptions()
				o.ValueSeparation, o.Codec = vsep, CodecRaw
				s, err := Open(filepath.Join(b.TempDir(), "s"), o)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				batch := s.NewBatch()
				for n := 0; n < total; n += chunk {
					c := src[n%(len(src)-chunk) : n%(len(src)-chunk)+chunk]
					c[0], c[1], c[2] = byte(n), byte(n>>8), byte(n>>16) // unique
					if _, _, err := s.Put(batch, c); err != nil {
						b.Fatal(err)
					}
					if batch.Len() > 4<<20 {
						batch.Commit(pebble.NoSync)
						batch = s.NewBatch()
					}
				}
				batch.Commit(pebble.Sync)
				el := time.Since(start)
				s.DB().Flush()
				for s.DB().Metrics().Compact.NumInProgress > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				m := s.DB().Metrics()
				// Total() folds the WAL into TableBytesFlushed: sum the levels.
				written := m.WAL.BytesWritten
				for _, l := range m.Levels {
					written += l.TableBytesFlushed + l.TableBytesCompacted + l.BlobBytesFlushed + l.BlobBytesCompacted
				}
				b.ReportMetric(total/1e6/el.Seconds(), "put-MB/s")
				b.ReportMetric(float64(written)/total, "write-amp")
				b.ReportMetric(float64(m.DiskSpaceUsage())/total, "disk/data")
				s.Close()
			}
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
