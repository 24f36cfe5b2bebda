package bucket

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"time"

	"github.com/ckptfs/ckptfs/fs/transfer"
	"github.com/ckptfs/ckptfs/gc/policy"
)

// GCOptions says what a bucket gc does.
type GCOptions struct {
	Policy policy.Policy
	// Grace is how long a pack stays marked before it may go.
	Grace time.Duration
	// Garbage is the fraction of a pack's bytes that must be unneeded
	// (or duplicates of blobs in other packs) for gc to rewrite it.
	Garbage float64
	DryRun  bool
	Now     time.Time
}

// GCReport is what a bucket gc did.
type GCReport struct {
	Expired      []string `json:"expired"` // host/path of the files it expired
	Files        int      `json:"files"`   // files left
	Packs        int      `json:"packs"`
	Marked       int      `json:"marked"`
	Unmarked     int      `json:"unmarked"`
	Rewritten    int      `json:"rewritten"`
	Deleted      int      `json:"deleted"`
	DeletedBytes int64    `json:"deleted_bytes"`
	Orphans      int      `json:"orphans"` // packs without an index, deleted
	// Pending is the packs marked and waiting out the grace period.
	Pending int `json:"pending"`
	// After the run: the bytes of the packs not marked, the chunks they
	// hold, and how many of those are held by more than one of them
	// (pushed by two hosts at once; a later run rewrites them away).
	StoredBytes int64 `json:"stored_bytes"`
	Chunks      int   `json:"chunks"`
	Duplicates  int   `json:"duplicates"`
}

// GC expires files by policy (per host and guest; other files per host
// and directory when the policy says AllFiles), then marks, rewrites and
// deletes packs as the package doc says. Run it from one host at a time.
func (b *Bucket) GC(o GCOptions) (GCReport, error) {
	var rep GCReport
	if o.Now.IsZero() {
		// The object store's clock: marks are dated by it, and so are
		// the grace periods pushers honour.
		now, err := b.storeNow()
		if err != nil {
			return rep, err
		}
		o.Now = now
	}
	if o.Garbage == 0 {
		o.Garbage = policy.SegmentGarbage
	}
	files, err := b.ListAll("")
	if err != nil {
		return rep, err
	}
	expired, err := b.expire(files, o)
	if err != nil {
		return rep, err
	}
	rep.Expired = expired
	gone := map[string]bool{}
	for _, p := range expired {
		gone[p] = true
	}
	// What the remaining files need. A manifest pushed from here on is
	// seen by the next run before it deletes anything (package doc).
	live := map[Name]bool{}
	for _, f := range files {
		if gone[f.Path] {
			continue
		}
		rep.Files++
		m, err := b.ManifestOf(f.Path)
		if err != nil {
			return rep, err
		}
		for _, id := range m.Chunks() {
			live[b.o.Keys.Name(id)] = true
		}
	}
	if err := b.refresh(); err != nil {
		return rep, err
	}
	b.mu.Lock()
	packs := make([]string, 0, len(b.packs))
	for p := range b.packs {
		packs = append(packs, p)
	}
	marks := b.marks
	b.mu.Unlock()
	sort.Strings(packs)
	rep.Packs = len(packs)
	// keeper[n] is the unmarked pack whose copy of n is kept: of the
	// packs holding it, the one most needed (so that duplicates, pushed
	// by two hosts at once, fall to the smaller pack, which is rewritten).
	needs := map[string]int{}
	for _, p := range packs {
		for _, l := range b.packs[p] {
			if live[l.name] {
				needs[p]++
			}
		}
	}
	keeper := map[Name]string{}
	for _, p := range packs {
		if _, m := marks[p]; m {
			continue
		}
		for _, l := range b.packs[p] {
			if k, ok := keeper[l.name]; !ok || needs[p] > needs[k] {
				keeper[l.name] = p
			}
		}
	}
	for _, p := range packs {
		ls := b.packs[p]
		t, marked := marks[p]
		needed := 0
		var keep []loc
		for _, l := range ls {
			if !live[l.name] {
				continue
			}
			if marked {
				if keeper[l.name] == "" {
					needed++ // its only copies are marked
				}
				continue
			}
			if keeper[l.name] == p {
				keep = append(keep, l)
			}
		}
		switch {
		case marked && needed > 0:
			rep.Unmarked++
			if !o.DryRun {
				if err := b.remove("gc/marks/" + p); err != nil {
					return rep, err
				}
				for _, l := range ls { // its copies are the ones kept now
					if _, ok := keeper[l.name]; !ok {
						keeper[l.name] = p
					}
				}
			}
		case marked && o.Now.Sub(t) >= o.Grace:
			rep.Deleted++
			for _, l := range ls {
				rep.DeletedBytes += int64(l.len)
			}
			if !o.DryRun {
				if err := b.deletePack(p); err != nil {
					return rep, err
				}
			}
		case marked:
			rep.Pending++
		case len(keep) == len(ls):
			// all needed, none a duplicate
		case len(keep) == 0:
			rep.Marked++
			if !o.DryRun {
				if err := b.mark(p, o.Now); err != nil {
					return rep, err
				}
			}
		default:
			var size, kept int64
			dup := false
			for _, l := range ls {
				size += int64(l.len)
				dup = dup || (live[l.name] && keeper[l.name] != p)
			}
			for _, l := range keep {
				kept += int64(l.len)
			}
			// Duplicates go whatever they cost: a chunk is stored once.
			if !dup && float64(size-kept) < o.Garbage*float64(size) {
				continue
			}
			rep.Rewritten++
			if !o.DryRun {
				if err := b.rewrite(p, keep, o.Now); err != nil {
					return rep, err
				}
			}
		}
	}
	n, err := b.deleteOrphans(o)
	rep.Orphans = n
	if err != nil || o.DryRun {
		return rep, err
	}
	return rep, b.count(&rep)
}

