package gc

import (
	"fmt"
	"path"
	"sort"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// Victim is a file a policy expires.
type Victim struct {
	Ino    uint64 `json:"ino"`
	Parent uint64 `json:"-"`
	Name   string `json:"-"`
	// Links are every name the file has (hard links), Parent/Name first;
	// expiring the file removes them all.
	Links    []Link `json:"-"`
	Path     string `json:"path"`  // from the store's root, without a leading slash
	Group    string `json:"group"` // what it was judged with; see expired
	UID      uint32 `json:"uid"`
	UUID     string `json:"uuid,omitempty"`       // the guest, for an xl save image
	Guest    string `json:"guest_name,omitempty"` // its name, from the image's config
	Size     int64  `json:"size"`
	NewBytes int64  `json:"new_bytes,omitempty"` // chunk bytes the image added when written
	Mtime    int64  `json:"mtime"`
}

// Link is one name of a file: an entry of directory Parent.
type Link struct {
	Parent uint64
	Name   string
}

// expired applies p to every group of files in the store and returns the
// files no rule keeps, by group, oldest first (NewPlan's decision).
//
// A group is a guest lineage: the xl save images of one guest (domain UUID
// in the image's config) that one owner keeps in one directory. Grouping by
// owner and directory means no user can make a policy expire another
// user's images (by writing images with their guest's UUID), nor images
// kept elsewhere. Files that are not xl save images are never expired,
// unless p.AllFiles asks for it; then each owner's regular files of each
// directory are a group.
func expired(x *index.Index, p Policy) ([]Victim, error) {
	if p.Empty() {
		return nil, nil
	}
	gs, err := groups(x, p.AllFiles)
	if err != nil {
		return nil, err
	}
	var out []Victim
	for _, vs := range gs {
		items, byIno := itemsOf(vs)
		for _, it := range p.Expire(items) {
			out = append(out, byIno[it.ID])
		}
	}
	return out, nil
}

// Generation is one file of a group as a listing shows it: what a policy
// (if any) says of it, with the rules that keep it.
type Generation struct {
	Victim
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"` // the rules that keep it ("last #1", "daily #2"); none if it expires
}

// List returns every group's files, newest first within a group, with what
// p says of each (an empty policy keeps all: "no policy"). Groups are as
// NewPlan makes them: xl save images by guest lineage, and other regular
// files by owner and directory if p.AllFiles.
func List(x *index.Index, p Policy) ([]Generation, error) {
	gs, err := groups(x, p.AllFiles)
	if err != nil {
		return nil, err
	}
	out := []Generation{}
	for _, vs := range gs {
		items, byIno := itemsOf(vs)
		for _, v := range p.Judge(items) {
			g := Generation{Victim: byIno[v.ID], Keep: v.Keep, Reasons: v.Reasons}
			if g.Reasons == nil {
				g.Reasons = []string{}
			}
			out = append(out, g)
		}
	}
	return out, nil
}

// itemsOf returns a group's files as a policy judges them, and the files
// by inode.
func itemsOf(vs []Victim) ([]Item, map[uint64]Victim) {
	byIno := make(map[uint64]Victim, len(vs))
	items := make([]Item, len(vs))
	for i, v := range vs {
		items[i] = Item{ID: v.Ino, Time: time.Unix(0, v.Mtime)}
		byIno[v.Ino] = v
	}
	return items, byIno
}

// groups returns the files gc judges, by group (in a stable order): each
// guest lineage's images and, with allFiles, each owner's other regular
// files of each directory.
func groups(x *index.Index, allFiles bool) ([][]Victim, error) {
	links, err := readNames(x)
	if err != nil {
		return nil, err
	}
	xenOf := map[uint64]lineage.XenInfo{}
	if err := lineage.Of(x).WalkXen(func(ino uint64, info lineage.XenInfo) error { xenOf[ino] = info; return nil }); err != nil {
		return nil, err
	}
	byKey := map[string][]Victim{}
	err = x.WalkInodes(func(in index.Inode) error {
		ls, named := links[in.Ino]
		if in.Mode&syscall.S_IFMT != syscall.S_IFREG || !named {
			return nil
		}
		info, isImage := xenOf[in.Ino]
		if !isImage && !allFiles {
			return nil
		}
		v := Victim{Ino: in.Ino, Parent: ls[0].Parent, Name: ls[0].Name, Links: ls, Path: links.path(in.Ino), UID: in.UID, Size: in.Size, Mtime: in.Mtime}
		dir := "/" + path.Dir(v.Path)
		if isImage {
			v.UUID, v.Guest, v.NewBytes = info.UUID, info.Name, info.NewBytes
			v.Group = fmt.Sprintf("guest %s, uid %d, %s", info.UUID, in.UID, dir)
			if info.Name != "" {
				v.Group = fmt.Sprintf("guest %s (%s), uid %d, %s", info.Name, info.UUID, in.UID, dir)
			}
		} else {
			v.Group = fmt.Sprintf("files of uid %d, %s", in.UID, dir)
		}
		// The key is by inode numbers: a name could be anything.
		key := fmt.Sprintf("%t %s %d %d", isImage, info.UUID, in.UID, v.Parent)
		byKey[key] = append(byKey[key], v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]Victim, len(keys))
	for i, k := range keys {
		out[i] = byKey[k]
	}
	return out, nil
}

// InLineage returns the victims that are images of guest uuid in directory
// dir (the receiver expires only its own lineage).
func InLineage(vs []Victim, uuid string, dir uint64) []Victim {
	var out []Victim
	for _, v := range vs {
		if v.UUID == uuid && v.Parent == dir {
			out = append(out, v)
		}
	}
	return out
}

// Remover removes one name of a file, only if it still names ino: by
// directory inode and entry, in the store's own namespace, never through a
// path that the kernel resolves.
type Remover func(parent uint64, name string, ino uint64) error

// Remove removes every name of each victim with rm and returns the names
// it could not remove, with why.
func Remove(vs []Victim, rm Remover) []string {
	var failed []string
	for _, v := range vs {
		for _, l := range v.Links {
			if err := rm(l.Parent, l.Name, v.Ino); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", v.Path, err))
			}
		}
	}
	return failed
}

// OfflineRemover removes names from an unmounted store (no file is open,
// so a file whose last name goes is purged at once).
func OfflineRemover(x *index.Index, now int64) Remover {
	return func(parent uint64, name string, ino uint64) error {
		in, err := x.UnlinkIno(parent, name, ino, now)
		if err != nil {
			return err
		}
		if in.Nlink == 0 {
			return x.Purge(ino)
		}
		return nil
	}
}

// Freed returns the stored bytes that deleting the victims and collecting
// would free: the chunks whose every reference is one the deletion drops
// (an extent of a victim, a page entry of a victim's generation that no
// surviving generation sees). Garbage already waiting for gc is not
// counted. Its memory grows with the victims' references.
func Freed(cs *chunkstore.Store, x *index.Index, vs []Victim) (int64, error) {
	type refKey = string
	dropped := map[refKey]bool{}
	ids := map[chunkstore.ID]bool{}
	add := func(id chunkstore.ID, ref []byte) error {
		dropped[string(ref)] = true
		ids[id] = true
		return nil
	}
	maps := lineage.Of(x)
	dead := map[uint64]map[uint64]bool{} // lineage -> victim generations
	for _, v := range vs {
		if err := x.InodeRefs(v.Ino, add); err != nil {
			return 0, err
		}
		err := maps.ImageGens(v.Ino, func(lin, gen uint64) error {
			if dead[lin] == nil {
				dead[lin] = map[uint64]bool{}
			}
			dead[lin][gen] = true
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	for lin, gens := range dead {
		for gen := range gens {
			if err := maps.DropPlan(lin, gen, gens, add); err != nil {
				return 0, err
			}
		}
	}
	// A chunk is freed if none of its references stays: its extents'
	// (reference keys) and its page entries' (one pass over the page maps).
	kept := map[chunkstore.ID]bool{}
	if len(ids) > 0 {
		err := maps.WalkPageRefs(func(id chunkstore.ID, lin, gen, pfn uint64) error {
			if ids[id] && !dropped[string(lineage.PageRefKey(lin, gen, pfn))] {
				kept[id] = true
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	var freed int64
	for id := range ids {
		all := !kept[id]
		err := x.RefsOf(id, func(ref []byte) error {
			all = all && dropped[string(ref)]
			return nil
		})
		if err != nil {
			return 0, err
		}
		if all {
			n, err := cs.StoredSize(id)
			if err != nil {
				return 0, err
			}
			freed += n
		}
	}
	return freed, nil
}
