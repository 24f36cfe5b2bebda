package content

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkEngineWrite writes 256 MiB through a Writer on an on-disk store
// in 1 MiB pieces, without FUSE: the engine's own ceiling.
func BenchmarkEngineWrite(b *testing.B) {
	data := memimage.Random(256<<20, 1)
	for _, vsep := range []bool{false, true} {
		b.Run(map[bool]string{false: "inline", true: "vsep"}[vsep], func(b *testing.B) {
			o := chunkstore.DefaultOptions()
			o.ValueSeparation = vsep
			cs, err := chunkstore.Open(filepath.Join(b.TempDir(), "s"), o)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			x, _ := index.Open(cs.DB(), 1, 0, 0)
			s := New(cs.DB(), cs, x, DefaultConfig())
			defer s.Close()
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				in, _ := x.Create(index.RootIno, "f"+string(rune('a'+i)), index.Inode{Mode: syscall.S_IFREG})
				w := s.NewWriter(in)
				data[0] = byte(i)
				for off := 0; off < len(data); off += 1 << 20 {
					if err := w.WriteAt(data[off:off+1<<20], int64(off), 1); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := w.Commit(); err != nil {
					b.Fatal(err)
				}
				w.Close()
			}
		})
	}
}

// BenchmarkEngineRead reads 256 MiB back through ReadCommitted in 128 KiB
// pieces (the kernel's usual read size), without FUSE.
func BenchmarkEngineRead(b *testing.B) {
	data := memimage.Random(256<<20, 1)
	cs, err := chunkstore.Open(filepath.Join(b.TempDir(), "s"), chunkstore.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	x, _ := index.Open(cs.DB(), 1, 0, 0)
	s := New(cs.DB(), cs, x, DefaultConfig())
	defer s.Close()
	in, _ := x.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG})
	w := s.NewWriter(in)
	for off := 0; off < len(data); off += 1 << 20 {
		w.WriteAt(data[off:off+1<<20], int64(off), 1)
	}
	in, _ = w.Commit()
	w.Close()
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.cache.Purge()
		var c Cursor
		for off := int64(0); off < in.Size; off += int64(len(buf)) {
			if _, err := s.ReadCommitted(&c, in.Ino, in.Ver, 1, in.Size, buf, off); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(s.stats.CacheHits.Load())/float64(s.stats.CacheHits.Load()+s.stats.CacheMisses.Load()), "hit-rate")
}

// BenchmarkEngineXen writes generation 0 (all pages new) and generation 1
// (1% dirty) of a 128 MiB generated PV image through a Writer, in page mode
// and, for comparison, through plain CDC (the image behind one extra byte,
// which hides its xl header).
func BenchmarkEngineXen(b *testing.B) {
	for _, mode := range []string{"page", "cdc"} {
		for _, gen := range []int{0, 1} {
			b.Run(fmt.Sprintf("%s/gen%d", mode, gen), func(b *testing.B) {
				g := xentest.Guest{Name: "g", UUID: "u", Pages: 32768, VCPUs: 1, Seed: 3, Dirty: 0.01}
				img0 := g.Bytes()
				g.Gen = gen
				img := g.Bytes()
				if mode == "cdc" {
					img0, img = append([]byte{1}, img0...), append([]byte{1}, img...)
				}
				b.SetBytes(int64(len(img)))
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					cs, err := chunkstore.Open(filepath.Join(b.TempDir(), "s"), chunkstore.DefaultOptions())
					if err != nil {
						b.Fatal(err)
					}
					x, _ := index.Open(cs.DB(), 1, 0, 0)
					cfg := DefaultConfig()
					cfg.XenPages = mode == "page"
					s := New(cs.DB(), cs, x, cfg)
					put := func(name string, data []byte) {
						in, _ := x.Create(index.RootIno, name, index.Inode{Mode: syscall.S_IFREG})
						w := s.NewWriter(in)
						for off := 0; off < len(data); off += 1 << 20 {
							if err := w.WriteAt(data[off:min(len(data), off+1<<20)], int64(off), 1); err != nil {
								b.Fatal(err)
							}
						}
						if _, err := w.Commit(); err != nil {
							b.Fatal(err)
						}
						w.Close()
					}
					if gen > 0 {
						put("base", img0)
					}
					b.StartTimer()
					put("img", img)
					b.StopTimer()
					s.Close()
					cs.Close()
				}
			})
		}
	}
}

// BenchmarkEngineXenRead reads a 128 MiB generated image back in 128 KiB
// pieces, stored in page mode and by CDC, with the chunk cache emptied.
func BenchmarkEngineXenRead(b *testing.B) {
	for _, mode := range []string{"page", "cdc"} {
		b.Run(mode, func(b *testing.B) {
			img := xentest.Guest{Name: "g", UUID: "u", Pages: 32768, VCPUs: 1, Seed: 3}.Bytes()
			cs, err := chunkstore.Open(filepath.Join(b.TempDir(), "s"), chunkstore.DefaultOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			x, _ := index.Open(cs.DB(), 1, 0, 0)
			cfg := DefaultConfig()
			cfg.XenPages = mode == "page"
			s := New(cs.DB(), cs, x, cfg)
			defer s.Close()
			in, _ := x.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG})
			w := s.NewWriter(in)
			for off := 0; off < len(img); off += 1 << 20 {
				w.WriteAt(img[off:min(len(img), off+1<<20)], int64(off), 1)
			}
			in, _ = w.Commit()
			w.Close()
			buf := make([]byte, 128<<10)
			b.SetBytes(int64(len(img)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.cache.Purge()
				var c Cursor
				for off := int64(0); off < in.Size; off += int64(len(buf)) {
					if _, err := s.ReadCommitted(&c, in.Ino, in.Ver, 1, in.Size, buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
