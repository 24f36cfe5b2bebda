// Package sysstat reads what the benchmarks measure of the system: bytes a
// process wrote to disk, the apparent size of a directory, and the page
// cache dropped for cold reads. Linux only; test support, it imports
// nothing of ckptfs.
package sysstat

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// WriteBytes is write_bytes of /proc/PID/io (pid "self" for this process):
// the bytes the process caused to be written to disk.
func WriteBytes(pid string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%s/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no write_bytes in /proc/%s/io", pid)
}

// DirBytes is the apparent size of the regular files below dir, except
// those named skip.
func DirBytes(dir string, skip ...string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		for _, s := range skip {
			if fi.Name() == s {
				return nil
			}
		}
		n += fi.Size()
		return nil
	})
	return n
}

// DropCaches writes back dirty pages and drops the page cache (root).
func DropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}
