// Package sysstat reads what the benchmarks measure of the system: bytes a
// process wrote to disk, its CPU time and memory, the apparent size of a
// directory, and the page cache dropped for cold reads. Linux only; test support, it imports
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

// CPUSeconds is the user and system CPU time process pid (or "self") has
// used so far, from /proc/PID/stat.
func CPUSeconds(pid string) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%s/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from its ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%s/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%s/stat", pid)
	}
	return float64(utime+stime) / 100, nil // USER_HZ is 100 on Linux
}

// Status is a field of /proc/PID/status in KiB (VmRSS, VmHWM); an error
// once the process is gone (a zombie has no Vm fields).
func Status(pid, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%s/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%s/status", field, pid)
}
