package transfer

import (
	"errors"
	"fmt"
	"sort"
	"syscall"

	"github.com/ckptfs/ckptfs/chunkstore"
	"github.com/ckptfs/ckptfs/index"
	"github.com/ckptfs/ckptfs/index/manifest"
)

// Options says what Copy copies and whom it tells.
type Options struct {
	// Select picks the files to copy (nil: all).
	Select func(File) bool
	// Prune removes, once every selected file was copied, the files at
	// the destination that Select picks and the source no longer has
	// (what its retention expired), as rclone sync and Proxmox Backup
	// Server's "remove vanished" do. Nothing is removed when a file
	// failed to copy, nor when the source has no selected file at all
	// (ErrPruneEverything): a mistyped source or selection must not
	// empty the destination.
	Prune bool
	// Progress, if set, is called after each file, and while a file's
	// chunks travel (Bytes then counts the file's part by the share of
	// its missing chunks sent).
	Progress func(Progress)
}

// Progress is where a Copy is.
type Progress struct {
	File        File
	Done, Total int   // files
	Bytes       int64 // logical bytes of the files done (and of the part of the one under way)
	TotalBytes  int64
	Skipped     bool
}

// Report is what a Copy did.
type Report struct {
	Files   int `json:"files"`   // copied
	Skipped int `json:"skipped"` // already at the destination
	// Bytes is the copied files' logical size, ChunkBytes the plain bytes
	// of the chunks sent (the destination lacked them), Chunks their
	// number.
	Bytes      int64 `json:"bytes"`
	Chunks     int   `json:"chunks"`
	ChunkBytes int64 `json:"chunk_bytes"`
	// Deltas is how many files were sent as a delta on a file the
	// destination held.
	Deltas int `json:"deltas"`
	// Failed lists the files not copied, with why.
	Failed []string `json:"failed,omitempty"`
	// NotRemoved lists the files Prune could not remove, with why.
	NotRemoved []string `json:"not_removed,omitempty"`
	// Removed lists the files Prune removed at the destination, and
	// RemovedBytes is their logical size.
	Removed      []string `json:"removed"`
	RemovedBytes int64    `json:"removed_bytes"`
	// PruneSkipped says why Prune removed nothing, when it did not run.
	PruneSkipped string `json:"prune_skipped,omitempty"`
}

// ErrPruneEverything is Copy's error, before anything is copied, when
// Prune would remove every selected file at the destination because the
// source has none.
var ErrPruneEverything = errors.New("the source has no selected file: --prune would remove every selected file at the destination")

// Copy copies the selected files of src that dst does not hold. Files of a
// guest go oldest first, each delta-encoded against the newest one of the
// same guest that both sides hold. A file that fails is reported and the
// rest go on, unless the failure broke a stream (then Copy stops).
func Copy(src, dst Peer, o Options) (Report, error) {
	rep := Report{Removed: []string{}}
	have, err := src.List()
	if err != nil {
		return rep, err
	}
	there, err := dst.List()
	if err != nil {
		return rep, err
	}
	at := make(map[string]File, len(there))
	for _, f := range there {
		at[f.Path] = f
	}
	picked := func(f File) bool { return o.Select == nil || o.Select(f) }
	var todo []File
	var total int64
	for _, f := range have {
		if picked(f) {
			todo = append(todo, f)
			total = index.AddSizes(total, f.Size)
		}
	}
	// vanished are the selected files at the destination that the source
	// does not have (by path: a different file of the same name is a
	// failure of the copy, not something to remove).
	var vanished []File
	if o.Prune {
		here := make(map[string]bool, len(have))
		for _, f := range have {
			here[f.Path] = true
		}
		for _, f := range there {
			if !here[f.Path] && picked(f) {
				vanished = append(vanished, f)
			}
		}
		if len(todo) == 0 && len(vanished) > 0 {
			return rep, fmt.Errorf("%w (%d of them); check the source and the selection", ErrPruneEverything, len(vanished))
		}
	}
	sort.Slice(todo, func(i, j int) bool {
		a, b := todo[i], todo[j]
		if a.UUID != b.UUID {
			return a.UUID < b.UUID
		}
		if a.Mtime != b.Mtime {
			return a.Mtime < b.Mtime
		}
		return a.Path < b.Path
	})
	// shared[uuid] is the newest file of that guest both sides hold, with
	// the source's manifest when it is known.
	shared := map[string]File{}
	for _, f := range have {
		if g, ok := at[f.Path]; ok && f.UUID != "" && g.Same(f) && f.Mtime >= shared[f.UUID].Mtime {
			shared[f.UUID] = f
		}
	}
	manifests := map[string]*manifest.Manifest{}
	p := Progress{Total: len(todo), TotalBytes: total}
	for _, f := range todo {
		p.File, p.Skipped = f, false
		g, exists := at[f.Path]
		switch {
		case exists && g.Same(f):
			rep.Skipped++
			p.Skipped = true
		case exists:
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: a different file has this name at the destination (left alone)", f.Path))
		default:
			var tick func(float64)
			if o.Progress != nil {
				tick = func(frac float64) {
					q := p
					q.Bytes += int64(frac * float64(f.Size))
					o.Progress(q)
				}
			}
			m, sent, delta, err := copyOne(src, dst, f, shared, manifests, tick)
			if err != nil {
				rep.Failed = append(rep.Failed, chunkstore.OneLine(err.Error()))
				var se *StreamError
				if errors.As(err, &se) {
					return rep, err // the stream is out of step: nothing more can go over it
				}
				break
			}
			rep.Files++
			rep.Bytes = index.AddSizes(rep.Bytes, f.Size)
			rep.Chunks += sent.n
			rep.ChunkBytes += sent.bytes
			if delta {
				rep.Deltas++
			}
			at[f.Path] = f
			if f.UUID != "" && f.Mtime >= shared[f.UUID].Mtime {
				shared[f.UUID] = f
				manifests = map[string]*manifest.Manifest{f.Path: m}
			}
		}
		p.Done++
		p.Bytes = index.AddSizes(p.Bytes, f.Size)
		if o.Progress != nil {
			o.Progress(p)
		}
	}
	if o.Prune {
		prune(dst, vanished, &rep)
	}
	return rep, nil
}

