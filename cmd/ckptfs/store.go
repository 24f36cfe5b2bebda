package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
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
		return &exitErr{exitProblems, fmt.Errorf("%w\nthe store cannot be opened; keep a copy of its directory before trying anything on it", err)}
	case errors.Is(err, chunkstore.ErrLostWrites):
		return &exitErr{exitProblems, fmt.Errorf("%w\n'ckptfs fsck STORE' lists what is affected, 'ckptfs mount --read-only' serves what is intact, 'ckptfs fsck --repair STORE' accepts the store as it is now", err)}
	}
	return err
}

// openOffline opens an unmounted store read-only, for stats and fsck.
func openOffline(dir string) (*chunkstore.Store, *index.Index, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, nil, fail(exitStore, "%s: %v", dir, errors.Unwrap(err))
	}
	o := chunkstore.DefaultOptions()
	o.ReadOnly = true
	cs, err := openChunks(dir, o)
	if err != nil {
		return nil, nil, storeErr(err)
	}
	x, err := index.OpenReadOnly(cs.DB())
	if err != nil {
		cs.Close()
		return nil, nil, storeErr(err)
	}
	x.SetDamaged(cs.DamagedRanges)
	return cs, x, nil
}

// releaseWait is how long a command waits for a store that another
// process holds: a daemon that was just unmounted closes its store within
// a fraction of a second, and a command run right after umount(8) should
// not fail for it.
const releaseWait = 3 * time.Second

// openChunks opens the chunk store in dir, waiting up to releaseWait while
// another process holds it.
func openChunks(dir string, o chunkstore.Options) (*chunkstore.Store, error) {
	deadline := time.Now().Add(releaseWait)
	for {
		cs, err := chunkstore.Open(dir, o)
		if !errors.Is(err, chunkstore.ErrLocked) || time.Now().After(deadline) {
			return cs, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
