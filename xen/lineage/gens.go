package lineage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ckptfs/ckptfs/index"
)

// Gen is one generation (one xl save image) of a guest lineage. A lookup
// at Gen sees the newest entry of a pfn with Floor <= gen' <= Gen. Its
// writer compares its pages with generation Base's (0: none), as a lookup
// at Base with BaseFloor sees them. It is a delta on Base (entries only for
// the pages that differ) if Floor is BaseFloor, and full (an entry for
// every page) if Floor is Gen.
type Gen struct {
	Lin, Num, Floor, Base, BaseFloor uint64
}

// Full reports whether g is written full (an entry for every page of its
// image, unchanged ones too), though it has a base to compare with.
func (g Gen) Full() bool { return g.Base != 0 && g.Floor == g.Num }

// Generation states (first byte of a generation record).
const (
	GenInFlight = 1 // its writer is still open
	GenLive     = 2 // complete; a file references it; a new generation may be a delta on it
	GenDead     = 3 // no file references it: gc relabels or drops its entries
)

// GenRecord is what the store keeps of a generation.
type GenRecord struct {
	Lin, Num, Floor, Ino uint64
	State                byte
	// BaseFloor is the floor of the generation its writer compared with
	// (a full generation's base chain; for a delta, Floor itself).
	BaseFloor uint64
}

func lineageKey(uuid string) []byte { return append([]byte{prefixLineage}, uuid...) }

func genPrefix(lin uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixGen}, lin)
}

func genKey(lin, gen uint64) []byte { return binary.BigEndian.AppendUint64(genPrefix(lin), gen) }

func inoGenPrefix(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixInoGen}, ino)
}

func inoGenKey(ino, lin, gen uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(inoGenPrefix(ino), lin), gen)
}

func encodeGenRecord(r GenRecord) []byte {
	b := []byte{r.State}
	b = binary.AppendUvarint(b, r.Floor)
	b = binary.AppendUvarint(b, r.Ino)
	if r.BaseFloor != 0 && r.BaseFloor != r.Floor {
		b = binary.AppendUvarint(b, r.BaseFloor)
	}
	return b
}

func decodeGenRecord(k, v []byte) (GenRecord, error) {
	if len(k) != keyLen(2) || len(v) < 3 || v[0] < GenInFlight || v[0] > GenDead {
		return GenRecord{}, fmt.Errorf("%w: generation record %x", index.ErrCorrupt, k)
	}
	r := GenRecord{Lin: field(k, 0), Num: field(k, 1), State: v[0]}
	f, n := binary.Uvarint(v[1:])
	ino, n2 := binary.Uvarint(v[1+max(n, 0):])
	if n <= 0 || n2 <= 0 || 1+n+n2 > len(v) || f > r.Num {
		return GenRecord{}, fmt.Errorf("%w: generation record %x", index.ErrCorrupt, k)
	}
	r.Floor, r.Ino, r.BaseFloor = f, ino, f
	if rest := v[1+n+n2:]; len(rest) > 0 {
		bf, n3 := binary.Uvarint(rest)
		if n3 != len(rest) || bf > r.Num || bf == 0 || bf == f { // canonical: absent when equal
			return GenRecord{}, fmt.Errorf("%w: generation record %x", index.ErrCorrupt, k)
		}
		r.BaseFloor = bf
	}
	return r, nil
}

func (m *Maps) getGen(lin, gen uint64) (GenRecord, error) {
	k := genKey(lin, gen)
	v, c, err := m.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return GenRecord{}, index.ErrNotFound
	}
	if err != nil {
		return GenRecord{}, err
	}
	defer c.Close()
	return decodeGenRecord(k, v)
}

// BeginGen starts a generation of the lineage of guest uuid for the image
// being written into ino. It is a delta on the lineage's newest generation
// if that one is live; otherwise (first image, a concurrent writer of the
// same guest, the newest deleted) it is full.
func (m *Maps) BeginGen(ino uint64, uuid string) (Gen, error) {
	var g Gen
	err := m.x.Txn(func(b *pebble.Batch, alloc func() uint64) error {
		v, c, err := m.db.Get(lineageKey(uuid))
		switch {
		case err == nil:
			if len(v) != 8 {
				c.Close()
				return fmt.Errorf("%w: lineage %q", index.ErrCorrupt, uuid)
			}
			g.Lin = binary.BigEndian.Uint64(v)
			c.Close()
		case errors.Is(err, pebble.ErrNotFound):
			g.Lin = alloc()
			b.Set(lineageKey(uuid), binary.BigEndian.AppendUint64(nil, g.Lin), nil)
		default:
			return err
		}
		g.Num = alloc()
		g.Floor = g.Num
		last, err := m.lastGen(g.Lin)
		if err != nil {
			return err
		}
		if last.State == GenLive {
			g.Base, g.BaseFloor, g.Floor = last.Num, last.Floor, last.Floor
			depth, err := m.chainDepth(g.Lin, last.Floor)
			if err != nil {
				return err
			}
			if depth >= FullEvery {
				g.Floor = g.Num // full: lookups stop here
			}
		}
		if ino == 0 {
			return b.Set(genKey(g.Lin, g.Num), encodeGenRecord(GenRecord{State: GenInFlight, Floor: g.Floor, BaseFloor: g.BaseFloor}), nil)
		}
		return AdoptGen(b, g, ino)
	})
	return g, err
}

