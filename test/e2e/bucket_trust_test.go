package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ckptfs/ckptfs/chunkstore/bucket"
)

// TestBucketTampered: an object of the bucket overwritten by someone
// without the key reads as a damaged or tampered object, named, not as
// "wrong --key-file?" (the key opens the bucket's config).
func TestBucketTampered(t *testing.T) {
	requireFUSE(t)
	s := startS3(t)
	key := keyFile(t)
	tmp := t.TempDir()
	d := mount(t, filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))
	os.Mkdir(filepath.Join(d.mnt, "vm"), 0o755)
	synth(t, filepath.Join(d.mnt, "vm", "c0"), 4, 0, "0.1")
	common := []string{"--endpoint", s.Endpoint, "--key-file", key, "--host", "hostA"}
	if out, code := runEnv(t, s.Env, append(append([]string{"push"}, common...), d.mnt, "s3://ckpt/site")...); code != 0 {
		t.Fatalf("push: %s", out)
	}
	mc, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4("ckptfs-test", "ckptfs-test-secret", "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var victim string
	for o := range mc.ListObjects(ctx, "ckpt", minio.ListObjectsOptions{Prefix: "site/", Recursive: true}) {
		if strings.Contains(o.Key, "index/") {
			victim = o.Key
		}
	}
	if victim == "" {
		t.Fatal("no index object in the bucket")
	}
	junk := bytes.Repeat([]byte{0x5a}, 200)
	if _, err := mc.PutObject(ctx, "ckpt", victim, bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, code := runEnv(t, s.Env, append(append([]string{"pull"}, common...), "s3://ckpt/site", filepath.Join(tmp, "dst"))...)
	if code == 0 || !strings.Contains(out, "damaged or tampered object "+victim) || strings.Contains(out, "wrong --key-file") {
		t.Fatalf("pull from a tampered bucket: exit %d\n%s", code, out)
	}
}

// TestBucketStoreClock: grace periods are measured on the object store's
// clock: a host whose clock is an hour off still gets the store's time.
func TestBucketStoreClock(t *testing.T) {
	s := startS3(t)
	keyPath := keyFile(t)
	keys, err := bucket.ReadKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, skew := range []time.Duration{time.Hour, -time.Hour} {
		b, err := bucket.Open("s3://ckpt/clock", bucket.Options{Endpoint: s.Endpoint, Keys: keys, Host: "skewed",
			AccessKey: "ckptfs-test", SecretKey: "ckptfs-test-secret", Clock: func() time.Time { return time.Now().Add(skew) }})
		if err != nil {
			t.Fatal(err)
		}
		now, err := b.StoreNow()
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(now); d < -3*time.Second || d > 3*time.Second {
			t.Fatalf("a host %v off: the store's now is %v from the real now", skew, d)
		}
	}
}
