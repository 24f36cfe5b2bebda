package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Objects is the object store a bucket lives in: all the bucket asks of
// S3, so that the bucket can be tested against memory (MemObjects) and
// run against S3 (S3Objects).
type Objects interface {
	// Get reads object key, or its bytes [off, off+n) when n > 0 (fewer
	// or none past its end). A missing object is ErrNoObject.
	Get(ctx context.Context, key string, off, n int64) ([]byte, error)
	Put(ctx context.Context, key string, data []byte) error
	// Remove removes object key (a missing one is no error).
	Remove(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, with their
	// modification times.
	List(ctx context.Context, prefix string) (map[string]time.Time, error)
	// Modified returns object key's modification time, by the object
	// store's clock (whole seconds on S3).
	Modified(ctx context.Context, key string) (time.Time, error)
}

// ErrNoObject is the error for an object that does not exist.
var ErrNoObject = errors.New("no such object")

// S3Objects is a bucket of an S3-compatible object store.
type S3Objects struct {
	mc   *minio.Client
	name string
}

// NewS3Objects connects to bucket name at endpoint (host:port; https if
// secure), creating the bucket if it does not exist.
func NewS3Objects(ctx context.Context, endpoint string, secure bool, accessKey, secretKey, name string) (*S3Objects, error) {
	mc, err := minio.New(endpoint, &minio.Options{Creds: credentials.NewStaticV4(accessKey, secretKey, ""), Secure: secure})
	if err != nil {
		return nil, err
	}
	ok, err := mc.BucketExists(ctx, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := mc.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
			// Another host made it meanwhile.
			var er minio.ErrorResponse
			if !errors.As(err, &er) || (er.Code != "BucketAlreadyOwnedByYou" && er.Code != "BucketAlreadyExists") {
				return nil, err
			}
		}
	}
	return &S3Objects{mc: mc, name: name}, nil
}

func s3Err(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "NoSuchKey" || er.StatusCode == 404) {
		return fmt.Errorf("%w (%v)", ErrNoObject, err)
	}
	return err
}

func (s *S3Objects) Get(ctx context.Context, key string, off, n int64) ([]byte, error) {
	var opts minio.GetObjectOptions
	if n > 0 {
		opts.SetRange(off, off+n-1)
	}
	obj, err := s.mc.GetObject(ctx, s.name, key, opts)
	if err != nil {
		return nil, s3Err(err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && er.StatusCode == 416 {
			return nil, nil // a range past the end of a short object
		}
		return nil, s3Err(err)
	}
	return data, nil
}

func (s *S3Objects) Put(ctx context.Context, key string, data []byte) error {
	_, err := s.mc.PutObject(ctx, s.name, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{DisableMultipart: true})
	return err
}

func (s *S3Objects) Remove(ctx context.Context, key string) error {
	return s.mc.RemoveObject(ctx, s.name, key, minio.RemoveObjectOptions{})
}

func (s *S3Objects) List(ctx context.Context, prefix string) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for o := range s.mc.ListObjects(ctx, s.name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, o.Err
		}
		out[o.Key] = o.LastModified
	}
	return out, nil
}

func (s *S3Objects) Modified(ctx context.Context, key string) (time.Time, error) {
	st, err := s.mc.StatObject(ctx, s.name, key, minio.StatObjectOptions{})
	if err != nil {
		return time.Time{}, s3Err(err)
	}
	return st.LastModified, nil
}

// MemObjects is an object store in memory (for tests): its clock is Clock
// (time.Now if nil).
type MemObjects struct {
	Clock func() time.Time

	mu   sync.Mutex
	objs map[string]memObject
}

type memObject struct {
	data []byte
	mod  time.Time
}

func (m *MemObjects) now() time.Time {
	if m.Clock != nil {
		return m.Clock()
	}
	return time.Now()
}

func (m *MemObjects) Get(_ context.Context, key string, off, n int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, ErrNoObject)
	}
	if n <= 0 {
		return bytes.Clone(o.data), nil
	}
	if off >= int64(len(o.data)) {
		return nil, nil
	}
	return bytes.Clone(o.data[off:min(int64(len(o.data)), off+n)]), nil
}

func (m *MemObjects) Put(_ context.Context, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objs == nil {
		m.objs = map[string]memObject{}
	}
	m.objs[key] = memObject{bytes.Clone(data), m.now()}
	return nil
}

func (m *MemObjects) Remove(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, key)
	return nil
}

func (m *MemObjects) List(_ context.Context, prefix string) (map[string]time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]time.Time{}
	for k, o := range m.objs {
		if strings.HasPrefix(k, prefix) {
			out[k] = o.mod
		}
	}
	return out, nil
}

func (m *MemObjects) Modified(_ context.Context, key string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[key]
	if !ok {
		return time.Time{}, fmt.Errorf("%s: %w", key, ErrNoObject)
	}
	return o.mod, nil
}

// Keys returns the keys held, sorted (for tests).
func (m *MemObjects) Keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.objs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
