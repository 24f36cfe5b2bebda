package main

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/bucketfs"
)

// runBucketMountCmd mounts a bucket read-only: xl restore reads a
// checkpoint straight from the shared tier, through a local chunk cache.
func runBucketMountCmd(args []string) error {
	var r remoteFlags
	var from, cache string
	var allowOther bool
	f := newFlags("bucket mount")
	f.StringVar(&from, "from-host", "", "serve only this host's files, at the root (default: every host's, under host/)")
	f.StringVar(&cache, "cache", "/var/cache/ckptfs/bucket", "the local chunk cache `directory` (\"\" for memory only)")
	f.BoolVar(&allowOther, "allow-other", false, "let other users use the mount")
	addRemoteFlags(f, &r)
	pos, err := parse(f, args, 2)
	if err != nil {
		return err
	}
	if err := checkFUSE(); err != nil {
		return err
	}
	mnt, err := checkMountpoint(pos[1])
	if err != nil {
		return err
	}
	b, files, err := listBucket(pos[0], &r, from)
	if err != nil {
		return err
	}
	strip := ""
	if from != "" {
		strip = from + "/"
	}
	logger := log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	bfs, err := bucketfs.New(b, files, strip, cache, logger.Printf)
	if err != nil {
		return err
	}
	srv, err := bfs.Mount(mnt, allowOther)
	if err != nil {
		return fail(exitError, "bucket mount %s: %v", mnt, err)
	}
	_ = fs.SetReadAhead(mnt, fs.ReadAheadKB)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		for s := range sigs {
			if err := srv.Unmount(); err != nil {
				logger.Printf("%v: cannot unmount %s (%v)", s, mnt, err)
			}
		}
	}()
	fmt.Printf("ckptfs: ready: %s (%d files) mounted read-only at %s (pid %d); Ctrl-C or 'umount %s' unmounts\n", pos[0], len(files), mnt, os.Getpid(), mnt)
	srv.Wait()
	signal.Stop(sigs)
	fmt.Printf("ckptfs: unmounted %s\n", mnt)
	return nil
}
