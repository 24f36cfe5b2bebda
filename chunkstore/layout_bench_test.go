package chunkstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ckptfs/ckptfs/test/memimage"
	"github.com/ckptfs/ckptfs/test/sysstat"
)

// layoutPages returns n distinct memory-image pages, encoded with s2 as the
// store encodes them, with their ids: the workload of BenchmarkLayouts.
func layoutPages(n int) ([]ID, [][]byte) {
	im := memimage.Image{Seed: 11, Pages: int64(n) * 2, Mix: memimage.Mix{Repeated: 0, Text: 40, Struct: 35, Random: 25}}
	ids, vals := make([]ID, 0, n), make([][]byte, 0, n)
	page := make([]byte, 4096)
	for p := int64(0); len(ids) < n; p++ {
		im.Page(p, page)
		binary.LittleEndian.PutUint64(page, uint64(p)) // distinct
		ids = append(ids, Sum(page))
		vals = append(vals, encodeValue(nil, CodecS2, page))
	}
	return ids, vals
}

func selfWriteBytes(b *testing.B) int64 {
	n, err := sysstat.WriteBytes("self")
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func dropPageCache(b *testing.B) {
	if err := sysstat.DropCaches(); err != nil {
		b.Skipf("cold reads need root (drop_caches): %v", err)
	}
}

// layout is one candidate way to lay chunk bytes out on disk.
type layout interface {
	prepare(ids []ID)            // what a reader knows before it starts
	put(ids []ID, vals [][]byte) // one batch, in write order
	finish()                     // flush, settle, close what a clean unmount closes
	read(ids []ID) int           // read back and decode in write order; returns chunks
	close()
}

// BenchmarkLayouts writes the same 1 GiB of distinct 4 KiB pages
// (CKPTFS_LAYOUT_MB scales it; s2-compressed as the store stores them) in
// 4 MiB batches through each candidate layout of issue 12, then reads them
// back in write order with the page cache dropped, as a restore of
// generation 0 does:
//
//   - pebble-values: format 2, chunk values in Pebble under their hash
//     (value separation on), read by point lookups;
//   - pebble-ingest: values in sstables keyed by a store-wide sequence
//     number, written directly and added with DB.Ingest, a hash -> sequence
//     index beside them; read with one iterator;
//   - segments: format 3 (this package), records appended to segment files,
//     locators in Pebble; read with GetMany (locator lookups, then one read
//     per run of records);
//   - segments-hinted: the same, read as a restore reads (the page entries'
//     hints give the records' places: no locator lookups).
//
// It reports the bytes the process wrote to disk per chunk byte (write
// amplification: /proc/self/io), the directory's size per chunk byte after
// the clean close, and the write and cold-read speeds.
func BenchmarkLayouts(b *testing.B) {
	mb := 1024
	if v, err := strconv.Atoi(os.Getenv("CKPTFS_LAYOUT_MB")); err == nil && v > 0 {
		mb = v
	}
	ids, vals := layoutPages(mb << 20 / 4096)
	var data int64
	for _, v := range vals {
		data += int64(len(v))
	}
	for _, name := range []string{"pebble-values", "pebble-ingest", "segments", "segments-hinted"} {
		b.Run(name, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "s")
			var l layout
			switch name {
			case "pebble-values":
				l = newPebbleValues(b, dir)
			case "pebble-ingest":
				l = newPebbleIngest(b, dir)
			default:
				l = newSegmentsLayout(b, dir, name == "segments-hinted")
			}
			w0 := selfWriteBytes(b)
			start := time.Now()
			const per = 4 << 20
			for i := 0; i < len(ids); {
				j, n := i, 0
				for ; j < len(ids) && n < per; j++ {
					n += len(vals[j])
				}
				l.put(ids[i:j], vals[i:j])
				i = j
			}
			l.finish()
			el := time.Since(start)
			written := selfWriteBytes(b) - w0
			disk := sysstat.DirBytes(dir, ReserveFile)
			l.prepare(ids)
			dropPageCache(b)
			start = time.Now()
			if got := l.read(ids); got != len(ids) {
				b.Fatalf("read %d chunks, want %d", got, len(ids))
			}
			rd := time.Since(start)
			l.close()
			b.ReportMetric(float64(data)/1e6/el.Seconds(), "put-MB/s")
			b.ReportMetric(float64(written)/float64(data), "write-amp")
			b.ReportMetric(float64(disk)/float64(data), "disk/data")
			b.ReportMetric(float64(len(ids))*4096/1e6/rd.Seconds(), "cold-read-MB/s")
		})
	}
}

func layoutPebbleOptions() *pebble.Options {
	o := &pebble.Options{FormatMajorVersion: pebble.FormatNewest, MemTableSize: 32 << 20, MemTableStopWritesThreshold: 4, Logger: quietLogger{}}
	o.Cache = pebble.NewCache(32 << 20)
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	return o
}

type pebbleValues struct {
	b   *testing.B
	dir string
	db  *pebble.DB
}

func newPebbleValues(b *testing.B, dir string) *pebbleValues {
	o := layoutPebbleOptions()
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{Enabled: true, MinimumSize: 1024, MaxBlobReferenceDepth: 1000, TargetGarbageRatio: 0.01}
	}
	db, err := pebble.Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	return &pebbleValues{b, dir, db}
}

