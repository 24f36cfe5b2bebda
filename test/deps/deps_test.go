// Package deps checks that package dependencies point one way.
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/ckptfs/ckptfs/"

// forbidden lists, per package, the packages of ours it must not import.
var forbidden = map[string][]string{
	"xen":               {"chunkstore", "index", "fs", "gc", "cmd"},
	"chunkstore":        {"index", "fs", "gc", "xen", "cmd"},
	"index":             {"fs", "gc", "xen", "cmd"},
	"fs/content":        {"fs", "gc", "cmd", "xen"}, // the engine knows no pfn: page mode is a hook
	"xen/lineage":       {"fs", "gc", "cmd"},
	"xen/receive":       {"fs/transfer", "chunkstore/bucket", "gc", "cmd"},
	"gc":                {"fs", "cmd"},
	"gc/policy":         {"chunkstore", "index", "fs", "gc", "xen", "cmd"}, // rules, no store
	"fs":                {"gc", "cmd"},
	"index/manifest":    {"fs", "gc", "xen", "cmd"},
	"fs/transfer":       {"gc", "cmd"},
	"chunkstore/bucket": {"cmd", "fs/daemon", "fs/bucketfs", "xen"},
	"fs/daemon":         {"chunkstore/bucket", "cmd"}, // the daemon serves its own store; peers are the command's
	"fs/metrics":        {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
	"fs/bucketfs":       {"gc", "xen", "cmd"},
	"xen/xentest":       {"chunkstore", "index", "fs", "gc", "cmd"},
	// Test helpers import nothing of the product.
	"test/memimage":       {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
	"test/servers":        {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
	"test/sysstat":        {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
	"test/xen/pausemeter": {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
}

// free lists the packages that may import any of ours: the binary and the
// tests that drive it.
var free = map[string]bool{"cmd/ckptfs": true, "test/bench": true, "test/deps": true, "test/e2e": true, "test/e2e/hostile": true}

// TestEveryPackageDeclared: every package of the module either states what
// it must not import (forbidden) or is one of the free ones, so a new
// package cannot slip past TestImportDirection.
func TestEveryPackageDeclared(t *testing.T) {
	out, err := exec.Command("go", "list", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(p, mod)
		if _, ok := forbidden[rel]; !ok && !free[rel] {
			t.Errorf("package %s declares no import direction: add it to forbidden (or to free)", rel)
		}
	}
}

func TestImportDirection(t *testing.T) {
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ours := strings.CutPrefix(dep, mod)
			if !ours || rel == pkg {
				continue
			}
			for _, b := range bad {
				if rel == b || strings.HasPrefix(rel, b+"/") {
					t.Errorf("%s imports %s", pkg, rel)
				}
			}
		}
	}
}
