package fs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestXenSeriesThroughMount writes generated PV and HVM checkpoint series
// through the kernel (as xl save would: a new file, sequential writes), reads
// every generation back byte for byte, also after a remount, and checks that
// a later generation costs a small fraction of its size.
func TestXenSeriesThroughMount(t *testing.T) {
	RequireFUSE(t)
	store := filepath.Join(t.TempDir(), "store")
	cfg := content.DefaultConfig() // Pages: MountStore's default, XenPages
	mount := func() *Mounted {
		m, err := MountStore(store, filepath.Join(t.TempDir(), "mnt"), MountConfig{Content: cfg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Unmount() })
		return m
	}
	m := mount()
	type file struct {
		path string
		data []byte
	}
	var files []file
	for _, tc := range []struct {
		hvm   bool
		dirty float64
	}{{false, 0.01}, {true, 0.10}} {
		dir := filepath.Join(m.Dir, fmt.Sprintf("hvm%v", tc.hvm))
		os.Mkdir(dir, 0o755)
		for gen := 0; gen < 10; gen++ {
			g := xentest.Guest{Name: "g", UUID: "u", HVM: tc.hvm, Pages: 8192, VCPUs: 2, Seed: 7, Gen: gen, Dirty: tc.dirty}
			img := g.Bytes()
			p := filepath.Join(dir, fmt.Sprint("c", gen))
			before := storedBytes(t, m.Store)
			writeFile(t, p, img)
			growth := storedBytes(t, m.Store) - before
			if gen > 0 && float64(growth) > 2*tc.dirty*float64(len(img))+64<<10 {
				t.Errorf("%s: generation %d grew the store by %d bytes (image %d, %.0f%% dirty)", p, gen, growth, len(img), tc.dirty*100)
			}
			mustEqualFile(t, p, img)
			files = append(files, file{p, img})
		}
	}
	// fallback: the parser rejects the rest; bytes are still exact
	img := xentest.Guest{Name: "g", UUID: "u", Pages: 3000, VCPUs: 1, Seed: 8}.Bytes()
	for name, data := range map[string][]byte{
		"truncated":  img[:len(img)/2+5],
		"two-images": append(append([]byte(nil), img...), img...),
	} {
		p := filepath.Join(m.Dir, name)
		writeFile(t, p, data)
		mustEqualFile(t, p, data)
		files = append(files, file{p, data})
	}
	if err := m.Unmount(); err != nil {
		t.Fatal(err)
	}
	m2 := mount()
	for _, f := range files {
		rel, _ := filepath.Rel(m.Dir, f.path)
		mustEqualFile(t, filepath.Join(m2.Dir, rel), f.data)
	}
}

// TestBackToBackSaves: checkpoints of one guest written one right after
// the other (xl save -c every few seconds; write-behind still stores the
// previous one when the next begins) are stored as deltas: each later
// generation writes page entries for its changed pages only, and the
// store grows by about what changed, not by a full page map and the
// pages the previous image had not yet committed. Every image reads back
// byte for byte.
func TestBackToBackSaves(t *testing.T) {
	RequireFUSE(t)
	m, err := MountStore(filepath.Join(t.TempDir(), "store"), filepath.Join(t.TempDir(), "mnt"), MountConfig{Content: content.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount() })
	const pages, gens, dirty = 32768, 3, 0.02
	var imgs [][]byte
	for gen := 0; gen < gens; gen++ {
		img := xentest.Guest{Name: "g", UUID: "back-to-back", Pages: pages, VCPUs: 2, Seed: 9, Gen: gen, Dirty: dirty}.Bytes()
		// No open, read or stat between: the next image streams in while
		// the previous one is still being stored behind its close.
		if err := os.WriteFile(filepath.Join(m.Dir, fmt.Sprint("c", gen)), img, 0o644); err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	m.FS.WaitCommitted()
	maps := lineage.Of(m.Index)
	var recs []lineage.GenRecord
	if err := maps.WalkGens(func(r lineage.GenRecord) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != gens {
		t.Fatalf("%d generations, want %d", len(recs), gens)
	}
	for i, r := range recs[1:] {
		n, err := maps.GenEntries(r.Lin, r.Num)
		if err != nil {
			t.Fatal(err)
		}
		if float64(n) > 3*dirty*pages {
			t.Errorf("generation %d (%+v) wrote %d page entries for about %d changed pages: not a delta on the one before", i+1, r, n, pages*2/100)
		}
	}
	if st := storedBytes(t, m.Store); st > int64(float64(len(imgs[0]))*(1+3*dirty*gens)) {
		t.Errorf("stored %d bytes for %d images of %d bytes at %.0f%% dirty", st, gens, len(imgs[0]), dirty*100)
	}
	for i, img := range imgs {
		mustEqualFile(t, filepath.Join(m.Dir, fmt.Sprint("c", i)), img)
	}
}

// TestBackToBackStalledWriter: the image holding its guest's turn stops
// being written without a close (a writer that hangs): the guest's next
// image in the same directory waits only until the held one has fed
// nothing for turnWait, is then stored (as a full generation), and both
// read back byte for byte. An image naming the same guest in another
// directory (another user's, say) does not wait for it at all.
func TestBackToBackStalledWriter(t *testing.T) {
	RequireFUSE(t)
	for _, tc := range []struct {
		name     string
		dir      string // b's directory; a's is the root
		turnWait time.Duration
	}{
		{"same directory", "", 300 * time.Millisecond},
		{"another directory", "other", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func(d time.Duration) { turnWait = d }(turnWait)
			turnWait = tc.turnWait
			stalledWriter(t, tc.dir)
		})
	}
}

func stalledWriter(t *testing.T, dirB string) {
	m, err := MountStore(filepath.Join(t.TempDir(), "store"), filepath.Join(t.TempDir(), "mnt"), MountConfig{Content: content.DefaultConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Unmount() })
	g := xentest.Guest{Name: "g", UUID: "stalled", Pages: 4096, VCPUs: 1, Seed: 11}
	a := g.Bytes()
	g.Gen, g.Dirty = 1, 0.05
	b := g.Bytes()
	fa, err := os.Create(filepath.Join(m.Dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	half := len(a) / 2
	if _, err := fa.Write(a[:half]); err != nil {
		t.Fatal(err)
	}
	// a's feeder takes the turn once its writer pauses.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m.FS.pend.Lock()
		held := len(m.FS.turns) > 0
		m.FS.pend.Unlock()
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stalled image never took its guest's turn")
		}
	}
	pathB := filepath.Join(m.Dir, dirB, "b")
	if dirB != "" {
		if err := os.Mkdir(filepath.Join(m.Dir, dirB), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(pathB, b, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		got, err := os.ReadFile(pathB) // waits for b's commit
		if err == nil && !bytes.Equal(got, b) {
			err = fmt.Errorf("b reads back different")
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("b is not committed 30 s after its close while a stalls")
	}
	if _, err := fa.Write(a[half:]); err != nil {
		t.Fatal(err)
	}
	if err := fa.Close(); err != nil {
		t.Fatal(err)
	}
	mustEqualFile(t, filepath.Join(m.Dir, "a"), a)
}
