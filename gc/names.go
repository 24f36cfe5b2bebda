package gc

import (
	"path"

	"github.com/ckptfs/ckptfs/index"
)

// names maps every inode to its names (directory entries), from one walk.
type names map[uint64][]Link

func readNames(x *index.Index) (names, error) {
	n := names{}
	err := x.WalkDirents(func(parent uint64, d index.Dirent) error {
		n[d.Ino] = append(n[d.Ino], Link{parent, d.Name})
		return nil
	})
	return n, err
}

// path returns ino's path from the store's root, without a leading slash,
// through its first name at each step; "" if some step has no name.
func (n names) path(ino uint64) string {
	var parts []string
	for ino != index.RootIno {
		l, ok := n[ino]
		if !ok || len(parts) > 4096 {
			return ""
		}
		parts = append(parts, l[0].Name)
		ino = l[0].Parent
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return path.Join(parts...)
}
