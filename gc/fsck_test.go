package gc

import (
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// TestFsckProgressAgrees: fsck's progress ends at the bytes its report
// says it read (the bar and the summary say one thing), which are the
// stored bytes of every chunk.
func TestFsckProgressAgrees(t *testing.T) {
	sc := newScenario(t)
	for _, line := range []string{"a guest=1 gen=0 day=0", "b guest=1 gen=1 day=1", "c guest=2 gen=0 day=0"} {
		putLine(t, sc, line)
	}
	cs := sc.cs
	var last, lastTotal int64
	r, err := FsckProgress(cs, sc.x, func(phase string, done, total int64) {
		if phase == "verifying chunks" {
			last, lastTotal = done, total
		}
	})
	if err != nil || !r.OK() {
		t.Fatalf("fsck: %v %+v", err, r)
	}
	var stored int64
	cs.Walk(func(i chunkstore.Info) error { stored += int64(i.Stored); return nil })
	if r.StoredBytes == 0 || r.StoredBytes != stored || last != r.StoredBytes || lastTotal != r.StoredBytes {
		t.Errorf("report read %d stored bytes, the chunks hold %d, the progress ended at %d of %d", r.StoredBytes, stored, last, lastTotal)
	}
	if r.ChunkBytes <= r.StoredBytes {
		t.Errorf("re-hashed %d plain bytes, not more than the %d stored (compressed) ones", r.ChunkBytes, r.StoredBytes)
	}
}
