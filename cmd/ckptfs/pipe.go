package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// growStdinBuffer makes the kernel buffer of stdin, when it is a pipe (as
// xl hands the stream to its receiver) or a socket, as large as allowed,
// up to want bytes: xl keeps the guest suspended while it sends a
// checkpoint's pages, and a buffer that holds a whole checkpoint lets it
// finish sending, and the guest run on, while the receiver drains it. It
// returns the size obtained (0 if stdin is neither, or nothing changed).
func growStdinBuffer(f *os.File, want int) int {
	var st unix.Stat_t
	fd := int(f.Fd())
	if unix.Fstat(fd, &st) != nil {
		return 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		// Root (CAP_SYS_RESOURCE) may pass pipe-max-size; others get at
		// most that.
		for n := want; n >= 64<<10; n /= 2 {
			if got, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, n); err == nil {
				return got
			}
		}
	case unix.S_IFSOCK:
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, want) == nil ||
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, want) == nil {
			got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
			return got
		}
	}
	return 0
}
