package fs

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MountEntry is one line of /proc/self/mountinfo.
type MountEntry struct {
	Minor  int    // the device minor: a FUSE mount's connection number
	Point  string // the mountpoint
	FSType string // e.g. "fuse.ckptfs"
	Source string // for ckptfs, the store directory
}

// Mounts lists the mounts this process sees.
func Mounts() ([]MountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []MountEntry
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 2 {
			continue
		}
		e := MountEntry{Point: unescapeMount(f[4]), FSType: g[0], Source: unescapeMount(g[1])}
		var major int
		fmt.Sscanf(f[2], "%d:%d", &major, &e.Minor)
		out = append(out, e)
	}
	return out, nil
}

// MountAt returns the mount whose mountpoint is abs, if any.
func MountAt(abs string) (MountEntry, bool, error) {
	ms, err := Mounts()
	for _, m := range ms {
		if m.Point == abs {
			return m, true, nil
		}
	}
	return MountEntry{}, false, err
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ReadAheadKB is the kernel read-ahead SetReadAhead gives a mount: the
// kernel's FUSE default (128 KiB) keeps about one read in flight; 1 MiB
// measured +30% for a cold sequential read of a page-mode image (README).
const ReadAheadKB = 1024

// SetReadAhead sets the kernel's read-ahead for the FUSE mount at mnt (its
// backing device info's read_ahead_kb). It needs root; a mount without it
// keeps the kernel's default.
func SetReadAhead(mnt string, kb int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(p, []byte(fmt.Sprint(kb)), 0)
}
