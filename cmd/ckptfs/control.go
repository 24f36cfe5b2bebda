package main

// Reaching a store from a command: package fs/daemon's Store (the running
// daemon over its control socket, or the store opened here), with its
// errors given their exit codes; and who a transfer writes as.

import (
	"errors"
	"net"
	"os"

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

// dialTransfer opens the transfer protocol to a mounted store's daemon
// (daemon.ErrNoDaemon if none serves it), its refusal given its exit code.
func dialTransfer(store string) (net.Conn, error) {
	conn, err := daemon.DialTransfer(store)
	if err != nil && !errors.Is(err, daemon.ErrNoDaemon) {
		return nil, ctlErr(err)
	}
	return conn, err
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
