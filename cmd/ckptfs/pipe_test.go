package main

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGrowStdinBuffer: a pipe's buffer grows (to what the kernel allows,
// at least its 64 KiB default, at most what was asked); a regular file is
// left alone.
func TestGrowStdinBuffer(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	want := 1 << 20
	got := growStdinBuffer(r, want)
	if got < 64<<10 || got > want {
		t.Fatalf("pipe buffer %d, want 64 KiB..%d", got, want)
	}
	if n, err := unix.FcntlInt(r.Fd(), unix.F_GETPIPE_SZ, 0); err != nil || n != got {
		t.Fatalf("F_GETPIPE_SZ %d (%v), growStdinBuffer said %d", n, err, got)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := growStdinBuffer(f, want); n != 0 {
		t.Fatalf("regular file: %d, want 0", n)
	}
}
