package lineage

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

func FuzzDecodeGenRecord(f *testing.F) {
	f.Add(genKey(3, 9), encodeGenRecord(GenRecord{State: GenLive, Floor: 7, Ino: 12}))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeGenRecord(k, v)
		if err == nil {
			if r.Floor > r.Num || r.State < GenInFlight || r.State > GenDead {
				t.Fatalf("decoded an invalid record %+v", r)
			}
			back, err := decodeGenRecord(genKey(r.Lin, r.Num), encodeGenRecord(r))
			if err != nil || back != r {
				t.Fatalf("re-encode: %+v %v", back, err)
			}
		}
	})
}

// TestXenInfoEncoding: values round-trip; a value written before the pages
// field existed decodes with Pages 0; damaged values are index.ErrCorrupt.
func TestXenInfoEncoding(t *testing.T) {
	full := XenInfo{UUID: "u-1", Name: "guest", NewBytes: 1 << 40, Pages: 300}
	old := binary.AppendUvarint(append(binary.AppendUvarint(append(binary.AppendUvarint(nil, 3), "u-1"...), 5), "guest"...), 77)
	for _, tc := range []struct {
		name string
		v    []byte
		want XenInfo
		bad  bool
	}{
		{"full", encodeXen(full), full, false},
		{"without pages", old, XenInfo{UUID: "u-1", Name: "guest", NewBytes: 77}, false},
		{"empty", nil, XenInfo{}, true},
		{"name cut", encodeXen(full)[:6], XenInfo{}, true},
		{"trailing byte", append(encodeXen(full), 0), XenInfo{}, true},
		{"pages cut", append(old, 0x80), XenInfo{}, true},
	} {
		got, err := decodeXen(tc.v)
		if tc.bad {
			if !errors.Is(err, index.ErrCorrupt) {
				t.Errorf("%s: got %+v, %v; want index.ErrCorrupt", tc.name, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func FuzzDecodeXen(f *testing.F) {
	f.Add(encodeXen(XenInfo{UUID: "u", Name: "n", NewBytes: 5, Pages: 2}))
	f.Fuzz(func(t *testing.T, v []byte) {
		x, err := decodeXen(v)
		if err == nil {
			back, err := decodeXen(encodeXen(x))
			if err != nil || back != x {
				t.Fatalf("re-encode: %+v %v", back, err)
			}
		}
	})
}

// FuzzDecodePage: a page entry's value decodes (id, optional hint, or a
// zero page) without panicking, and what decodes re-encodes the same.
func FuzzDecodePage(f *testing.F) {
	var id chunkstore.ID
	id[3] = 9
	f.Add(id[:])
	f.Add([]byte{})
	f.Add(append(id[:], 1, 0x80, 0x01, 40))
	f.Fuzz(func(t *testing.T, v []byte) {
		ref, err := decodePage([]byte("k"), v)
		if err != nil {
			return
		}
		if ref.Zero {
			if len(v) != 0 {
				t.Fatal("zero page from a non-empty value")
			}
			return
		}
		back, err := decodePage([]byte("k"), chunkstore.AppendHint(ref.ID[:], ref.Hint))
		if err != nil || back != ref {
			t.Fatalf("re-encode: %+v %v", back, err)
		}
	})
}

// TestPrefixesAreTheExtensions: every key prefix of this package is one
// the index leaves to its extension, and every one it leaves is used.
func TestPrefixesAreTheExtensions(t *testing.T) {
	ours := []byte{prefixXen, prefixLineage, prefixGen, prefixPage, prefixPageByGen, prefixInoGen, prefixBlock, prefixBlockByGen}
	left := map[byte]bool{}
	for _, p := range index.ExtensionPrefixes {
		left[p] = true
	}
	for _, p := range ours {
		if !left[p] {
			t.Errorf("prefix %q is not among index.ExtensionPrefixes", p)
		}
		delete(left, p)
	}
	for p := range left {
		t.Errorf("index.ExtensionPrefixes has %q, which this package does not use", p)
	}
}
