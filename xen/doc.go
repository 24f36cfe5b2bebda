// Package xen will understand the xl save stream (xl header, libxl and
// libxc v2 records, PAGE_DATA batches) so that checkpoints are stored page
// by page. It imports nothing of ckptfs. Not implemented yet: see the
// README's status section.
package xen
