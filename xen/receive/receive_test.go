package receive

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestRun: a remus stream that stops inside its fourth checkpoint
// publishes three generations into the directory it names (created),
// reading back as the guest's saves; Run says the sender stopped, and
// how many were published.
func TestRun(t *testing.T) {
	_, x, cs := pageModeStore(t)
	g := xentest.Guest{Name: "pv", UUID: "run-pv", Pages: 1024, VCPUs: 1, Seed: 3, Dirty: 0.1}
	var stream bytes.Buffer
	if err := g.WriteRemus(&stream, 3); err != nil {
		t.Fatal(err)
	}
	var dirs []uint64
	var lines []string
	err := Run(bytes.NewReader(stream.Bytes()[:stream.Len()-100]), cs, x, lineage.Of(x), Options{
		Dir: "guests/pv", Buffer: 1 << 20, Config: DefaultConfig(),
		OnPublish: func(uuid string, dir uint64) error {
			if uuid != g.UUID {
				t.Errorf("published for %q, want %q", uuid, g.UUID)
			}
			dirs = append(dirs, dir)
			return nil
		},
		Logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) },
	})
	if err == nil || !strings.Contains(err.Error(), "the sender stopped; 3 checkpoints published") {
		t.Fatalf("Run: %v, want the sender stopped after 3 checkpoints", err)
	}
	if len(dirs) != 3 {
		t.Fatalf("%d publications, want 3", len(dirs))
	}
	guests, err := x.Lookup(index.RootIno, "guests")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := x.Lookup(guests.Ino, "pv")
	if err != nil || dir.Ino != dirs[0] {
		t.Fatalf("guests/pv: %v (ino %d), published into %d", err, dir.Ino, dirs[0])
	}
	ents, err := x.ReadDir(dir.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 3 {
		t.Fatalf("%d files in guests/pv, want 3", len(ents))
	}
	if n := strings.Count(strings.Join(lines, "\n"), " published ("); n != 3 {
		t.Fatalf("%d published lines in the log, want 3:\n%s", n, strings.Join(lines, "\n"))
	}
}

// TestRunNoConfig: a stream whose config names no guest is refused with an
// error, not a panic, and publishes nothing.
func TestRunNoConfig(t *testing.T) {
	_, x, cs := pageModeStore(t)
	g := xentest.Guest{Name: "pv", Pages: 256, VCPUs: 1, Seed: 3, Dirty: 0.1}
	var stream bytes.Buffer
	if err := g.WriteRemus(&stream, 1); err != nil {
		t.Fatal(err)
	}
	err := Run(bytes.NewReader(stream.Bytes()), cs, x, lineage.Of(x), Options{Dir: "g", Buffer: 1 << 20, Config: DefaultConfig()})
	if err == nil || !strings.Contains(err.Error(), "no guest UUID") {
		t.Fatalf("Run: %v, want no guest UUID", err)
	}
}