// prune removes the vanished files at dst, oldest first, unless a copy
// failed.
func prune(dst Peer, vanished []File, rep *Report) {
	if len(rep.Failed) > 0 {
		if len(vanished) > 0 {
			rep.PruneSkipped = fmt.Sprintf("%d files not copied, so none of the %d the source no longer has was removed", len(rep.Failed), len(vanished))
		}
		return
	}
	sort.Slice(vanished, func(i, j int) bool {
		if vanished[i].Mtime != vanished[j].Mtime {
			return vanished[i].Mtime < vanished[j].Mtime
		}
		return vanished[i].Path < vanished[j].Path
	})
	for _, f := range vanished {
		err := dst.Remove(f)
		switch {
		case err == nil:
			rep.Removed = append(rep.Removed, f.Path)
			rep.RemovedBytes = index.AddSizes(rep.RemovedBytes, f.Size)
		case errors.Is(err, ErrNotFound):
			// gone already: nothing to do
		default:
			rep.NotRemoved = append(rep.NotRemoved, chunkstore.OneLine(err.Error()))
			var se *StreamError
			if errors.As(err, &se) {
				return
			}
		}
	}
}

// ErrMismatch is the error for a manifest that does not answer the
// listing entry it was asked for: the file is refused, the rest goes on.
var ErrMismatch = errors.New("the source's manifest does not match its listing")

// answers checks that manifest m is the file listing entry f names: the
// same path, size and kind. A source that answers a request for web1/c0
// with a manifest for web2/latest must not get to write there.
func answers(m *manifest.Manifest, f File) error {
	switch {
	case m.Path != f.Path:
		return fmt.Errorf("%q: refused: %w (it names %q)", f.Path, ErrMismatch, m.Path)
	case m.Size != f.Size:
		return fmt.Errorf("%q: refused: %w (%d bytes, listed as %d)", f.Path, ErrMismatch, m.Size, f.Size)
	case !m.IsRegular() || m.Mode&syscall.S_IFMT != f.Mode&syscall.S_IFMT:
		return fmt.Errorf("%q: refused: %w (mode %#o, listed as %#o)", f.Path, ErrMismatch, m.Mode, f.Mode)
	case m.UUID != f.UUID:
		return fmt.Errorf("%q: refused: %w (guest %q, listed as %q)", f.Path, ErrMismatch, m.UUID, f.UUID)
	}
	return nil
}

type sentCount struct {
	n     int
	bytes int64
}

func copyOne(src, dst Peer, f File, shared map[string]File, manifests map[string]*manifest.Manifest, tick func(float64)) (*manifest.Manifest, sentCount, bool, error) {
	var sent sentCount
	m, err := src.Manifest(f.Path)
	if err != nil {
		return nil, sent, false, err
	}
	if err := answers(m, f); err != nil {
		return nil, sent, false, err
	}
	var base *manifest.Manifest
	if b, ok := shared[f.UUID]; ok && f.UUID != "" {
		if base = manifests[b.Path]; base == nil {
			if base, err = src.Manifest(b.Path); err != nil || answers(base, b) != nil {
				base = nil
			}
		}
	}
	retries := 0
	for {
		missing, err := dst.Missing(m.New(base))
		if err != nil {
			return m, sent, false, err
		}
		sent = sentCount{n: len(missing)}
		err = apply(src, dst, m, base, missing, &sent, tick)
		if base != nil && errors.Is(err, ErrBaseMismatch) {
			base = nil // the destination's copy differs: send it whole
			continue
		}
		if errors.Is(err, ErrRetry) && retries < 3 {
			retries++
			continue
		}
		return m, sent, base != nil, err
	}
}

// apply streams the missing chunks from src into dst's Apply, reading
// ahead on its own goroutine; tick (if set) hears the share sent.
func apply(src, dst Peer, m, base *manifest.Manifest, missing []chunkstore.ID, sent *sentCount, tick func(float64)) error {
	ch := make(chan Chunk, 64)
	stop := make(chan struct{})
	var rerr error // set before ch closes
	got := 0
	go func() {
		defer close(ch)
		rerr = src.Read(missing, func(c Chunk) error {
			select {
			case ch <- c:
				return nil
			case <-stop:
				return errStopped
			}
		})
	}()
	next := func() (Chunk, error) {
		c, ok := <-ch
		if !ok {
			if rerr != nil {
				return c, rerr
			}
			return c, errors.New("the source sent fewer chunks than asked for")
		}
		sent.bytes += int64(len(c.Data))
		if got++; tick != nil && got%256 == 0 {
			tick(float64(got) / float64(len(missing)))
		}
		return c, nil
	}
	err := dst.Apply(m, base, missing, next)
	close(stop)
	for range ch {
	}
	if err == nil && rerr != nil && !errors.Is(rerr, errStopped) {
		err = rerr
	}
	return err
}

var errStopped = errors.New("stopped")
