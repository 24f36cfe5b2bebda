package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMountpointAsStore: every command that takes a STORE also takes the
// mountpoint it is mounted at (a new user's most frequent stumble: `ckptfs
// stats /ckpt`), and answers as for the store itself.
func TestMountpointAsStore(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	defer d.stop(t)
	writeFiles(t, d.mnt, 3)
	for _, args := range [][]string{{"stats"}, {"fsck"}, {"gc"}, {"stats", "--json"}} {
		viaStore, code1 := run(t, append(args, store)...)
		viaMnt, code2 := run(t, append(args, d.mnt)...)
		noTrace(t, args[0], viaMnt)
		if code1 != 0 || code2 != 0 {
			t.Fatalf("%v: exit %d for the store, %d for its mountpoint\n%s\n%s", args, code1, code2, viaStore, viaMnt)
		}
		if args[0] == "stats" && !strings.Contains(viaMnt, "3") {
			t.Fatalf("%v of the mountpoint says nothing of its 3 files:\n%s", args, viaMnt)
		}
	}
	out, code := run(t, "stats", filepath.Join(tmp, "nowhere"))
	if code == 0 {
		t.Fatalf("stats of a directory that is neither a store nor a mountpoint: exit 0\n%s", out)
	}
}
