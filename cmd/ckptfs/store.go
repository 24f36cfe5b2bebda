package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/index"
)

// storeErr gives store-opening errors their exit code.
func storeErr(err error) error {
	switch {
	case errors.Is(err, chunkstore.ErrLocked):
		return &exitErr{exitLocked, err}
	case errors.Is(err, chunkstore.ErrFormat), errors.Is(err, chunkstore.ErrNotStore), errors.Is(err, index.ErrNotFound):
		return &exitErr{exitStore, err}
	case errors.Is(err, chunkstore.ErrDamaged):
		return &exitErr{exitProblems, fmt.Errorf("%w\nthe store cannot be opened; keep a copy of its directory, then 'ckptfs fsck --rebuild STORE' makes its database again from the journal in its segments/", err)}
	case errors.Is(err, chunkstore.ErrLostWrites):
		return &exitErr{exitProblems, fmt.Errorf("%w\n'ckptfs fsck STORE' lists what is affected, 'ckptfs mount --read-only' serves what is intact, 'ckptfs fsck --repair STORE' accepts the store as it is now", err)}
	}
	return err
}

// openStore opens the existing store in dir (fs.Open), waiting up to
// releaseWait while another process holds it, with its errors' exit codes.
func openStore(dir string, o fs.OpenOptions) (*fs.Store, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fail(exitStore, "%s: %v", dir, errors.Unwrap(err))
	}
	o.Wait = releaseWait
	st, err := fs.Open(dir, o)
	if err != nil {
		return nil, storeErr(err)
	}
	return st, nil
}

// releaseWait is how long a command waits for a store that another
// process holds: a daemon that was just unmounted closes its store within
// a fraction of a second, and a command run right after umount(8) should
// not fail for it.
const releaseWait = 3 * time.Second
