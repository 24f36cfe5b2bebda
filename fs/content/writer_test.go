package content

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// model runs operations against a Writer and a plain byte slice, and checks
// that reads agree, before and after commit, and through a fresh reader of
// the committed version.
type model struct {
	t    testing.TB
	s    *Store
	x    *index.Index
	ino  uint64
	w    *Writer
	want []byte // the file as written
	cur  Cursor
	now  int64
}

func newModel(t testing.TB) *model {
	s, x, _ := TestStore(t)
	in, err := x.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	return &model{t: t, s: s, x: x, ino: in.Ino, w: s.NewWriter(in)}
}

func (m *model) write(off int64, p []byte) {
	m.now++
	if err := m.w.WriteAt(p, off, m.now); err != nil {
		m.t.Fatalf("write %d@%d: %v", len(p), off, err)
	}
	if len(p) == 0 {
		return
	}
	if end := off + int64(len(p)); end > int64(len(m.want)) {
		m.want = append(m.want, make([]byte, end-int64(len(m.want)))...)
	}
	copy(m.want[off:], p)
}

func (m *model) truncate(n int64) {
	m.now++
	if err := m.w.Truncate(n, m.now); err != nil {
		m.t.Fatalf("truncate %d: %v", n, err)
	}
	if n < int64(len(m.want)) {
		m.want = m.want[:n]
	} else {
		m.want = append(m.want, make([]byte, n-int64(len(m.want)))...)
	}
}

func (m *model) check(what string) {
	m.t.Helper()
	if m.w.Size() != int64(len(m.want)) {
		m.t.Fatalf("%s: size %d, want %d", what, m.w.Size(), len(m.want))
	}
	got := make([]byte, len(m.want)+100)
	n, err := m.w.ReadAt(&m.cur, got, 0)
	if err != nil {
		m.t.Fatalf("%s: read: %v", what, err)
	}
	if !bytes.Equal(got[:n], m.want) {
		m.t.Fatalf("%s: writer read differs from model (%d bytes, want %d) first at %d", what, n, len(m.want), firstDiff(got[:n], m.want))
	}
	// Reads of a range in odd pieces.
	if len(m.want) > 10 {
		off := int64(len(m.want) / 3)
		piece := make([]byte, 7777)
		n, err := m.w.ReadAt(&m.cur, piece, off)
		if err != nil || !bytes.Equal(piece[:n], m.want[off:min(int64(len(m.want)), off+7777)]) {
			m.t.Fatalf("%s: piece read at %d differs (%v)", what, off, err)
		}
	}
}

