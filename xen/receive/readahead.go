package receive

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"time"
)

// readAhead reads its source in a goroutine of its own, keeping up to max
// bytes that the consumer has not read yet. xen receive reads xl's stream
// through it: xl sends a checkpoint's dirty pages while the guest is
// suspended, so the guest resumes as soon as the pages are in memory here,
// not when they are stored (as long as a checkpoint fits in max). It also
// remembers when each piece arrived, so a checkpoint is dated by its
// arrival, not by when a backlog let it be stored.
type readAhead struct {
	mu     sync.Mutex
	cond   sync.Cond
	bufs   []arrival
	size   int       // bytes in bufs
	max    int       // most bytes kept (a single read may exceed it when empty)
	peak   int       // most bytes ever kept
	err    error     // the source's error (io.EOF at its end), after bufs
	last   time.Time // when the bytes Read returned last arrived
	closed bool
}

type arrival struct {
	b  []byte
	at time.Time
}

var errReadAheadClosed = errors.New("read-ahead closed")

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
		at := time.Now()
		ra.mu.Lock()
		for n > 0 && ra.size > 0 && ra.size+n > ra.max && !ra.closed {
			ra.cond.Wait()
		}
		if ra.closed {
			ra.mu.Unlock()
			return
		}
		if n > 0 {
			ra.bufs = append(ra.bufs, arrival{bytes.Clone(buf[:n]), at})
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
	for len(ra.bufs) == 0 && ra.err == nil && !ra.closed {
		ra.cond.Wait()
	}
	if ra.closed {
		return 0, errReadAheadClosed
	}
	if len(ra.bufs) == 0 {
		return 0, ra.err
	}
	a := &ra.bufs[0]
	n := copy(p, a.b)
	ra.last = a.at
	if n == len(a.b) {
		ra.bufs[0] = arrival{}
		ra.bufs = ra.bufs[1:]
	} else {
		a.b = a.b[n:]
	}
	ra.size -= n
	ra.cond.Broadcast()
	return n, nil
}

// Arrived returns when the bytes the last Read returned arrived.
func (ra *readAhead) Arrived() time.Time {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.last
}

// Peak returns the most bytes that were ever waiting to be read.
func (ra *readAhead) Peak() int {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.peak
}

// Close drops what is buffered; the reading goroutine ends with its next
// read from the source.
func (ra *readAhead) Close() {
	ra.mu.Lock()
	ra.closed, ra.bufs, ra.size = true, nil, 0
	ra.cond.Broadcast()
	ra.mu.Unlock()
}
