package fs

import (
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips lists the posixtest cases that do not apply, with the reason.
var posixSkips = map[string]string{
	"FcntlFlockLocksFile": "POSIX locks are not forwarded (EnableLocks off)",
	"FcntlFlockSetLk":     "POSIX locks are not forwarded (EnableLocks off)",
	"XAttr":               "extended attributes are disabled (DisableXAttrs)",
	"XAttrLarge":          "extended attributes are disabled (DisableXAttrs)",
	"Fallocate":           "fallocate is not implemented",
	"FallocateKeepSize":   "fallocate is not implemented",
}

func TestPosix(t *testing.T) {
	m := TestMount(t, "")
	var names []string
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkips[name]; ok {
				t.Skip(why)
			}
			sub := m.Dir + "/" + name
			posixtest.All[name](t, mkdirAll(t, sub))
		})
	}
}

func mkdirAll(t *testing.T, dir string) string {
	t.Helper()
	if err := mkdir(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}
