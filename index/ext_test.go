package index

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// recorder is an Extension that notes what Open and Purge tell it, and
// writes a key of its own in the purge's batch.
type recorder struct {
	calls   []string
	upgrade []int // stored versions Upgrade saw
	purged  []uint64
}

func (r *recorder) Upgrade(x *Index, ver int) error {
	r.calls = append(r.calls, "upgrade")
	r.upgrade = append(r.upgrade, ver)
	// The version is recorded after the extension's upgrade, not before.
	if got, err := chunkstore.StoredFormat(x.DB()); err != nil || got != ver {
		return errors.New("the current version was recorded before the extension's upgrade")
	}
	return nil
}

func (r *recorder) Recover(x *Index) error {
	r.calls = append(r.calls, "recover")
	// The namespace's own recovery ran first: no orphan is left.
	return x.Scan([]byte{prefixOrphan}, func(k, _ []byte) error {
		return errors.New("recover ran before the namespace's recovery")
	})
}

func (r *recorder) Purge(x *Index, b *pebble.Batch, ino uint64) error {
	r.purged = append(r.purged, ino)
	return b.Set([]byte{ExtensionPrefixes[0], byte(ino)}, nil, nil)
}

// TestExtensionHooks: Open has the extension upgrade an old store's keys
// before the version is recorded (and then drops format 3's page
// reference keys), recover after the namespace's recovery, and a purge
// hands it the batch that deletes the inode, orphans purged by Open
// included.
func TestExtensionHooks(t *testing.T) {
	rec := &recorder{}
	x, _ := TestIndex(t, rec)
	if len(rec.calls) != 1 || rec.calls[0] != "recover" {
		t.Fatalf("a new store's Open: calls %v, want [recover]", rec.calls)
	}

	in, err := x.Create(RootIno, "img", Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Purge(in.Ino); err != nil {
		t.Fatal(err)
	}
	if len(rec.purged) != 1 || rec.purged[0] != in.Ino {
		t.Fatalf("purged %v, want [%d]", rec.purged, in.Ino)
	}
	if _, c, err := x.db.Get([]byte{ExtensionPrefixes[0], byte(in.Ino)}); err != nil {
		t.Fatalf("the extension's key in the purge's batch: %v", err)
	} else {
		c.Close()
	}

	// An orphan (unlinked while open) and a format 3 store: the next Open
	// upgrades, purges the orphan, recovers.
	orphan, err := x.Create(RootIno, "open", Inode{Mode: syscall.S_IFREG | 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Unlink(RootIno, "open", 2); err != nil {
		t.Fatal(err)
	}
	id := chunkstore.Sum([]byte("page"))
	pageRef := refKey(id, holderPage, 1, 7, 2)
	x.db.Set(pageRef, nil, pebble.Sync)
	x.db.Set([]byte("\x00format"), []byte("ckptfs 3"), pebble.Sync)

	rec2 := &recorder{}
	x2, err := Open(x.db, 3, 0, 0, rec2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"upgrade", "recover"}; len(rec2.calls) != 2 || rec2.calls[0] != want[0] || rec2.calls[1] != want[1] {
		t.Fatalf("calls %v, want %v", rec2.calls, want)
	}
	if len(rec2.upgrade) != 1 || rec2.upgrade[0] != 3 {
		t.Fatalf("Upgrade saw versions %v, want [3]", rec2.upgrade)
	}
	if len(rec2.purged) != 1 || rec2.purged[0] != orphan.Ino {
		t.Fatalf("Open purged %v, want the orphan %d", rec2.purged, orphan.Ino)
	}
	if v, err := chunkstore.StoredFormat(x2.DB()); err != nil || v != chunkstore.FormatVersion {
		t.Fatalf("stored format %d %v after the upgrade", v, err)
	}
	if x2.Format() != chunkstore.FormatVersion {
		t.Fatalf("Format %d", x2.Format())
	}
	if _, c, err := x.db.Get(pageRef); !errors.Is(err, pebble.ErrNotFound) {
		if err == nil {
			c.Close()
		}
		t.Fatalf("format 3's page reference key survived the upgrade: %v", err)
	}
}

// TestExtensionPrefixesFree: the index's own prefixes are none of the
// extension's.
func TestExtensionPrefixesFree(t *testing.T) {
	for _, own := range []byte{prefixDirent, prefixExtent, prefixInode, prefixMeta, prefixOrphan, prefixStaging, prefixRef, prefixCandidate} {
		for _, e := range ExtensionPrefixes {
			if own == e {
				t.Errorf("prefix %q is both the index's and the extension's", own)
			}
		}
	}
}
