package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ckptfs/ckptfs/xen"
)

type xenInspectOptions struct{ json bool }

// Inspection is what `ckptfs xen inspect` reports.
type Inspection struct {
	File        string           `json:"file"`
	Resolved    string           `json:"resolved,omitempty"` // the file File names, if a symlink (GUEST/latest)
	Bytes       int64            `json:"bytes"`
	ConfigBytes int              `json:"config_bytes"`
	Guest       GuestInfo        `json:"guest"`
	Stream      xen.DomainHeader `json:"libxc"`
	Records     map[string]int   `json:"records"`
	DataPages   int64            `json:"pages_with_data"`
	ZeroPages   int64            `json:"zero_pages"`
	NoDataPFNs  map[string]int   `json:"pfns_without_data"`
	// Checkpoints counts the checkpoints of a checkpointed (xl remus)
	// stream; CheckpointEnd is where the last complete one ends.
	Checkpoints   int   `json:"checkpoints,omitempty"`
	CheckpointEnd int64 `json:"checkpoint_end,omitempty"`
}

// GuestInfo is read from the JSON config.
type GuestInfo struct {
	Name     string `json:"name"`
	UUID     string `json:"uuid"`
	Type     string `json:"type"`
	MemoryKB int64  `json:"max_memkb"`
	VCPUs    int    `json:"max_vcpus"`
}

func runXenInspectCmd(args []string) error {
	var o xenInspectOptions
	f := newFlags("xen inspect")
	f.BoolVar(&o.json, "json", false, "print JSON")
	pos, err := parse(f, args, 1)
	if err != nil {
		return err
	}
	return runXenInspect(os.Stdout, o, pos[0])
}

func inspect(path string) (*Inspection, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fail(exitError, "xen inspect: %v", err)
	}
	defer fh.Close()
	in := &Inspection{File: path, Records: map[string]int{}, NoDataPFNs: map[string]int{}}
	if r, err := filepath.EvalSymlinks(path); err == nil {
		in.Resolved = r
	}
	// Page payloads are checked for zero as they stream past.
	var pageAt []int64
	sc := xen.NewScanner(xen.Handler{
		Config: func(j []byte) {
			in.ConfigBytes = len(j)
			if cfg, err := xen.ParseConfig(j); err == nil {
				in.Guest = GuestInfo{cfg.Name, cfg.UUID, cfg.Type, cfg.MaxMemKB, cfg.MaxVCPUs}
			}
		},
		LibxcHdr: func(d xen.DomainHeader) { in.Stream = d },
		Record:   func(r xen.Record) { in.Records[string(r.Layer)+" "+xen.RecordName(r.Layer, r.Type)]++ },
		Checkpoint: func(n int, end int64) {
			in.Checkpoints, in.CheckpointEnd = n+1, end
		},
		Page: func(p xen.Page) { in.DataPages++; pageAt = append(pageAt, p.Off) },
		NoData: func(_ uint64, typ uint8) {
			in.NoDataPFNs[map[uint8]string{xen.PFNTypeXTab: "XTAB", xen.PFNTypeXAlloc: "XALLOC", xen.PFNTypeBroken: "BROKEN"}[typ]]++
		},
	})
	r := bufio.NewReaderSize(fh, 1<<20)
	buf := make([]byte, 1<<20)
	var off int64
	var page []byte
	for {
		n, err := r.Read(buf)
		chunk := buf[:n]
		sc.Write(chunk)
		// count zero pages among the pages that start or continue here
		for len(pageAt) > 0 && pageAt[0] < off+int64(n) {
			start := pageAt[0]
			from := start + int64(len(page)) - off
			to := min(int64(n), start+xen.PageSize-off)
			page = append(page, chunk[from:to]...)
			if len(page) < xen.PageSize {
				break
			}
			if isZeroPage(page) {
				in.ZeroPages++
			}
			page, pageAt = page[:0], pageAt[1:]
		}
		off += int64(n)
		if sc.Err() != nil {
			return in, fail(exitMalformed, "xen inspect %s: %v", path, sc.Err())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return in, fail(exitError, "xen inspect: %v", err)
		}
	}
	in.Bytes = off
	switch {
	case sc.Done():
	case in.Checkpoints > 0 && off == in.CheckpointEnd:
		// A checkpointed stream has no END: it is whole up to its last
		// complete checkpoint.
	case in.Checkpoints > 0:
		return in, fail(exitMalformed, "xen inspect %s: checkpointed stream: %d complete checkpoints (the last ends at offset %d), then truncated at offset %d",
			path, in.Checkpoints, in.CheckpointEnd, off)
	default:
		return in, fail(exitMalformed, "xen inspect %s: truncated: the stream stops at offset %d before its END record", path, off)
	}
	return in, nil
}

func isZeroPage(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func runXenInspect(w io.Writer, o xenInspectOptions, path string) error {
	in, err := inspect(path)
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(w).Encode(in)
	}
	typ := map[uint32]string{1: "x86 PV", 2: "x86 HVM"}[in.Stream.GuestType]
	fmt.Fprintf(w, "file         %s (%d bytes)\n", in.File, in.Bytes)
	if in.Resolved != "" && in.Resolved != in.File {
		fmt.Fprintf(w, "resolved     %s (what %s names)\n", in.Resolved, in.File)
	}
	fmt.Fprintf(w, "guest        %s  uuid %s  type %s\n", in.Guest.Name, in.Guest.UUID, in.Guest.Type)
	fmt.Fprintf(w, "memory       %d KiB, %d vCPUs\n", in.Guest.MemoryKB, in.Guest.VCPUs)
	fmt.Fprintf(w, "config       %d bytes of JSON\n", in.ConfigBytes)
	fmt.Fprintf(w, "libxc        stream v%d, %s, saved by Xen %d.%d\n", in.Stream.Version, typ, in.Stream.XenMajor, in.Stream.XenMinor)
	fmt.Fprintf(w, "pages        %d with data (%d zero), %d pfns without data%s\n", in.DataPages, in.ZeroPages, sum(in.NoDataPFNs), kinds(in.NoDataPFNs))
	if in.Checkpoints > 0 {
		fmt.Fprintf(w, "checkpoints  %d (xl remus stream, no END; the last checkpoint ends at offset %d)\n", in.Checkpoints, in.CheckpointEnd)
	}
	fmt.Fprintln(w, "records:")
	var names []string
	for k := range in.Records {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(w, "  %-32s %d\n", k, in.Records[k])
	}
	return nil
}

// kinds lists the counts of m by name: " (XTAB 3, BROKEN 1)", or nothing.
func kinds(m map[string]int) string {
	var names []string
	for k, v := range m {
		if v > 0 {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	for i, k := range names {
		names[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(names, ", ") + ")"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
