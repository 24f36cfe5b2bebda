package content

import (
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/test/memimage"
)

// TestCutterMatchesWholeStream checks that cutting piecewise (as the write
// path does) gives the chunks a single pass of restic's chunker gives.
func TestCutterMatchesWholeStream(t *testing.T) {
	data := memimage.Image{Seed: 7, Pages: 2048, Mix: memimage.DefaultMix}.Bytes()
	for _, p := range []Params{DefaultParams, {Min: 512 << 10, Max: 8 << 20, AvgBits: 20}, {Min: 4096, Max: 64 << 10, AvgBits: 13}} {
		got := p.Split(data)
		var want []int
		c := NewCutter(p)
		c.rd.Reset(data)
		c.c.ResetWithBoundaries(&c.rd, Pol, p.Min, p.Max)
		c.c.SetAverageBits(p.AvgBits)
		for {
			ch, err := c.c.Next(nil)
			if err != nil {
				break
			}
			want = append(want, int(ch.Length))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%+v: piecewise %d chunks, whole stream %d chunks", p, len(got), len(want))
		}
		for _, n := range got[:len(got)-1] {
			if uint(n) < p.Min || uint(n) > p.Max {
				t.Fatalf("%+v: chunk of %d bytes", p, n)
			}
		}
	}
}

// TestChunkParams measures, for several chunker parameter sets, how much of
// generation 1 of a memory image (1% of pages dirtied) is new chunks, and how
// many chunks a GiB costs. Run with CKPTFS_MEASURE=1 to print the table the
// README quotes; otherwise it checks the defaults on a small image.
func TestChunkParams(t *testing.T) {
	pages := int64(4096) // 16 MiB
	sets := []Params{DefaultParams}
	if os.Getenv("CKPTFS_MEASURE") != "" {
		pages = 65536 // 256 MiB
		sets = []Params{
			{Min: 512 << 10, Max: 8 << 20, AvgBits: 20}, // restic
			{Min: 128 << 10, Max: 2 << 20, AvgBits: 18},
			{Min: 64 << 10, Max: 1 << 20, AvgBits: 17},
			{Min: 32 << 10, Max: 512 << 10, AvgBits: 16},
			{Min: 16 << 10, Max: 256 << 10, AvgBits: 15},
			{Min: 16 << 10, Max: 128 << 10, AvgBits: 15},
			{Min: 32 << 10, Max: 128 << 10, AvgBits: 14},
			{Min: 40 << 10, Max: 128 << 10, AvgBits: 13},
			{Min: 8 << 10, Max: 128 << 10, AvgBits: 14},
			{Min: 4 << 10, Max: 64 << 10, AvgBits: 13},
		}
	}
	g0 := memimage.Image{Seed: 1, Pages: pages, Mix: memimage.DefaultMix}
	g1 := g0
	g1.Gen, g1.Dirty = 1, 0.01
	d0, d1 := g0.Bytes(), g1.Bytes()
	for _, p := range sets {
		seen := map[chunkstore.ID]bool{}
		start := time.Now()
		off := 0
		var nonzero0 int
		for _, n := range p.Split(d0) {
			c := d0[off : off+n]
			if !chunkstore.IsZero(c) {
				seen[chunkstore.Sum(c)] = true
				nonzero0 += n
			}
			off += n
		}
		el := time.Since(start)
		rnd := memimage.Random(len(d0), 77)
		rs := time.Now()
		p.Split(rnd)
		rndSpeed := float64(len(rnd)) / time.Since(rs).Seconds() / 1e6
		off = 0
		var newBytes, chunks int
		for _, n := range p.Split(d1) {
			c := d1[off : off+n]
			off += n
			chunks++
			if chunkstore.IsZero(c) {
				continue
			}
			if id := chunkstore.Sum(c); !seen[id] {
				newBytes += n
				seen[id] = true
			}
		}
		// Resilience to shifts: the same image behind a 100-byte header.
		shifted := append(make([]byte, 100), d0...)
		copy(shifted, "header")
		off = 0
		var shiftNew int
		for _, n := range p.Split(shifted) {
			c := shifted[off : off+n]
			off += n
			if !chunkstore.IsZero(c) && !seen[chunkstore.Sum(c)] {
				shiftNew += n
			}
		}
		dirty := 0.01 * float64(len(d1))
		t.Logf("min %4dK avg 2^%d max %5dK: gen1 new bytes %6.1f MiB (%.1fx the dirty pages), shifted copy new %5.1f%%, %5.0f chunks/GiB, chunk+hash %.0f MB/s (random data: cut %.0f MB/s)",
			p.Min>>10, p.AvgBits, p.Max>>10, float64(newBytes)/(1<<20), float64(newBytes)/dirty, 100*float64(shiftNew)/float64(len(shifted)),
			float64(chunks)*float64(1<<30)/float64(len(d1)), float64(len(d0))/el.Seconds()/1e6, rndSpeed)
		if p == DefaultParams && float64(newBytes) > 14*dirty {
			t.Errorf("default params: generation 1 stores %.1fx its dirty bytes, want < 14x", float64(newBytes)/dirty)
		}
	}
}

// TestConfigEnsureDefaults: each zero field takes DefaultConfig's, each
// set one stays.
func TestConfigEnsureDefaults(t *testing.T) {
	d := DefaultConfig()
	for _, tc := range []struct {
		name string
		in   Config
		want func(c *Config)
	}{
		{"zero", Config{}, func(c *Config) {}},
		{"window", Config{Window: 1 << 20}, func(c *Config) { c.Window = 1 << 20 }},
		{"params", Config{Params: Params{Min: 4096, Max: 65536, AvgBits: 13}}, func(c *Config) { c.Params = Params{Min: 4096, Max: 65536, AvgBits: 13} }},
		{"batch and cache", Config{BatchBytes: 1 << 20, CacheChunks: 7}, func(c *Config) { c.BatchBytes, c.CacheChunks = 1<<20, 7 }},
		{"memory", Config{WriterMemory: 64 << 20, ReadAhead: 1 << 20}, func(c *Config) { c.WriterMemory, c.ReadAhead = 64<<20, 1<<20 }},
	} {
		want := d
		tc.want(&want)
		got := tc.in.EnsureDefaults()
		got.Pages, want.Pages = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, want)
		}
	}
}
