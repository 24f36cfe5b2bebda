package transfer

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"strings"
	"testing"
)

// names lists l's files.
func names(t *testing.T, l *Local) []string {
	t.Helper()
	fs, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Path)
	}
	sort.Strings(out)
	return out
}

func under(dir string) func(File) bool {
	return func(f File) bool { return strings.HasPrefix(f.Path, dir+"/") }
}

// TestCopyPrune: a standby that copies with Prune loses what the source's
// retention expired, within the selection only, after the copy; a failed
// copy, an empty source and a file changed since the listing remove
// nothing; a caller who may not unlink is refused.
func TestCopyPrune(t *testing.T) {
	type step struct {
		srcRm   []string // removed at the source before the copy
		clash   bool     // vm1/c3 is at both sides, different files
		sel     func(File) bool
		as      *Caller
		wantErr error
		removed []string // what the report says was removed
		skipped bool     // PruneSkipped set
		failed  int      // files not copied
		notRm   int      // files not removed
		left    []string // the destination's files after
	}
	all := []string{"other/x", "other/y", "vm1/c0", "vm1/c1", "vm1/c2"}
	for _, tc := range []struct {
		name string
		step
	}{
		{"within the selection", step{srcRm: []string{"vm1/c0", "other/y"}, sel: under("vm1"),
			removed: []string{"vm1/c0"}, left: []string{"other/x", "other/y", "vm1/c1", "vm1/c2"}}},
		{"everything", step{srcRm: []string{"vm1/c0", "other/y"},
			removed: []string{"vm1/c0", "other/y"}, left: []string{"other/x", "vm1/c1", "vm1/c2"}}},
		{"a failed copy removes nothing", step{srcRm: []string{"vm1/c0"}, clash: true,
			skipped: true, failed: 1, left: append(slices.Clone(all), "vm1/c3")}},
		{"an empty source removes nothing", step{srcRm: []string{"vm1/c0", "vm1/c1", "vm1/c2"}, sel: under("vm1"),
			wantErr: ErrPruneEverything, left: all}},
		{"a caller who may not unlink", step{srcRm: []string{"vm1/c0"}, as: CallerOf(1000, 1000),
			notRm: 1, left: all}},
	} {
		for _, via := range []string{"local", "stream"} {
			t.Run(tc.name+"/"+via, func(t *testing.T) {
				src, dstL := newLocal(t), newLocal(t)
				for i, p := range all {
					put(t, src, p, bytes.Repeat([]byte(p), 1000+i), int64(i+1))
				}
				if rep, err := Copy(src, dstL, Options{}); err != nil || rep.Files != len(all) {
					t.Fatalf("first copy: %+v %v", rep, err)
				}
				for _, p := range tc.srcRm {
					if err := src.Remove(File{Path: p, Size: int64(1000+slices.Index(all, p)) * int64(len(p)), Mtime: int64(slices.Index(all, p) + 1)}); err != nil {
						t.Fatal(err)
					}
				}
				if tc.clash {
					put(t, src, "vm1/c3", []byte("c3 at the source"), 10)
					put(t, dstL, "vm1/c3", []byte("another file"), 11)
				}
				if tc.sel == nil {
					tc.sel = func(File) bool { return true }
				}
				dstL.As = tc.as
				var dst Peer = dstL
				if via == "stream" {
					dst = pipePeer(t, dstL)
				}
				rep, err := Copy(src, dst, Options{Select: tc.sel, Prune: true})
				if !errors.Is(err, tc.wantErr) && !(tc.wantErr != nil && err != nil && strings.Contains(err.Error(), tc.wantErr.Error())) {
					t.Fatalf("copy: %v, want %v", err, tc.wantErr)
				}
				sort.Strings(rep.Removed)
				want := slices.Clone(tc.removed)
				sort.Strings(want)
				if !slices.Equal(rep.Removed, want) && !(len(want) == 0 && len(rep.Removed) == 0) {
					t.Errorf("removed %q, want %q", rep.Removed, want)
				}
				if (rep.PruneSkipped != "") != tc.skipped || len(rep.Failed) != tc.failed || len(rep.NotRemoved) != tc.notRm {
					t.Errorf("prune skipped %q, failed %q, not removed %q; want skipped %v, %d failed, %d not removed", rep.PruneSkipped, rep.Failed, rep.NotRemoved, tc.skipped, tc.failed, tc.notRm)
				}
				dstL.As = nil
				if got := names(t, dstL); !slices.Equal(got, tc.left) {
					t.Errorf("destination holds %q, want %q", got, tc.left)
				}
				for _, p := range names(t, dstL) {
					if p != "vm1/c3" && !bytes.Equal(read(t, dstL, p), bytes.Repeat([]byte(p), 1000+slices.Index(all, p))) {
						t.Errorf("%s differs", p)
					}
				}
			})
		}
	}
}

// TestRemoveOnlyThatVersion: Remove leaves a file that changed since it was
// listed, says a file gone is not found, and refuses what is not a file.
func TestRemoveOnlyThatVersion(t *testing.T) {
	l := newLocal(t)
	put(t, l, "vm1/c0", []byte("version two"), 2)
	for _, tc := range []struct {
		f    File
		want error
	}{
		{File{Path: "vm1/c0", Size: 11, Mtime: 1}, ErrChanged},
		{File{Path: "vm1/c0", Size: 3, Mtime: 2}, ErrChanged},
		{File{Path: "vm1/nothing", Size: 11, Mtime: 2}, ErrNotFound},
		{File{Path: "vm2/c0", Size: 11, Mtime: 2}, ErrNotFound},
		{File{Path: "vm1/c0/x", Size: 11, Mtime: 2}, ErrNotFound},
	} {
		if err := l.Remove(tc.f); !errors.Is(err, tc.want) {
			t.Errorf("Remove(%+v): %v, want %v", tc.f, err, tc.want)
		}
	}
	if err := l.Remove(File{Path: "vm1", Size: 0}); err == nil {
		t.Error("Remove of a directory succeeded")
	}
	if err := l.Remove(File{Path: "../x"}); err == nil {
		t.Error("Remove of an unclean path succeeded")
	}
	if string(read(t, l, "vm1/c0")) != "version two" {
		t.Fatal("the file changed")
	}
	if err := l.Remove(File{Path: "vm1/c0", Size: 11, Mtime: 2}); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); len(got) != 0 {
		t.Fatalf("left %q", got)
	}
}
