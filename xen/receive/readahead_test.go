package receive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// TestReadAhead: everything the source sends arrives in order, then its
// error, for buffer bounds smaller and larger than the reads.
func TestReadAhead(t *testing.T) {
	want := make([]byte, 3<<20+17)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rnd.Uint32())
	}
	for _, max := range []int{1, 4096, 1 << 20, 64 << 20} {
		pr, pw := io.Pipe()
		ra := newReadAhead(pr, max)
		go func() {
			rnd := rand.New(rand.NewPCG(uint64(max), 3))
			for rest := want; len(rest) > 0; {
				k := min(len(rest), 1+rnd.IntN(300<<10))
				pw.Write(rest[:k])
				rest = rest[k:]
			}
			pw.CloseWithError(errors.New("sender stopped"))
		}()
		var got bytes.Buffer
		buf := make([]byte, 100<<10)
		var err error
		for {
			var n int
			n, err = ra.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got.Bytes(), want) || err == nil || err.Error() != "sender stopped" {
			t.Fatalf("max %d: %d of %d bytes, error %v", max, got.Len(), len(want), err)
		}
		// Reads from the source are at most 256 KiB: never more than that
		// past max is kept.
		if ra.Peak() > max+256<<10 {
			t.Fatalf("max %d: peak %d", max, ra.Peak())
		}
	}
}

// TestReadAheadDoesNotHoldTheSender: with a consumer that has not started
// reading, the sender still gets its whole checkpoint written.
func TestReadAheadDoesNotHoldTheSender(t *testing.T) {
	pr, pw := io.Pipe()
	ra := newReadAhead(pr, 16<<20)
	sent := make(chan error, 1)
	go func() {
		_, err := pw.Write(make([]byte, 8<<20))
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sender is still blocked with nothing read")
	}
	// the last piece the pipe handed over is appended just after
	for end := time.Now().Add(20 * time.Second); ra.Peak() != 8<<20; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("peak %d, want %d", ra.Peak(), 8<<20)
		}
	}
	pw.Close()
	if n, err := io.Copy(io.Discard, ra); n != 8<<20 || err != nil {
		t.Fatalf("drained %d, %v", n, err)
	}
}

// TestReadAheadArrivalAndClose: Arrived dates the bytes last read by when
// they came in, not when they were read; Close releases a full buffer and
// a waiting reader.
func TestReadAheadArrivalAndClose(t *testing.T) {
	pr, pw := io.Pipe()
	ra := newReadAhead(pr, 1)
	before := time.Now()
	pw.Write([]byte("checkpoint 0"))
	go pw.Write([]byte("checkpoint 1")) // blocks the filler: the buffer is full
	time.Sleep(100 * time.Millisecond)
	read := time.Now()
	buf := make([]byte, 64)
	n, err := ra.Read(buf)
	if err != nil || string(buf[:n]) != "checkpoint 0" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	if at := ra.Arrived(); at.Before(before) || at.After(read.Add(-50*time.Millisecond)) {
		t.Fatalf("arrived %v, want after %v and well before the read at %v", at, before, read)
	}
	ra.Close()
	if _, err := ra.Read(buf); !errors.Is(err, errReadAheadClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	pw.Close()
}