func (p *pebbleValues) put(ids []ID, vals [][]byte) {
	bt := p.db.NewBatch()
	for i := range ids {
		bt.Set(chunkKey(ids[i]), vals[i], nil)
	}
	if err := bt.Commit(pebble.NoSync); err != nil {
		p.b.Fatal(err)
	}
}

// settle flushes db and waits for its compactions.
func settle(db *pebble.DB) {
	db.Flush()
	for db.Metrics().Compact.NumInProgress > 0 {
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pebbleValues) finish() {
	settle(p.db)
	p.db.Close()
	var err error
	if p.db, err = pebble.Open(p.dir, layoutPebbleOptions()); err != nil {
		p.b.Fatal(err)
	}
}

// decodeOr fails b if v does not decode.
func decodeOr(b *testing.B, buf, v []byte) []byte {
	out, err := decodeValue(buf[:0], v)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func (p *pebbleValues) read(ids []ID) int {
	var buf []byte
	for _, id := range ids {
		v, c, err := p.db.Get(chunkKey(id))
		if err != nil {
			p.b.Fatal(err)
		}
		buf = decodeOr(p.b, buf, v)
		c.Close()
	}
	return len(ids)
}

func (p *pebbleValues) close()           { p.db.Close() }
func (p *pebbleValues) prepare(ids []ID) {}

type pebbleIngest struct {
	b   *testing.B
	dir string
	db  *pebble.DB
	seq uint64
	n   int
}

func newPebbleIngest(b *testing.B, dir string) *pebbleIngest {
	db, err := pebble.Open(dir, layoutPebbleOptions())
	if err != nil {
		b.Fatal(err)
	}
	return &pebbleIngest{b: b, dir: dir, db: db}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte{'S'}, seq) }

func (p *pebbleIngest) put(ids []ID, vals [][]byte) {
	path := filepath.Join(p.dir, fmt.Sprintf("ingest-%06d.sst", p.n))
	p.n++
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		p.b.Fatal(err)
	}
	wo := p.db.TableFormat()
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: wo, BlockSize: 32 << 10})
	idx := p.db.NewBatch()
	for i := range ids {
		p.seq++
		if err := w.Set(seqKey(p.seq), vals[i]); err != nil {
			p.b.Fatal(err)
		}
		idx.Set(chunkKey(ids[i]), binary.BigEndian.AppendUint64(nil, p.seq), nil)
	}
	if err := w.Close(); err != nil {
		p.b.Fatal(err)
	}
	if err := p.db.Ingest(context.Background(), []string{path}); err != nil {
		p.b.Fatal(err)
	}
	if err := idx.Commit(pebble.NoSync); err != nil {
		p.b.Fatal(err)
	}
}

func (p *pebbleIngest) finish() { settle(p.db) }

func (p *pebbleIngest) read(ids []ID) int {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: []byte{'S'}, UpperBound: []byte{'T'}})
	if err != nil {
		p.b.Fatal(err)
	}
	defer it.Close()
	n := 0
	var buf []byte
	for it.First(); it.Valid(); it.Next() {
		buf = decodeOr(p.b, buf, it.Value())
		n++
	}
	return n
}

func (p *pebbleIngest) close()           { p.db.Close() }
func (p *pebbleIngest) prepare(ids []ID) {}

type segmentsLayout struct {
	b      *testing.B
	s      *Store
	o      Options
	d      string
	hinted bool
	hints  []Hint
}

// prepare looks up the hints a restore finds in the page entries.
func (l *segmentsLayout) prepare(ids []ID) {
	if !l.hinted {
		return
	}
	for _, id := range ids {
		loc, _, _, _ := l.s.where(id)
		l.hints = append(l.hints, Hint{loc})
	}
}

func newSegmentsLayout(b *testing.B, dir string, hinted bool) *segmentsLayout {
	o := DefaultOptions()
	s, err := Open(dir, o)
	if err != nil {
		b.Fatal(err)
	}
	return &segmentsLayout{b: b, s: s, o: o, d: dir, hinted: hinted}
}

func (l *segmentsLayout) put(ids []ID, vals [][]byte) {
	bt := l.s.NewBatch()
	for i := range ids {
		bt.addRecord(ids[i], vals[i])
	}
	if err := bt.Commit(pebble.NoSync); err != nil {
		l.b.Fatal(err)
	}
	bt.Close()
}

func (l *segmentsLayout) finish() {
	if err := l.s.Close(); err != nil {
		l.b.Fatal(err)
	}
	var err error
	if l.s, err = Open(l.d, l.o); err != nil {
		l.b.Fatal(err)
	}
}

func (l *segmentsLayout) read(ids []ID) int {
	hints := l.hints
	n := 0
	for i := 0; i < len(ids); i += 256 {
		var h []Hint
		if hints != nil {
			h = hints[i:min(i+256, len(ids))]
		}
		l.s.GetMany(ids[i:min(i+256, len(ids))], h, func(_ int, data []byte, err error) {
			if err != nil {
				l.b.Fatal(err)
			}
			n++
		})
	}
	return n
}

func (l *segmentsLayout) close() { l.s.Close() }
