package bucket

import (
	"bytes"
	"testing"

	"github.com/ckptfs/ckptfs/chunkstore"
)

func testKeys(t testing.TB, b byte) *Keys {
	k, err := NewKeys(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeys(t *testing.T) {
	k, other := testKeys(t, 1), testKeys(t, 2)
	id := chunkstore.Sum([]byte("page"))
	if k.Name(id) != testKeys(t, 1).Name(id) {
		t.Fatal("the same key names a chunk two ways")
	}
	if k.Name(id) == other.Name(id) || Name(id) == k.Name(id) {
		t.Fatal("a chunk's name does not depend on the key")
	}
	sealed := k.Seal(nil, []byte("aad"), []byte("secret page"))
	if bytes.Contains(sealed, []byte("secret")) {
		t.Fatal("sealed bytes hold the plain text")
	}
	if got, err := k.Open(nil, []byte("aad"), sealed); err != nil || string(got) != "secret page" {
		t.Fatalf("open: %q %v", got, err)
	}
	for _, bad := range []func() ([]byte, error){
		func() ([]byte, error) { return other.Open(nil, []byte("aad"), sealed) },
		func() ([]byte, error) { return k.Open(nil, []byte("other"), sealed) },
		func() ([]byte, error) { s := bytes.Clone(sealed); s[20] ^= 1; return k.Open(nil, []byte("aad"), s) },
		func() ([]byte, error) { return k.Open(nil, []byte("aad"), sealed[:10]) },
	} {
		if _, err := bad(); err == nil {
			t.Fatal("a wrong key, another object, a flipped bit or a short object opened")
		}
	}
}

func TestIndexRoundTrip(t *testing.T) {
	var ls []loc
	for i := range 100 {
		ls = append(ls, loc{name: Name(chunkstore.Sum([]byte{byte(i)})), pack: "p", off: uint32(i * 5000), len: uint32(4000 + i)})
	}
	got, err := parseIndex(encodeIndex(ls), "p")
	if err != nil || len(got) != len(ls) {
		t.Fatalf("%v %d", err, len(got))
	}
	for i := range ls {
		if got[i] != ls[i] {
			t.Fatalf("entry %d: %+v, want %+v", i, got[i], ls[i])
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	f.Add(encodeIndex([]loc{{off: 1, len: 2}, {off: 3, len: 4}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ls, err := parseIndex(b, "p")
		if err != nil {
			return
		}
		again, err := parseIndex(encodeIndex(ls), "p")
		if err != nil || len(again) != len(ls) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}
