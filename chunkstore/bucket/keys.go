package bucket

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/zeebo/blake3"
)

// KeySize is the least a key file holds.
const KeySize = 32

// Keys are what a key file gives: the key that names chunks in the bucket
// (keyed BLAKE3 of the chunk id, so that hosts sharing the key name a chunk
// alike and dedup across them, while the bucket learns nothing of the
// content's hash) and the key that seals what is stored (AES-256-GCM).
type Keys struct {
	name [32]byte
	aead cipher.AEAD
}

// ErrWrongKey is returned when the key does not open what the bucket holds.
var ErrWrongKey = errors.New("the key does not open this bucket's data (wrong --key-file?)")

// ReadKeyFile reads a key file: at least KeySize bytes, best random (head
// -c 32 /dev/urandom), readable only by its owner.
func ReadKeyFile(path string) (*Keys, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: a key file must be readable only by its owner (chmod 600)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < KeySize {
		return nil, fmt.Errorf("%s: %d bytes; a key file holds at least %d (make one with: head -c 32 /dev/urandom > %s)", path, len(b), KeySize, path)
	}
	return NewKeys(b)
}

// NewKeys derives the keys from secret.
func NewKeys(secret []byte) (*Keys, error) {
	var k Keys
	nk, err := hkdf.Key(sha256.New, secret, nil, "ckptfs bucket v1 chunk names", 32)
	if err != nil {
		return nil, err
	}
	copy(k.name[:], nk)
	dk, err := hkdf.Key(sha256.New, secret, nil, "ckptfs bucket v1 data", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	if k.aead, err = cipher.NewGCM(block); err != nil {
		return nil, err
	}
	return &k, nil
}

// Name is chunk id's name in the bucket.
func (k *Keys) Name(id chunkstore.ID) Name {
	h, _ := blake3.NewKeyed(k.name[:])
	h.Write(id[:])
	var n Name
	h.Sum(n[:0])
	return n
}

// Name is a chunk's name in the bucket.
type Name [32]byte

// sealOverhead is what Seal adds: the nonce and the tag.
const sealOverhead = 12 + 16

// Seal encrypts and authenticates plain, bound to aad (what it is).
func (k *Keys) Seal(dst, aad, plain []byte) []byte {
	nonce := make([]byte, 12)
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	dst = append(dst, nonce...)
	return k.aead.Seal(dst, nonce, plain, aad)
}

// Open checks and decrypts what Seal made for aad.
func (k *Keys) Open(dst, aad, sealed []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, fmt.Errorf("a sealed object of %d bytes: %w", len(sealed), chunkstore.ErrCorrupt)
	}
	out, err := k.aead.Open(dst, sealed[:12], sealed[12:], aad)
	if err != nil {
		return nil, ErrWrongKey
	}
	return out, nil
}
