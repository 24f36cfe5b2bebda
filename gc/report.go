// Package gc accounts for and checks a store as a whole: what it holds
// (Stats), whether every file's chunks are there and intact (Fsck), and,
// later, which chunks nobody references. It reads the index and the chunk
// store and owns no keys of its own.
package gc

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"syscall"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
	"strings"
)

// Stats is a store's accounting.
type Stats struct {
	Files        int64     `json:"files"`
	Dirs         int64     `json:"dirs"`
	Symlinks     int64     `json:"symlinks"`
	LogicalBytes int64     `json:"logical_bytes"` // sum of file sizes
	Chunks       int64     `json:"chunks"`
	StoredBytes  int64     `json:"stored_bytes"`  // sum of encoded chunk sizes
	DiskBytes    int64     `json:"disk_bytes"`    // every file of the store on disk
	JournalBytes int64     `json:"journal_bytes"` // of which the journal (segments/journal)
	DedupRatio   float64   `json:"dedup_ratio"`   // logical / stored
	Lineages     []Lineage `json:"lineages"`
}

// Lineage is the checkpoints of one guest (one domain UUID) that one owner
// keeps in one directory: what gc's policies judge together (see NewPlan).
// Another user's images with the same guest UUID are a lineage of their
// own, so they never stand in for this one's (in stats, in metrics).
type Lineage struct {
	UUID         string  `json:"uuid"`
	UID          uint32  `json:"uid"`
	Dir          string  `json:"dir"`  // the directory's path in the store, "/" for the root
	Name         string  `json:"name"` // the newest generation's guest name
	Generations  int     `json:"generations"`
	LogicalBytes int64   `json:"logical_bytes"`
	NewBytes     []int64 `json:"new_bytes"` // chunk bytes each generation added, oldest first
	// Pages is the page-map entries (changed pages) each generation wrote,
	// oldest first; 0 where not known (CDC mode).
	Pages []int64 `json:"pages"`
	// Interval is the mean time between generations (their modification
	// times: the checkpoint time of a received generation), in seconds, and
	// PerSecond its inverse; both 0 with fewer than two generations.
	Interval  float64 `json:"interval_seconds"`
	PerSecond float64 `json:"checkpoints_per_second"`
	// Newest and Oldest are the modification times of the newest and the
	// oldest generation, in nanoseconds since the epoch.
	Newest int64 `json:"newest_mtime_ns"`
	Oldest int64 `json:"oldest_mtime_ns"`
}

