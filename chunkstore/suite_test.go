package chunkstore

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ckptfs/ckptfs/test/memimage"
)

// backends are the stores the conformance suite runs against.
var backends = map[string]func(t *testing.T, o Options) (*Store, func() *Store){
	"mem": func(t *testing.T, o Options) (*Store, func() *Store) {
		fs := vfs.NewMem()
		o.FS = fs
		s, err := Open("store", o)
		if err != nil {
			t.Fatal(err)
		}
		reopen := func() *Store {
			s, err := Open("store", o)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return s, reopen
	},
	"disk": func(t *testing.T, o Options) (*Store, func() *Store) {
		dir := filepath.Join(t.TempDir(), "store")
		s, err := Open(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() *Store {
			s, err := Open(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	},
}

func TestConformance(t *testing.T) {
	for name, mk := range backends {
		for _, codec := range []Codec{CodecRaw, CodecS2, CodecZstd} {
			for _, vsep := range []bool{false, true} {
				o := DefaultOptions()
				o.Codec, o.ValueSeparation = codec, vsep
				t.Run(name+"/"+codec.String()+map[bool]string{true: "/vsep", false: ""}[vsep], func(t *testing.T) {
					s, reopen := mk(t, o)
					conformance(t, s, reopen)
				})
			}
		}
	}
}

func conformance(t *testing.T, s *Store, reopen func() *Store) {
	chunks := [][]byte{
		[]byte("x"),
		memimage.Random(4096, 1),
		memimage.Image{Seed: 2, Pages: 32, Mix: memimage.DefaultMix}.Bytes(),
		bytes.Repeat([]byte("abc"), 50000),
	}
	var ids []ID
	b := s.NewBatch()
	for _, c := range chunks {
		id, n, err := s.Put(b, c)
		if err != nil || n == 0 {
			t.Fatalf("put: %v (%d bytes)", err, n)
		}
		if id != Sum(c) {
			t.Fatal("Put returned an ID that is not the content hash")
		}
		ids = append(ids, id)
	}
	// A duplicate in the same unapplied batch is not stored twice.
	if _, n, _ := s.Put(b, chunks[1]); n != 0 {
		t.Fatalf("duplicate put added %d bytes", n)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		for i, id := range ids {
			got, err := s.Get(nil, id)
			if err != nil || !bytes.Equal(got, chunks[i]) {
				t.Fatalf("get %d: %v", i, err)
			}
			if ok, err := s.Has(id); !ok || err != nil {
				t.Fatalf("has %d: %v %v", i, ok, err)
			}
		}
		if _, err := s.Get(nil, Sum([]byte("absent"))); !errors.Is(err, ErrNotFound) {
			t.Fatalf("absent chunk: %v", err)
		}
		var n int
		if err := s.Walk(func(Info) error { n++; return nil }); err != nil || n != len(chunks) {
			t.Fatalf("walk: %d chunks, %v", n, err)
		}
		bad := 0
		if err := s.Verify(func(i Info, err error) error {
			if err != nil {
				bad++
			}
			return nil
		}); err != nil || bad != 0 {
			t.Fatalf("verify: %v, %d bad", err, bad)
		}
	}
	check(s)
	// Re-putting after apply is deduplicated through the database.
	s.recent.Purge()
	b = s.NewBatch()
	if _, n, _ := s.Put(b, chunks[2]); n != 0 {
		t.Fatalf("put of a stored chunk added %d bytes", n)
	}
	b.Close()
	// Survives close and reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	defer s.Close()
	check(s)

	// Damage a chunk behind the store's back: Get fails with ErrCorrupt,
	// never returns wrong bytes; Verify reports it.
	if err := s.DamageForTest(ids[1]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(nil, ids[1]); !errors.Is(err, ErrCorrupt) || got != nil {
		t.Fatalf("corrupt chunk: %v, %d bytes", err, len(got))
	}
	var corrupt []ID
	s.Verify(func(i Info, err error) error {
		if err != nil {
			corrupt = append(corrupt, i.ID)
		}
		return nil
	})
	if len(corrupt) != 1 || corrupt[0] != ids[1] {
		t.Fatalf("verify found %v, want %v", corrupt, ids[1])
	}
	// Delete removes it.
	b = s.NewBatch()
	s.Delete(b.Batch, ids[1])
	b.Commit(pebble.Sync)
	if ok, _ := s.Has(ids[1]); ok {
		t.Fatal("deleted chunk still there")
	}
}

func TestFormatVersion(t *testing.T) {
	o := DefaultOptions()
	o.FS = vfs.NewMem()
	s, err := Open("st", o)
	if err != nil {
		t.Fatal(err)
	}
	s.DB().Set(formatKey, []byte("ckptfs 99"), pebble.Sync)
	s.Close()
	_, err = Open("st", o)
	if !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte("version 99")) {
		t.Fatalf("open of a version 99 store: %v", err)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 100_000, 1 << 20} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Fatalf("zero %d", n)
		}
		if n > 0 {
			b[n-1] = 1
			if IsZero(b) {
				t.Fatalf("nonzero %d", n)
			}
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(nil, CodecS2, bytes.Repeat([]byte("ab"), 1000)))
	f.Add(encodeValue(nil, CodecZstd, bytes.Repeat([]byte("ab"), 1000)))
	f.Add(encodeValue(nil, CodecRaw, []byte("hello")))
	f.Fuzz(func(t *testing.T, v []byte) {
		out, err := decodeValue(nil, v)
		if err == nil {
			// What decodes must re-encode to something that decodes the same.
			for _, c := range []Codec{CodecRaw, CodecS2, CodecZstd} {
				back, err := decodeValue(nil, encodeValue(nil, c, out))
				if err != nil || !bytes.Equal(back, out) {
					t.Fatalf("%s round trip: %v", c, err)
				}
			}
		}
	})
}

// FuzzDecodeInto: DecodeInto agrees with decodeValue on every input: where
// one decodes, the other writes the same bytes in place; where one fails,
// so does the other, with ErrCorrupt.
func FuzzDecodeInto(f *testing.F) {
	f.Add(encodeValue(nil, CodecS2, bytes.Repeat([]byte("ab"), 2048)))
	f.Add(encodeValue(nil, CodecZstd, bytes.Repeat([]byte("ab"), 1000)))
	f.Add(encodeValue(nil, CodecRaw, []byte("hello")))
	f.Add([]byte{byte(CodecS2), 5, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		want, werr := decodeValue(nil, v)
		n, lerr := DecodedLen(v)
		if lerr != nil {
			if werr == nil {
				t.Fatalf("DecodedLen: %v, decodeValue decoded %d bytes", lerr, len(want))
			}
			if !errors.Is(lerr, ErrCorrupt) {
				t.Fatalf("DecodedLen error %v is not ErrCorrupt", lerr)
			}
			return
		}
		dst := bytes.Repeat([]byte{0xee}, n)
		err := DecodeInto(dst, v)
		switch {
		case werr == nil && err != nil:
			t.Fatalf("DecodeInto: %v, decodeValue decoded", err)
		case werr != nil && err == nil:
			t.Fatalf("DecodeInto decoded, decodeValue: %v", werr)
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("DecodeInto error %v is not ErrCorrupt", err)
		case err == nil && !bytes.Equal(dst, want):
			t.Fatal("DecodeInto wrote other bytes than decodeValue")
		}
	})
}
