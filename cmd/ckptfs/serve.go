package main

import (
	"errors"
	"io"
	"os"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/fs/daemon"
	"github.com/ckptfs/ckptfs/fs/transfer"

	"github.com/ckptfs/ckptfs/xen/lineage"
)

// runServeCmd speaks the transfer protocol on stdin and stdout for STORE:
// what `ckptfs push ... ssh://host/STORE` runs on the other host. A
// mounted store is served by its daemon (this command relays).
func runServeCmd(args []string) error {
	f := newFlags("serve")
	create := f.Bool("create", false, "create STORE if it does not exist (the destination of a push)")
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	if _, err := os.Stat(pos[0]); *create && errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(pos[0], 0o700); err != nil {
			return err
		}
	}
	dir, err := storeDir(pos[0])
	if err != nil {
		return err
	}
	stdio := &pipeRW{r: os.Stdin, w: os.Stdout}
	if conn, err := dialTransfer(dir); err == nil {
		defer conn.Close()
		go io.Copy(conn, os.Stdin)
		_, err := io.Copy(os.Stdout, conn)
		return err
	} else if !errors.Is(err, daemon.ErrNoDaemon) {
		return err
	}
	st, err := openStore(dir, fs.OpenOptions{})
	if err != nil {
		return err
	}
	cs, x, data := st.Chunks, st.Index, st.Data
	err = transfer.Serve(stdio, &transfer.Local{Chunks: cs, Index: x, Data: data, Images: lineage.Of(x), As: selfCaller()})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}
