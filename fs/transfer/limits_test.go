package transfer

import (
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
)

// TestServeRefusesOversizedRequests: a client that declares any request
// one byte over its tag's limit (the remove request 'D' and an unknown
// tag among them) gets the stream ended with an error naming the limit,
// before the server reads or allocates the message: the declared lengths
// (up to gigabytes for 'A') cost the server nothing.
func TestServeRefusesOversizedRequests(t *testing.T) {
	for _, tag := range []byte("LMRHADQZ") {
		t.Run(string(tag), func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			done := make(chan error, 1)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			go func() { done <- Serve(b, nil); b.Close() }()
			if err := hello(a, true); err != nil {
				t.Fatal(err)
			}
			w := s2.NewWriter(a)
			h := append([]byte{tag}, binary.AppendUvarint(nil, limit(tag)+1)...)
			go func() { w.Write(h); w.Flush() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "over its limit") {
					t.Fatalf("serve: %v, want the limit named", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server still waits for a message over its limit")
			}
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
				t.Fatalf("a %d-byte declaration made the server allocate %d MiB", limit(tag)+1, grew>>20)
			}
		})
	}
}
