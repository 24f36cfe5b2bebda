package main

// Reaching a store from a command: package fs/daemon's Store (the running
// daemon over its control socket, or the store opened here), with its
// errors given their exit codes; and who a transfer writes as.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/ckptfs/ckptfs/fs/daemon"
	"github.com/ckptfs/ckptfs/fs/transfer"
)

// openControl opens the store at path (its directory or its mountpoint).
func openControl(path string) (daemon.Store, error) {
	s, err := daemon.Open(path, daemon.Options{Wait: releaseWait})
	if err != nil {
		if u := errors.Unwrap(err); u != nil {
			err = u
		}
		return nil, fail(exitStore, "%s: %v", path, err)
	}
	return s, nil
}

// ctlErr gives the error of a daemon.Store call its exit code.
func ctlErr(err error) error {
	var de *daemon.DeniedError
	if errors.As(err, &de) {
		return &exitErr{exitDenied, err}
	}
	return storeErr(err)
}

var errNoDaemon = daemon.ErrNoDaemon

func socketPath(store string) string { return daemon.SocketPath(store) }

// peerCaller is the user a transfer over the control socket writes as:
// the peer's uid, its primary gid and its supplementary groups (read from
// /proc; none if it has gone).
func peerCaller(cred syscall.Ucred) *transfer.Caller {
	gids := []uint32{cred.Gid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cred.Pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(l, "Groups:"); ok {
				for _, f := range strings.Fields(rest) {
					if g, err := strconv.ParseUint(f, 10, 32); err == nil {
						gids = append(gids, uint32(g))
					}
				}
			}
		}
	}
	return transfer.CallerOf(cred.Uid, gids...)
}

// selfCaller is the user this process writes as (nil for root).
func selfCaller() *transfer.Caller {
	gids := []uint32{uint32(os.Getgid())}
	if gs, err := os.Getgroups(); err == nil {
		for _, g := range gs {
			gids = append(gids, uint32(g))
		}
	}
	return transfer.CallerOf(uint32(os.Geteuid()), gids...)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