// ComputeStats walks the index and the chunk keys (not their values).
func ComputeStats(cs *chunkstore.Store, x *index.Index) (Stats, error) {
	var s Stats
	err := x.WalkInodes(func(in index.Inode) error {
		switch in.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			s.Files++
			s.LogicalBytes = index.AddSizes(s.LogicalBytes, in.Size)
		case syscall.S_IFDIR:
			s.Dirs++
		case syscall.S_IFLNK:
			s.Symlinks++
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	err = cs.Walk(func(i chunkstore.Info) error {
		s.Chunks++
		s.StoredBytes += int64(i.Stored)
		return nil
	})
	s.DiskBytes = int64(cs.DiskUsage())
	s.JournalBytes = int64(cs.JournalUsage())
	if err == nil {
		s.Lineages, err = lineages(x)
	}
	if s.StoredBytes > 0 {
		s.DedupRatio = float64(s.LogicalBytes) / float64(s.StoredBytes)
	}
	return s, err
}

// lineages groups the files recorded as xl save images by guest UUID,
// generations in modification-time order.
func lineages(x *index.Index) ([]Lineage, error) {
	type gen struct {
		mtime, size, added, pages int64
		name                      string
	}
	type key struct {
		uuid   string
		uid    uint32
		parent uint64
	}
	links, err := readNames(x)
	if err != nil {
		return nil, err
	}
	by := map[key][]gen{}
	dirOf := map[key]string{}
	err = lineage.Of(x).WalkXen(func(ino uint64, info lineage.XenInfo) error {
		ls, named := links[ino]
		if !named {
			return nil // not linked (being purged)
		}
		in, err := x.Get(ino)
		if errors.Is(err, index.ErrNotFound) {
			return nil // purged meanwhile
		}
		if err != nil {
			return err
		}
		k := key{info.UUID, in.UID, ls[0].Parent}
		if _, ok := dirOf[k]; !ok {
			dirOf[k] = "/" + path.Dir(links.path(ino))
		}
		by[k] = append(by[k], gen{in.Mtime, in.Size, info.NewBytes, info.Pages, info.Name})
		return nil
	})
	out := []Lineage{}
	for k, gens := range by {
		sort.Slice(gens, func(i, j int) bool { return gens[i].mtime < gens[j].mtime })
		l := Lineage{UUID: k.uuid, UID: k.uid, Dir: path.Clean(dirOf[k]), Name: gens[len(gens)-1].name, Generations: len(gens), Newest: gens[len(gens)-1].mtime, Oldest: gens[0].mtime}
		for _, g := range gens {
			l.LogicalBytes = index.AddSizes(l.LogicalBytes, g.size)
			l.NewBytes = append(l.NewBytes, g.added)
			l.Pages = append(l.Pages, g.pages)
		}
		if span := gens[len(gens)-1].mtime - gens[0].mtime; len(gens) > 1 && span > 0 {
			l.Interval = float64(span) / 1e9 / float64(len(gens)-1)
			l.PerSecond = 1 / l.Interval
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Name+a.UUID != b.Name+b.UUID {
			return a.Name+a.UUID < b.Name+b.UUID
		}
		if a.UID != b.UID {
			return a.UID < b.UID
		}
		return a.Dir < b.Dir
	})
	return out, err
}

// Problem is one thing fsck found wrong.
type Problem struct {
	// Kind is corrupt-chunk, missing-chunk, bad-extent, dangling-dirent,
	// index, damaged-file (a database file failed its checks) or
	// lost-writes (the write-ahead log lost acknowledged writes).
	Kind   string `json:"kind"`
	Ino    uint64 `json:"ino,omitempty"`
	Path   string `json:"path,omitempty"` // the affected file, from the store's root
	File   string `json:"file,omitempty"` // the damaged database file
	Offset int64  `json:"offset,omitempty"`
	Chunk  string `json:"chunk,omitempty"`
	Detail string `json:"detail"`
}

// FsckReport is what Fsck found.
type FsckReport struct {
	Chunks       int64     `json:"chunks"`
	ChunkBytes   int64     `json:"chunk_bytes"`       // plain bytes re-hashed
	StoredBytes  int64     `json:"stored_bytes_read"` // their stored (encoded) bytes read: what the progress counts
	Files        int64     `json:"files"`
	Extents      int64     `json:"extents"`
	Unreferenced int64     `json:"unreferenced_chunks"`
	Problems     []Problem `json:"problems"`
}

// OK reports whether the store is consistent. Unreferenced chunks are not a
// problem: they are what a crash or a deleted file leaves for gc.
func (r *FsckReport) OK() bool { return len(r.Problems) == 0 }

const maxProblems = 1000

func (r *FsckReport) add(p Problem) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

// Fsck checks every file's committed extents (ordered, non-overlapping,
// naming chunks that exist and are long enough) and every directory entry,
// then re-hashes every chunk. References are collected before chunks are
// read, so a store being written meanwhile shows no false missing chunk:
// chunks are always written before the extents that name them.
func Fsck(cs *chunkstore.Store, x *index.Index) (*FsckReport, error) {
	return FsckProgress(cs, x, nil)
}

// FsckProgress is Fsck telling p of its phases: files walked (their
// number not known ahead), then chunk bytes re-hashed of the store's
// total (summed from the chunk keys first, which is cheap next to reading
// the values).
func FsckProgress(cs *chunkstore.Store, x *index.Index, p Progress) (*FsckReport, error) {
	r := &FsckReport{Problems: []Problem{}}
	type need struct {
		ino int64
		off int64
		end int64 // ChunkOff+Len: the chunk must be at least this long
	}
	refs := map[chunkstore.ID]need{}
	inodes := map[uint64]uint32{}
	maps := lineage.Of(x)
	err := x.WalkInodes(func(in index.Inode) error {
		inodes[in.Ino] = in.Mode
		if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return nil
		}
		r.Files++
		if r.Files%1024 == 0 {
			p.report("walking files", r.Files, -1)
		}
		prevEnd := int64(0)
		err := x.WalkExtents(in.Ino, in.Ver, func(e index.Extent) error {
			r.Extents++
			if e.Off < prevEnd {
				r.add(Problem{Kind: "bad-extent", Ino: in.Ino, Offset: e.Off, Chunk: e.ID.String(), Detail: "overlaps the previous extent"})
			}
			prevEnd = e.End()
			if e.Off >= in.Size {
				return nil // left past the size by a crash; never read
			}
			if e.Run != nil {
				pages, err := maps.ResolveRun(e.Run, 0, e.Run.Pages())
				if err != nil {
					r.add(Problem{Kind: "bad-extent", Ino: in.Ino, Offset: e.Off, Detail: err.Error()})
					return nil
				}
				for i, p := range pages {
					if !p.Zero && refs[p.ID].end < index.PageSize {
						refs[p.ID] = need{int64(in.Ino), e.Off - e.ChunkOff + int64(i)*index.PageSize, index.PageSize}
					}
				}
				return nil
			}
			if n := refs[e.ID]; n.end < e.ChunkOff+e.Len {
				refs[e.ID] = need{int64(in.Ino), e.Off, e.ChunkOff + e.Len}
			}
			return nil
		})
		if err != nil {
			// Its extents are unreadable (a damaged table): this file is
			// lost, the others are checked.
			r.add(Problem{Kind: "bad-extent", Ino: in.Ino, Detail: "content unreadable: " + chunkstore.OneLine(err.Error())})
		}
		return nil
	})
	var dmg *index.DamagedError
	switch {
	case errors.As(err, &dmg):
		r.add(Problem{Kind: "index", Detail: "walking files skipped " + chunkstore.OneLine(err.Error())})
	case err != nil:
		// A damaged index table: say so and check the rest.
		r.add(Problem{Kind: "index", Detail: "walking files stopped: " + chunkstore.OneLine(err.Error())})
	}
	err = x.WalkDirents(func(parent uint64, d index.Dirent) error {
		if mode, ok := inodes[parent]; !ok || mode&syscall.S_IFMT != syscall.S_IFDIR {
			r.add(Problem{Kind: "dangling-dirent", Ino: parent, Detail: fmt.Sprintf("entry %q in a parent that is not a directory", d.Name)})
		}
		if _, ok := inodes[d.Ino]; !ok {
			r.add(Problem{Kind: "dangling-dirent", Ino: parent, Detail: fmt.Sprintf("entry %q names missing inode %d", d.Name, d.Ino)})
		}
		return nil
	})
	switch {
	case errors.As(err, &dmg):
		r.add(Problem{Kind: "index", Detail: "walking directories skipped " + chunkstore.OneLine(err.Error())})
	case err != nil:
		r.add(Problem{Kind: "index", Detail: "walking directories stopped: " + chunkstore.OneLine(err.Error())})
	}
	seen := map[chunkstore.ID]bool{}
	var total, done int64
	if p != nil {
		cs.Walk(func(i chunkstore.Info) error { total += int64(i.Stored); return nil })
		p.report("verifying chunks", 0, total)
	}
	err = cs.Verify(func(i chunkstore.Info, verr error) error {
		r.Chunks++
		if done += int64(i.Stored); r.Chunks%256 == 0 {
			p.report("verifying chunks", done, max(total, done))
		}
		n, referenced := refs[i.ID]
		if !referenced {
			r.Unreferenced++
		}
		seen[i.ID] = true
		if verr != nil {
			r.add(Problem{Kind: "corrupt-chunk", Chunk: i.ID.String(), Ino: uint64(n.ino), Offset: n.off, Detail: verr.Error()})
			return nil
		}
		r.ChunkBytes += int64(i.Plain)
		if referenced && int64(i.Plain) < n.end {
			r.add(Problem{Kind: "bad-extent", Ino: uint64(n.ino), Offset: n.off, Chunk: i.ID.String(),
				Detail: fmt.Sprintf("extent needs %d bytes of a %d-byte chunk", n.end, i.Plain)})
		}
		return nil
	})
	p.report("verifying chunks", done, max(total, done))
	r.StoredBytes = done
	if err != nil {
		r.add(Problem{Kind: "index", Detail: "verifying chunks stopped: " + chunkstore.OneLine(err.Error())})
	}
	for id, n := range refs {
		if !seen[id] {
			r.add(Problem{Kind: "missing-chunk", Ino: uint64(n.ino), Offset: n.off, Chunk: id.String(), Detail: "referenced chunk is not in the store"})
		}
	}
	damaged := cs.DamagedFiles()
	files := make([]string, 0, len(damaged))
	for f := range damaged {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		r.add(Problem{Kind: "damaged-file", File: f, Detail: damaged[f]})
	}
	if l := cs.Lost(); l != nil {
		r.add(Problem{Kind: "lost-writes", File: strings.Join(l.Logs, " "), Detail: l.Error()})
	}
	if err := namePaths(x, r.Problems); err != nil {
		r.add(Problem{Kind: "index", Detail: "naming the affected files: " + chunkstore.OneLine(err.Error())})
	}
	return r, nil
}

// namePaths fills in the path of each problem's file.
func namePaths(x *index.Index, ps []Problem) error {
	want := map[uint64]bool{}
	for _, p := range ps {
		if p.Ino != 0 && p.Kind != "dangling-dirent" {
			want[p.Ino] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	links, err := readNames(x)
	if err != nil {
		return err
	}
	for i := range ps {
		if !want[ps[i].Ino] {
			continue
		}
		if ps[i].Path = links.path(ps[i].Ino); ps[i].Path == "" {
			ps[i].Path = fmt.Sprintf("(unnamed inode %d)", ps[i].Ino)
		}
	}
	return nil
}
