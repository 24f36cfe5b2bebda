package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestXenSynthInspect(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "hvm.xl")
	if err := run([]string{"xen", "synth", "--hvm", "--pages", "3000", "--vcpus", "2", "--ballooned", "10", "--name", "web", img}); err != nil {
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
	if in.Guest.Name != "web" || in.Guest.Type != "hvm" || in.Stream.GuestType != 2 || in.DataPages != 2990 ||
		in.NoDataPFNs["XTAB"] != 10+16 || in.Records["libxc PAGE_DATA"] != 3 || in.Records["libxl EMULATOR_CONTEXT"] != 1 {
		t.Fatalf("inspection: %+v", in)
	}
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