func (m *model) commit() {
	m.t.Helper()
	if _, err := m.w.Commit(); err != nil {
		m.t.Fatalf("commit: %v", err)
	}
	in, err := m.x.Get(m.ino)
	if err != nil {
		m.t.Fatal(err)
	}
	if in.Size != int64(len(m.want)) {
		m.t.Fatalf("committed size %d, want %d", in.Size, len(m.want))
	}
	got := make([]byte, in.Size)
	var c Cursor
	n, err := m.s.ReadCommitted(&c, in.Ino, in.Ver, m.s.NewEpoch(), in.Size, got, 0)
	if err != nil || !bytes.Equal(got[:n], m.want) {
		m.t.Fatalf("committed read differs (%v) first at %d", err, firstDiff(got[:n], m.want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestWriterScenarios(t *testing.T) {
	rnd := memimage.Random(1<<20, 1)
	img := memimage.Image{Seed: 3, Pages: 64, Mix: memimage.DefaultMix}.Bytes()
	zero := make([]byte, 100_000)
	for _, tc := range []struct {
		name string
		run  func(m *model)
	}{
		{"sequential", func(m *model) {
			for off := 0; off < len(rnd); off += 4096 {
				m.write(int64(off), rnd[off:off+4096])
			}
		}},
		{"sequential odd sizes", func(m *model) {
			for off, n := 0, 1; off < 300_000; off, n = off+n, n*7%5000+1 {
				m.write(int64(off), rnd[off:off+n])
			}
		}},
		{"memory image", func(m *model) { m.write(0, img) }},
		{"zeros", func(m *model) { m.write(0, zero); m.write(100_000, rnd[:10]) }},
		{"reordered within window", func(m *model) {
			// pieces arrive as 0, 2, 1, 4, 3, ...
			const n = 8192
			order := []int{0, 2, 1, 4, 3, 6, 5, 8, 7, 9}
			for _, i := range order {
				m.write(int64(i*n), rnd[i*n:(i+1)*n])
			}
		}},
		{"far ahead then fill", func(m *model) {
			m.write(1<<20, rnd[:5000])
			m.write(0, rnd[5000:9000])
		}},
		{"sparse", func(m *model) {
			m.write(10, rnd[:10])
			m.write(500_000, rnd[:10])
			m.truncate(2_000_000)
		}},
		{"overwrite middle", func(m *model) {
			m.write(0, rnd[:200_000])
			m.commit()
			m.write(50_000, rnd[300_000:310_000])
			m.check("before second commit")
			m.commit()
			m.write(199_990, rnd[:20])
			m.write(3, rnd[7:8])
		}},
		{"overwrite with zeros", func(m *model) {
			m.write(0, rnd[:100_000])
			m.commit()
			m.write(20_000, zero[:30_000])
		}},
		{"truncate shrink grow", func(m *model) {
			m.write(0, rnd[:100_000])
			m.truncate(33_333)
			m.check("after shrink")
			m.truncate(50_000)
			m.write(60_000, rnd[:100])
			m.commit()
			m.truncate(10)
			m.write(5, rnd[:3])
		}},
		{"truncate to zero and rewrite", func(m *model) {
			m.write(0, rnd[:100_000])
			m.commit()
			m.truncate(0)
			m.write(0, rnd[1000:50_000])
		}},
		{"append after commit", func(m *model) {
			m.write(0, rnd[:30_000])
			m.commit()
			m.write(30_000, rnd[:30_000])
			m.commit()
			m.write(60_000, rnd[:1])
		}},
		{"rewrite uncut bytes", func(m *model) {
			m.write(0, rnd[:3000])
			m.write(1000, rnd[5000:6000])
			m.write(2500, rnd[9000:12000])
		}},
		{"backwards", func(m *model) {
			for i := 9; i >= 0; i-- {
				m.write(int64(i*3000), rnd[i*3000:(i+1)*3000])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newModel(t)
			tc.run(m)
			m.check("end")
			m.commit()
			m.check("after commit")
		})
	}
}

// TestCommittedSurvivesUncommittedRewrite: until the new version commits,
// the committed content is what a fresh reader sees.
func TestCommittedSurvivesUncommittedRewrite(t *testing.T) {
	m := newModel(t)
	rnd := memimage.Random(200_000, 9)
	m.write(0, rnd)
	m.commit()
	old, _ := m.x.Get(m.ino)
	m.truncate(0)
	m.write(0, rnd[:5000])
	m.write(100, []byte("new"))
	in, _ := m.x.Get(m.ino)
	if in.Ver != old.Ver || in.Size != int64(len(rnd)) {
		t.Fatalf("committed inode changed before commit: %+v", in)
	}
	got := make([]byte, in.Size)
	var c Cursor
	if _, err := m.s.ReadCommitted(&c, in.Ino, in.Ver, m.s.NewEpoch(), in.Size, got, 0); err != nil || !bytes.Equal(got, rnd) {
		t.Fatalf("committed content changed before commit: %v", err)
	}
	m.commit()
}

// FuzzIngest is the ingest round trip: a sequence of writes and truncates
// decoded from the input, then the bytes read back equal the model's.
func FuzzIngest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 0, 0, 1, 0, 20})
	f.Add(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, 20))
	f.Add(memimage.Random(300, 4))
	f.Fuzz(func(t *testing.T, ops []byte) {
		m := newModel(t)
		src := memimage.Random(1<<17, 5)
		for len(ops) >= 5 {
			op := ops[0]
			off := int64(binary.LittleEndian.Uint16(ops[1:])) * 37
			n := int(binary.LittleEndian.Uint16(ops[3:]))
			ops = ops[5:]
			switch op % 8 {
			case 0, 1, 2, 3: // sequential continuation, the common case
				m.write(int64(len(m.want)), src[:n])
			case 4:
				m.write(off, src[n%1000:n%1000+n])
			case 5:
				m.truncate(off)
			case 6:
				m.commit()
			case 7:
				m.write(off, make([]byte, n))
			}
		}
		m.check("fuzz")
		m.commit()
	})
}

func ExampleParams_Split() {
	fmt.Println(len(DefaultParams.Split(make([]byte, 1<<20))))
	// Output: 32
}

var _ = rand.N[int]

// TestWriterMemoryShared: with writer memory for one streaming writer, a
// second open writer writes through (no buffers between its writes); both
// files read back as written, and once the first closes its grant goes to
// the next writer.
func TestWriterMemoryShared(t *testing.T) {
	a := newModel(t)
	a.s.writerMem.Acquire(t.Context(), a.s.cfg.WriterMemory-int64(a.s.cfg.WriterMemoryBound())) // room for one
	in, err := a.x.Create(index.RootIno, "g", index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	b := &model{t: t, s: a.s, x: a.x, ino: in.Ino, w: a.s.NewWriter(in)}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		p := make([]byte, 3000+rng.IntN(5000))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		a.write(int64(len(a.want)), p)
		b.write(int64(len(b.want)), p[:len(p)/2])
		if i == 0 && (!a.w.granted || b.w.granted) {
			t.Fatalf("grants: first writer %v, second %v; want the first only", a.w.granted, b.w.granted)
		}
		if len(b.w.buf) != 0 || len(b.w.ahead) != 0 {
			t.Fatalf("the writer without a grant holds %d bytes between writes", len(b.w.buf))
		}
	}
	if a.s.stats.WritesDirect.Load() != 40 {
		t.Fatalf("%d writes through, want 40", a.s.stats.WritesDirect.Load())
	}
	a.check("streaming")
	b.check("written through")
	a.commit()
	b.commit()
	a.w.Close()
	b.write(int64(len(b.want)), []byte("more"))
	if !b.w.granted {
		t.Fatal("the grant the first writer gave back did not go to the second")
	}
	b.check("after the grant")
}

// TestWriterPipeline: a stream whose chunks repeat every 256 KiB, written
// in xl save's 4 MiB writes, so that several jobs in flight prepare the
// same chunks at once: every byte reads back after every write (a batch
// never references a chunk that a later batch stores), and each repeated
// chunk is stored once.
func TestWriterPipeline(t *testing.T) {
	x, cs := index.TestIndex(t, lineage.Keys)
	s := New(cs, cs, x, DefaultConfig())
	t.Cleanup(s.Close)
	in, err := x.Create(index.RootIno, "f", index.Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	m := &model{t: t, s: s, x: x, ino: in.Ino, w: s.NewWriter(in)}
	defer m.w.Close()
	block := memimage.Random(256<<10, 9)
	data := bytes.Repeat(block, 96) // 24 MiB
	for off := 0; off < len(data); off += 4 << 20 {
		m.write(int64(off), data[off:off+4<<20])
		m.check(fmt.Sprint("after the write at ", off))
	}
	m.commit()
	if got := s.Counters().StoredBytes.Load(); got > 3*int64(len(block)) {
		t.Errorf("stored %d bytes of a stream repeating %d bytes: repeated chunks stored again", got, len(block))
	}
	if s.Counters().ChunksDup.Load() == 0 {
		t.Error("no chunk was found a duplicate")
	}
}

// TestWriterPipelineZeros: runs of zeros (holes: a batch of them has no
// record) streamed while jobs are in flight read back exactly. The
// writer must not move its buffer's bytes under running jobs when such a
// batch is handed over (FuzzIngest found it).
func TestWriterPipelineZeros(t *testing.T) {
	m := newModel(t)
	defer m.w.Close()
	data := memimage.Random(4<<20, 12)
	off := int64(0)
	for i := 0; i < 8; i++ {
		// A write of zeros then data: a job of holes done while the
		// next job (data) still runs.
		p := append(make([]byte, 1<<20), data[(i%4)<<20:][:1<<20]...)
		if i%2 == 1 {
			p = data[(i%4)<<20:][:300000]
		}
		m.write(off, p)
		off += int64(len(p))
		m.check(fmt.Sprint("after write ", i))
	}
	m.commit()
}
