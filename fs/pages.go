package fs

import (
	"github.com/ckptfs/ckptfs/fs/content"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/xen/lineage"
)

// XenPages is the content engine's page hook over x (content.Config.Pages):
// an xl save image is stored page by page into its guest's lineage. With
// pages false it is cut by content, and only its guest is recorded.
func XenPages(x *index.Index, pages bool) func(ino uint64) content.Pages {
	return func(ino uint64) content.Pages { return lineage.NewImage(x, ino, pages) }
}