// chainDepth returns how many generations of lin have floor (the delta
// chain from floor, dead ones not yet reclaimed included).
func (m *Maps) chainDepth(lin, floor uint64) (int, error) {
	n := 0
	err := m.scanFrom(genPrefix(lin), genKey(lin, floor), func(k, v []byte) (bool, error) {
		r, err := decodeGenRecord(k, v)
		if err != nil {
			return false, err
		}
		if r.Floor == floor {
			n++
		}
		return true, nil
	})
	return n, err
}

// AdoptGen makes ino the image of in-flight generation g begun with no
// file (BeginGen with ino 0: a receiver's checkpoint, whose file is made
// when it is published), in b: deleting ino then ends the generation, and
// a crash keeps it live with the file.
func AdoptGen(b *pebble.Batch, g Gen, ino uint64) error {
	if err := b.Set(genKey(g.Lin, g.Num), encodeGenRecord(GenRecord{State: GenInFlight, Floor: g.Floor, Ino: ino, BaseFloor: g.BaseFloor}), nil); err != nil {
		return err
	}
	return b.Set(inoGenKey(ino, g.Lin, g.Num), nil, nil)
}

// lastGen returns the lineage's newest generation record (State 0 if none).
func (m *Maps) lastGen(lin uint64) (GenRecord, error) {
	p := genPrefix(lin)
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: index.PrefixEnd(p)})
	if err != nil {
		return GenRecord{}, err
	}
	defer it.Close()
	if !it.Last() {
		return GenRecord{}, it.Error()
	}
	return decodeGenRecord(it.Key(), it.Value())
}

// EndGen ends an in-flight generation when its writer closes: live if the
// writer committed content that may name its pages, dead otherwise.
func (m *Maps) EndGen(g Gen, live bool) error {
	return m.x.Txn(func(b *pebble.Batch, _ func() uint64) error {
		r, err := m.getGen(g.Lin, g.Num)
		if err != nil || r.State != GenInFlight {
			return err
		}
		r.State = GenDead
		if live {
			r.State = GenLive
		}
		return b.Set(genKey(g.Lin, g.Num), encodeGenRecord(r), nil)
	})
}

// dropInoGen marks the generations held by ino dead, in b.
func (m *Maps) dropInoGen(b *pebble.Batch, ino uint64) error {
	return m.ImageGens(ino, func(lin, gen uint64) error {
		r, err := m.getGen(lin, gen)
		if err == nil {
			r.State = GenDead
			b.Set(genKey(lin, gen), encodeGenRecord(r), nil)
		} else if !errors.Is(err, index.ErrNotFound) {
			return err
		}
		return b.Delete(inoGenKey(ino, lin, gen), nil)
	})
}

// abortGens ends every in-flight generation (at Open: no writer survived).
// One whose file still exists may be named by its committed content, so it
// becomes live and goes with the file; the others are dead.
func (m *Maps) abortGens(b *pebble.Batch) error {
	return m.x.Scan([]byte{prefixGen}, func(k, v []byte) error {
		r, err := decodeGenRecord(k, v)
		if err != nil || r.State != GenInFlight {
			return err
		}
		r.State = GenDead
		if _, err := m.x.Get(r.Ino); err == nil {
			r.State = GenLive
		} else if !errors.Is(err, index.ErrNotFound) {
			return err
		}
		return b.Set(k, encodeGenRecord(r), nil)
	})
}

// WalkGens calls fn for every generation record, by lineage then number.
func (m *Maps) WalkGens(fn func(GenRecord) error) error {
	return m.x.Scan([]byte{prefixGen}, func(k, v []byte) error {
		r, err := decodeGenRecord(k, v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

var errBlocked = errors.New("blocked")

// heir returns the next live generation after rec in its delta chain (0 if
// none), taking the generations in dead as dead too; errBlocked if the
// next one that is not dead is still being written, or if a generation
// being written compares with rec's chain (a full generation copying the
// entries its base sees: they must stay until it commits them).
func (m *Maps) heir(rec GenRecord, dead map[uint64]bool) (uint64, error) {
	var heir uint64
	err := m.scanFrom(genPrefix(rec.Lin), genKey(rec.Lin, rec.Num+1), func(k, v []byte) (bool, error) {
		r, err := decodeGenRecord(k, v)
		if err != nil {
			return false, err
		}
		if r.Floor != rec.Floor {
			if r.State == GenInFlight && r.BaseFloor == rec.Floor {
				return false, errBlocked
			}
			return false, nil // another chain
		}
		switch {
		case r.State == GenDead || dead[r.Num]:
			return true, nil
		case r.State == GenInFlight:
			return false, errBlocked
		}
		heir = r.Num
		return false, nil
	})
	return heir, err
}

// scanFrom calls fn for keys with prefix p from start on, while fn returns
// true.
func (m *Maps) scanFrom(p, start []byte, fn func(k, v []byte) (bool, error)) error {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: index.PrefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.SeekGE(start); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		more, err := fn(it.Key(), v)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// ImageGens calls fn for each generation whose pages ino's image holds.
func (m *Maps) ImageGens(ino uint64, fn func(lin, gen uint64) error) error {
	return m.x.Scan(inoGenPrefix(ino), func(k, _ []byte) error {
		if len(k) != keyLen(3) {
			return fmt.Errorf("%w: generation key %x", index.ErrCorrupt, k)
		}
		return fn(field(k, 1), field(k, 2))
	})
}

// Writing returns the files whose image is still being written: those
// whose generation is in flight.
func (m *Maps) Writing() (map[uint64]bool, error) {
	writing := map[uint64]bool{}
	err := m.WalkGens(func(g GenRecord) error {
		if g.State == GenInFlight && g.Ino != 0 {
			writing[g.Ino] = true
		}
		return nil
	})
	return writing, err
}
