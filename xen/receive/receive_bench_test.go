package receive

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// BenchmarkReceive follows a generated xl remus stream of a 128 MiB PV
// guest (checkpoint 0 after live precopy rounds, then 20 checkpoints of 1%
// or 4% dirty pages) into a Publisher on an on-disk store: what
// `ckptfs xen receive` does, without the pipe. The baseline, timed in the
// same iteration, writes the same stream to a plain file in 1 MiB writes
// (what keeping it as one file would cost). Reported: the receive time as a
// ratio to the file's, the time per later checkpoint (store its pages and
// publish it) and the publish step alone, to compare with xl remus -i.
func BenchmarkReceive(b *testing.B) {
	const later = 20
	for _, dirty := range []float64{0.01, 0.04} {
		b.Run(fmt.Sprintf("dirty=%.2f", dirty), func(b *testing.B) {
			g := xentest.Guest{Name: "bench", UUID: "bench-recv", Pages: 32768, VCPUs: 1, Seed: 9, Dirty: dirty, Precopy: true}
			var stream bytes.Buffer
			if err := g.WriteRemus(&stream, later); err != nil {
				b.Fatal(err)
			}
			data := stream.Bytes()
			b.SetBytes(int64(len(data)))
			var fileT, recvT, perCkpt, publish time.Duration
			var entries, stored int64
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				t0 := time.Now()
				writePlain(b, filepath.Join(dir, "stream"), data)
				t1 := time.Now()
				cs, x := benchStore(b)
				t2 := time.Now()
				pc, pub, ent, st := receiveStream(b, cs, x, g, data)
				t3 := time.Now()
				fileT += t1.Sub(t0)
				recvT += t3.Sub(t2)
				perCkpt += pc
				publish += pub
				entries += ent
				stored += st
			}
			n := float64(b.N)
			b.ReportMetric(float64(recvT)/float64(fileT), "x-plain-file")
			b.ReportMetric(float64(perCkpt.Milliseconds())/n/later, "ms/checkpoint")
			b.ReportMetric(float64(publish.Microseconds())/1000/n/later, "ms-publish/checkpoint")
			b.ReportMetric(float64(entries)/n/later, "entries/checkpoint")
			b.ReportMetric(float64(stored)/n/later, "stored-B/checkpoint")
		})
	}
}

func writePlain(tb testing.TB, path string, data []byte) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := f.Write(data[off:min(len(data), off+1<<20)]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// receiveStream feeds stream to a Publisher in 1 MiB pieces and returns,
// summed over the checkpoints after the first: the time from one
// checkpoint's publication to the next, the time in Publish, the page
// entries written and the chunk bytes added.
func receiveStream(tb testing.TB, cs *chunkstore.Store, x *index.Index, g xentest.Guest, stream []byte) (perCkpt, publish time.Duration, entries, stored int64) {
	tb.Helper()
	pub := NewPublisher(cs, x, lineage.Of(x), DefaultConfig(), g.UUID, g.Name)
	defer pub.Close()
	var last time.Time
	r := xen.NewRemus(xen.RemusHandler{
		Page: pub.Page,
		Checkpoint: func(i int, img *xen.PlainImage) error {
			t0 := time.Now()
			if _, err := pub.Publish(index.RootIno, fmt.Sprintf("%06d", i), img, t0.UnixNano()); err != nil {
				return err
			}
			now := time.Now()
			if i > 0 {
				perCkpt += now.Sub(last)
				publish += now.Sub(t0)
				entries += int64(pub.Changed)
				stored += pub.NewBytes
			}
			last = now
			return nil
		},
	})
	for rest := stream; len(rest) > 0; {
		k := min(len(rest), 1<<20)
		if _, err := r.Write(rest[:k]); err != nil {
			tb.Fatal(err)
		}
		rest = rest[k:]
	}
	return perCkpt, publish, entries, stored
}
