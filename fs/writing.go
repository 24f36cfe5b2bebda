package fs

// Writing is a file open for writing through the mount, as far as written.
type Writing struct {
	Path string `json:"path"` // from the mount's root
	Size int64  `json:"size"` // bytes so far
	// Expected is the size of its directory's latest image when the file
	// is being written next to one (a new checkpoint of the same guest is
	// about that size); 0 when unknown.
	Expected int64 `json:"expected_size,omitempty"`
}

// Writing lists the files open for writing.
func (f *FS) Writing() []Writing {
	var out []Writing
	f.nodes.Range(func(k, _ any) bool {
		n := f.node(k.(uint64))
		if n == nil {
			return true
		}
		n.mu.RLock()
		w := n.w
		var size int64
		if w != nil {
			size = w.Size()
		}
		n.mu.RUnlock()
		if w == nil {
			return true
		}
		wr := Writing{Path: n.Path(nil), Size: size}
		if _, p := n.Parent(); p != nil {
			if dir, ents, err := f.dirEntries(p.StableAttr().Ino); err == nil {
				if _, img, ok := f.newestImage(dir, ents); ok && img.Ino != n.ino() {
					wr.Expected = img.Size
				}
			}
		}
		out = append(out, wr)
		return true
	})
	return out
}
