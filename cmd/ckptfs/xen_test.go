package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// synthInspect runs `xen synth flags... img`, then `xen inspect --json img`.
func synthInspect(t *testing.T, img string, flags ...string) Inspection {
	t.Helper()
	if err := run(append(append([]string{"xen", "synth"}, flags...), img)); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runXenInspect(&out, xenInspectOptions{json: true}, img); err != nil {
		t.Fatal(err)
	}
	var in Inspection
	if err := json.Unmarshal(out.Bytes(), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func TestXenSynthInspect(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "hvm.xl")
	in := synthInspect(t, img, "--hvm", "--pages", "3000", "--vcpus", "2", "--ballooned", "10", "--name", "web")
	var out bytes.Buffer
	if in.Guest.Name != "web" || in.Guest.Type != "hvm" || in.Stream.GuestType != 2 || in.DataPages != 2990 ||
		in.NoDataPFNs["XTAB"] != 10+16 || in.Records["libxc PAGE_DATA"] != 3 || in.Records["libxl EMULATOR_CONTEXT"] != 1 {
		t.Fatalf("inspection: %+v", in)
	}
	// Through a link (GUEST/latest): it says which file it read, and the
	// pfns without data by kind, not as a Go map.
	os.Symlink("hvm.xl", filepath.Join(dir, "latest"))
	if err := runXenInspect(&out, xenInspectOptions{}, filepath.Join(dir, "latest")); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "resolved     "+img) || !strings.Contains(s, "without data (XTAB 26)") || strings.Contains(s, "map[") {
		t.Fatalf("inspect of a link:\n%s", s)
	}
	out.Reset()
	// Malformed: truncated, and not Xen at all.
	b, _ := os.ReadFile(img)
	os.WriteFile(filepath.Join(dir, "trunc"), b[:len(b)/2], 0o644)
	os.WriteFile(filepath.Join(dir, "junk"), []byte("hello"), 0o644)
	for _, f := range []string{"trunc", "junk"} {
		err := runXenInspect(&out, xenInspectOptions{}, filepath.Join(dir, f))
		var ee *exitErr
		if !errors.As(err, &ee) || ee.code != exitMalformed {
			t.Errorf("%s: %v, want exit %d", f, err, exitMalformed)
		}
	}
	if err := run([]string{"xen", "synth", "--dirty", "2", img}); err == nil {
		t.Error("synth accepted --dirty 2")
	}
	if err := run([]string{"xen"}); err == nil {
		t.Error("xen without subcommand accepted")
	}
}

// TestXenRemusInspect: `xen synth --remus N` writes a checkpointed stream
// that inspect describes (N+1 checkpoints, no END); cut inside a later
// checkpoint, inspect names the checkpoints it completed and exits 8.
func TestXenRemusInspect(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "remus")
	in := synthInspect(t, img, "--pages", "2000", "--dirty", "0.1", "--remus", "3")
	var out bytes.Buffer
	b, _ := os.ReadFile(img)
	if in.Checkpoints != 4 || in.CheckpointEnd != int64(len(b)) || in.Records["libxc CHECKPOINT"] != 4 ||
		in.Records["libxl CHECKPOINT_END"] != 4 || in.Records["libxc END"] != 0 {
		t.Fatalf("inspection: %+v", in)
	}
	os.WriteFile(filepath.Join(dir, "cut"), b[:len(b)-1000], 0o644)
	err := runXenInspect(&out, xenInspectOptions{}, filepath.Join(dir, "cut"))
	var ee *exitErr
	if !errors.As(err, &ee) || ee.code != exitMalformed || !strings.Contains(err.Error(), "3 complete checkpoints") {
		t.Fatalf("cut remus stream: %v", err)
	}
}
