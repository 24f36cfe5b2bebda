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
	"xen":            {"chunkstore", "index", "fs", "gc", "cmd"},
	"chunkstore":     {"index", "fs", "gc", "xen", "cmd"},
	"index":          {"fs", "gc", "xen", "cmd"},
	"fs/content":     {"fs", "gc", "cmd", "xen"}, // the engine knows no pfn: page mode is a hook
	"xen/lineage":    {"fs", "gc", "cmd"},
	"xen/receive":    {"fs/transfer", "fs/bucket", "gc", "cmd"},
	"gc":             {"fs", "cmd"},
	"fs":             {"gc", "cmd"},
	"index/manifest": {"fs", "gc", "xen", "cmd"},
	"fs/transfer":    {"gc", "cmd"},
	"fs/bucket":      {"cmd"},
	"fs/metrics":     {"chunkstore", "index", "fs", "gc", "xen", "cmd"},
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
