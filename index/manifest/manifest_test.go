package manifest

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
)

func id(b byte) chunkstore.ID { return chunkstore.Sum([]byte{b}) }

func sample() *Manifest {
	m := &Manifest{Path: "vm/c1", Mode: 0o100640, UID: 1, GID: 2, Mtime: -5, UUID: "u", Name: "vm"}
	for i := range 50 {
		m.add(Entry{ID: id(byte(i)), Len: 4096})
		if i%7 == 0 {
			m.addZeros(8192)
		}
	}
	m.add(Entry{ID: id(99), Off: 100, Len: 17})
	for _, e := range m.Entries {
		m.Size += int64(e.Len)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	base := sample()
	m := sample()
	m.Path = "vm/c2"
	m.Entries[3].ID = id(200) // one page changed
	m.Entries[10].ID = id(201)
	for _, tc := range []struct {
		name string
		base *Manifest
	}{{"full", nil}, {"delta", base}} {
		enc := m.Encode(tc.base)
		got, err := Decode(enc, tc.base)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got.Digest() != m.Digest() || got.Path != m.Path || got.Mtime != m.Mtime || got.UUID != m.UUID || got.Mode != m.Mode {
			t.Fatalf("%s: decoded %+v", tc.name, got)
		}
		if tc.base != nil && len(enc)*4 > len(m.Encode(nil)) {
			t.Errorf("a delta of 2 changed entries is %d bytes, the full encoding %d", len(enc), len(m.Encode(nil)))
		}
	}
	if n := m.New(base); len(n) != 2 || n[0] != id(200) || n[1] != id(201) {
		t.Errorf("New: %v", n)
	}
	// A delta needs its base, and the right one.
	enc := m.Encode(base)
	if _, err := Decode(enc, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decode without base: %v", err)
	}
	if _, err := Decode(enc, m); !errors.Is(err, ErrCorrupt) {
		t.Errorf("decode with another base: %v", err)
	}
	if d, ok := Base(enc); !ok || d != base.Digest() {
		t.Error("Base does not name the base")
	}
}

func TestDecodeRejectsDamage(t *testing.T) {
	enc := sample().Encode(nil)
	for i := range enc {
		b := bytes.Clone(enc)
		b[i] ^= 0x40
		if m, err := Decode(b, nil); err == nil && m.Digest() != sample().Digest() {
			t.Fatalf("flipping byte %d decoded to another manifest", i)
		}
	}
	for n := range len(enc) {
		if _, err := Decode(enc[:n], nil); err == nil {
			t.Fatalf("a %d-byte prefix decoded", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	base := sample()
	f.Add(base.Encode(nil))
	m := sample()
	m.Entries[2].ID = id(77)
	f.Add(m.Encode(base))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, bs := range []*Manifest{nil, base} {
			m, err := Decode(b, bs)
			if err != nil {
				continue
			}
			// A short encoding never expands into a long list: each
			// explicit op costs bytes, copies at most twice the base.
			limit := len(b)
			if bs != nil {
				limit += 2*len(bs.Entries) + 1024
			}
			if len(m.Entries) > limit {
				t.Fatalf("%d bytes decoded into %d entries", len(b), len(m.Entries))
			}
			// What decodes re-encodes to a manifest with the same digest.
			again, err := Decode(m.Encode(nil), nil)
			if err != nil || again.Digest() != m.Digest() {
				t.Fatalf("re-encoding: %v", err)
			}
		}
	})
}

// TestDecodeBounds: a delta that copies its base again and again, an entry
// count past MaxEntries and a size past the largest file are refused; a
// sparse file of the largest size is one entry.
func TestDecodeBounds(t *testing.T) {
	base := sample()
	// Rewrite: a copy of the whole base, 3000 times.
	m := &Manifest{Path: "x", Mode: base.Mode, Size: base.Size * 3000}
	for range 3000 {
		m.Entries = append(m.Entries, base.Entries...)
	}
	if _, err := Decode(m.Encode(base), base); err == nil || !strings.Contains(err.Error(), "copies more entries than its base") {
		t.Fatalf("a delta copying its base 3000 times: %v", err)
	}
	sparse := &Manifest{Path: "s", Mode: base.Mode, Size: math.MaxInt64}
	sparse.addZeros(math.MaxInt64)
	if len(sparse.Entries) != 1 {
		t.Fatalf("a sparse file of 2^63-1 bytes has %d entries", len(sparse.Entries))
	}
	got, err := Decode(sparse.Encode(nil), nil)
	if err != nil || got.Size != math.MaxInt64 || len(got.Entries) != 1 {
		t.Fatalf("decoding the sparse file: %v", err)
	}
}
