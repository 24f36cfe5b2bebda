package content

import (
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// xenPages is the page hook the mount uses (fs.XenPages), for tests of
// the engine in page mode.
func xenPages(x *index.Index, pages bool) func(ino uint64) Pages {
	return func(ino uint64) Pages { return lineage.NewImage(x, ino, pages) }
}
