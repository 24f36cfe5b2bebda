// Package xen understands the files `xl save` writes: the xl header and JSON
// config, the libxl v2 stream, and the libxc v2/v3 stream nested after its
// LIBXC_CONTEXT record, down to PAGE_DATA batches. Scanner parses such a
// stream as it arrives, in pieces of any size, and reports where each
// 4096-byte page payload starts, so that ckptfs can store every page as a
// chunk of its own. It buffers only headers and one batch's pfn array, and
// imports nothing of ckptfs: standard library only.
//
// The byte layout is documented in ../shared/xen-stream.md (Xen 4.17:
// tools/xl/xl.h, tools/libs/light/libxl_sr_stream_format.h,
// tools/libs/guest/xg_sr_stream_format.h).
package xen
