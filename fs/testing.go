package fs

import (
	"os"
	"path/filepath"
	"testing"
)

// RequireFUSE skips the test when FUSE is unavailable, and fails it instead
// when CI=true: in CI the mount tests must run.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("FUSE is required in CI: %v", err)
		}
		t.Skipf("no FUSE: %v", err)
	}
}

// TestMount mounts a fresh on-disk store (or storeDir, if non-empty) on a
// temporary directory and unmounts it when t ends.
func TestMount(t testing.TB, storeDir string) *Mounted {
	t.Helper()
	RequireFUSE(t)
	if storeDir == "" {
		storeDir = filepath.Join(t.TempDir(), "store")
	}
	m, err := MountStore(storeDir, filepath.Join(t.TempDir(), "mnt"), MountConfig{})
	if err != nil {
		if os.Getenv("CI") != "true" && os.Geteuid() != 0 {
			t.Skipf("cannot mount: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return m
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
