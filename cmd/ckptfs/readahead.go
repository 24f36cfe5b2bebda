package main

import (
	"bytes"
	"io"
	"sync"
)

// readAhead reads its source in a goroutine of its own, keeping up to max
// bytes that the consumer has not read yet. xen receive reads xl's stream
// through it: xl sends a checkpoint's dirty pages while the guest is
// suspended, so the guest resumes as soon as the pages are in memory here,
// not when they are stored (as long as a checkpoint fits in max).
type readAhead struct {
	mu   sync.Mutex
	cond sync.Cond
	bufs [][]byte
	size int   // bytes in bufs
	max  int   // most bytes kept (a single read may exceed it when empty)
	peak int   // most bytes ever kept
	err  error // the source's error (io.EOF at its end), after bufs
}

func newReadAhead(r io.Reader, max int) *readAhead {
	ra := &readAhead{max: max}
	ra.cond.L = &ra.mu
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		ra.mu.Lock()
		for n > 0 && ra.size > 0 && ra.size+n > ra.max {
			ra.cond.Wait()
		}
		if n > 0 {
			ra.bufs = append(ra.bufs, bytes.Clone(buf[:n]))
			ra.size += n
			ra.peak = max(ra.peak, ra.size)
		}
		if err != nil {
			ra.err = err
		}
		ra.cond.Broadcast()
		ra.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Read returns buffered bytes, waiting for some; after the source's end or
// error and once everything before it is read, that error.
func (ra *readAhead) Read(p []byte) (int, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for len(ra.bufs) == 0 && ra.err == nil {
		ra.cond.Wait()
	}
	if len(ra.bufs) == 0 {
		return 0, ra.err
	}
	n := copy(p, ra.bufs[0])
	if n == len(ra.bufs[0]) {
		ra.bufs[0] = nil
		ra.bufs = ra.bufs[1:]
	} else {
		ra.bufs[0] = ra.bufs[0][n:]
	}
	ra.size -= n
	ra.cond.Broadcast()
	return n, nil
}

// Peak returns the most bytes that were ever waiting to be read.
func (ra *readAhead) Peak() int {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.peak
}