// count fills in what the unmarked packs hold.
func (b *Bucket) count(rep *GCReport) error {
	if err := b.refresh(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	copies := map[Name]int{}
	for p, ls := range b.packs {
		if _, marked := b.marks[p]; marked {
			continue
		}
		for _, l := range ls {
			copies[l.name]++
			rep.StoredBytes += int64(l.len)
		}
	}
	rep.Chunks = len(copies)
	for _, c := range copies {
		if c > 1 {
			rep.Duplicates++
		}
	}
	return nil
}

// expire deletes the files the policy does not keep.
func (b *Bucket) expire(files []transfer.File, o GCOptions) ([]string, error) {
	if o.Policy.Empty() {
		return nil, nil
	}
	groups := map[string][]policy.Item{}
	for i, f := range files {
		host := f.Host
		var g string
		switch {
		case f.UUID != "":
			g = host + "\x00guest\x00" + f.UUID
		case o.Policy.AllFiles:
			g = host + "\x00dir\x00" + path.Dir(f.Path)
		default:
			continue
		}
		groups[g] = append(groups[g], policy.Item{ID: uint64(i), Time: time.Unix(0, f.Mtime)})
	}
	var out []string
	for _, items := range groups {
		for _, it := range o.Policy.Expire(items) {
			p := files[it.ID].Path
			out = append(out, p)
			if !o.DryRun {
				if err := b.remove("files/" + p); err != nil {
					return out, err
				}
				b.mu.Lock()
				delete(b.headers, p)
				b.mu.Unlock()
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (b *Bucket) mark(p string, now time.Time) error {
	return b.put("gc/marks/"+p, []byte(strconv.FormatInt(now.UnixNano(), 10)))
}

// deletePack removes a pack: its index first (no one finds it after), then
// its bytes, then its mark.
func (b *Bucket) deletePack(p string) error {
	if err := b.remove("index/" + p); err != nil {
		return err
	}
	if err := b.remove("packs/" + p); err != nil {
		return err
	}
	return b.remove("gc/marks/" + p)
}

// rewrite copies the blobs of p in keep (sealed as they are: a blob's seal
// depends on its name, not its pack) into a new pack, then marks p.
func (b *Bucket) rewrite(p string, keep []loc, now time.Time) error {
	var buf []byte
	var ls []loc
	np := newPackName()
	for _, l := range keep {
		data, err := b.get("packs/"+p, int64(l.off), int64(l.len))
		if err != nil {
			return err
		}
		if len(data) != int(l.len) {
			return fmt.Errorf("%s: pack %s is shorter than its index says", b.What, p)
		}
		ls = append(ls, loc{name: l.name, pack: np, off: uint32(len(buf)), len: l.len})
		buf = append(buf, data...)
	}
	if err := b.putPack(np, buf, ls); err != nil {
		return err
	}
	return b.mark(p, now)
}

// deleteOrphans removes packs that have no index (a push that died between
// the two uploads) once they are older than the grace period.
func (b *Bucket) deleteOrphans(o GCOptions) (int, error) {
	objs, err := b.list("packs/")
	if err != nil {
		return 0, err
	}
	idx, err := b.list("index/")
	if err != nil {
		return 0, err
	}
	n := 0
	for p, t := range objs {
		if _, ok := idx[p]; ok || o.Now.Sub(t) < o.Grace {
			continue
		}
		n++
		if !o.DryRun {
			if err := b.remove("packs/" + p); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}
