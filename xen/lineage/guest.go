package lineage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/index"
)

// XenInfo is what the store knows of a file that is an xl save image: the
// guest it checkpoints (its lineage is the guest UUID) and the chunk bytes
// its content added to the store when it was written.
type XenInfo struct {
	UUID     string
	Name     string
	NewBytes int64
	// Pages is the page-map entries the generation wrote (its changed
	// pages), 0 when not known (CDC mode, or written before it was kept).
	Pages int64
}

func xenKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixXen}, ino)
}

// encodeXen: uvarint(len uuid) uuid | uvarint(len name) name |
// uvarint(new bytes) [| uvarint(pages)]. The pages field is optional: values
// written before it existed end after new bytes and decode as 0 pages.
func encodeXen(x XenInfo) []byte {
	b := binary.AppendUvarint(nil, uint64(len(x.UUID)))
	b = append(b, x.UUID...)
	b = binary.AppendUvarint(b, uint64(len(x.Name)))
	b = append(b, x.Name...)
	b = binary.AppendUvarint(b, uint64(x.NewBytes))
	return binary.AppendUvarint(b, uint64(x.Pages))
}

func decodeXen(v []byte) (XenInfo, error) {
	var x XenInfo
	str := func() (string, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > uint64(len(v)-k) {
			return "", false
		}
		s := string(v[k : k+int(n)])
		v = v[k+int(n):]
		return s, true
	}
	var ok1, ok2 bool
	x.UUID, ok1 = str()
	x.Name, ok2 = str()
	n, k := binary.Uvarint(v)
	if !ok1 || !ok2 || k <= 0 || n > math.MaxInt64 {
		return x, fmt.Errorf("%w: xen info", index.ErrCorrupt)
	}
	x.NewBytes, v = int64(n), v[k:]
	if len(v) > 0 {
		n, k = binary.Uvarint(v)
		if k != len(v) || n > math.MaxInt64 {
			return x, fmt.Errorf("%w: xen info", index.ErrCorrupt)
		}
		x.Pages = int64(n)
	}
	return x, nil
}

// SetXen records that ino's committed content is an xl save image.
func (m *Maps) SetXen(ino uint64, info XenInfo) error {
	b := m.db.NewBatch()
	defer b.Close()
	b.Set(xenKey(ino), encodeXen(info), nil)
	return m.x.Apply(b)
}

// GetXen returns ino's xen info, or index.ErrNotFound.
func (m *Maps) GetXen(ino uint64) (XenInfo, error) {
	v, c, err := m.db.Get(xenKey(ino))
	if errors.Is(err, pebble.ErrNotFound) {
		return XenInfo{}, index.ErrNotFound
	}
	if err != nil {
		return XenInfo{}, err
	}
	defer c.Close()
	return decodeXen(v)
}

// WalkXen calls fn for every file recorded as an xl save image.
func (m *Maps) WalkXen(fn func(ino uint64, info XenInfo) error) error {
	return m.x.Scan([]byte{prefixXen}, func(k, v []byte) error {
		if len(k) != keyLen(1) {
			return fmt.Errorf("%w: xen key %x", index.ErrCorrupt, k)
		}
		info, err := decodeXen(v)
		if err != nil {
			return err
		}
		return fn(field(k, 0), info)
	})
}

// Guest returns the guest whose xl save image ino is (index.ErrNotFound
// if it is none): its UUID and name.
func (m *Maps) Guest(ino uint64) (uuid, name string, err error) {
	info, err := m.GetXen(ino)
	return info.UUID, info.Name, err
}
