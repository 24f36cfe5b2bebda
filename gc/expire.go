package gc

import (
	"path"
	"sort"
	"syscall"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
)

// Victim is a file a policy expires.
type Victim struct {
	Ino      uint64 `json:"ino"`
	Parent   uint64 `json:"-"`
	Name     string `json:"-"`
	Path     string `json:"path"`  // from the store's root, without a leading slash
	Group    string `json:"group"` // "guest UUID" or "dir PATH"
	Size     int64  `json:"size"`
	NewBytes int64  `json:"new_bytes,omitempty"` // chunk bytes the image added when written
	Mtime    int64  `json:"mtime"`
}

// Plan applies p to every group of files in the store: each guest lineage
// (xl save images, by domain UUID) and, for other regular files, each
// directory. It returns the files no rule keeps, by group, oldest first.
func Plan(x *index.Index, p Policy) ([]Victim, error) {
	if p.Empty() {
		return nil, nil
	}
	type link struct {
		parent uint64
		name   string
	}
	links := map[uint64]link{}
	err := x.WalkDirents(func(parent uint64, d index.Dirent) error {
		links[d.Ino] = link{parent, d.Name}
		return nil
	})
	if err != nil {
		return nil, err
	}
	pathOf := func(ino uint64) string {
		var parts []string
		for ino != index.RootIno {
			l, ok := links[ino]
			if !ok {
				return ""
			}
			parts = append(parts, l.name)
			ino = l.parent
		}
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		return path.Join(parts...)
	}
	xenOf := map[uint64]index.XenInfo{}
	if err := x.WalkXen(func(ino uint64, info index.XenInfo) error { xenOf[ino] = info; return nil }); err != nil {
		return nil, err
	}
	groups := map[string][]Victim{}
	err = x.WalkInodes(func(in index.Inode) error {
		l, named := links[in.Ino]
		if in.Mode&syscall.S_IFMT != syscall.S_IFREG || !named {
			return nil
		}
		v := Victim{Ino: in.Ino, Parent: l.parent, Name: l.name, Path: pathOf(in.Ino), Size: in.Size, Mtime: in.Mtime}
		if info, ok := xenOf[in.Ino]; ok {
			v.Group, v.NewBytes = "guest "+info.UUID, info.NewBytes
		} else {
			v.Group = "dir /" + path.Dir(v.Path)
		}
		groups[v.Group] = append(groups[v.Group], v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Victim
	for _, k := range keys {
		vs := groups[k]
		byIno := map[uint64]Victim{}
		items := make([]Item, len(vs))
		for i, v := range vs {
			items[i] = Item{ID: v.Ino, Time: time.Unix(0, v.Mtime)}
			byIno[v.Ino] = v
		}
		for _, it := range p.Expire(items) {
			out = append(out, byIno[it.ID])
		}
	}
	return out, nil
}

// RemoveOffline deletes the victims from an unmounted store (no file is
// open, so each is purged at once).
func RemoveOffline(x *index.Index, vs []Victim, now int64) error {
	for _, v := range vs {
		if _, err := x.Unlink(v.Parent, v.Name, now); err != nil {
			return err
		}
		if err := x.Purge(v.Ino); err != nil {
			return err
		}
	}
	return nil
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
	dead := map[uint64]map[uint64]bool{} // lineage -> victim generations
	for _, v := range vs {
		if err := x.InodeRefs(v.Ino, add); err != nil {
			return 0, err
		}
		err := x.ImageGens(v.Ino, func(lin, gen uint64) error {
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
			if err := x.DropPlan(lin, gen, gens, add); err != nil {
				return 0, err
			}
		}
	}
	var freed int64
	for id := range ids {
		all := true
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
