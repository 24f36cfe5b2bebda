// Package lineage stores xl save images page by page into their guest's
// lineage. Image is the content engine's page hook (content.Pages) for one
// file being written: it follows the stream with xen.Scanner, names where
// each page payload starts so that the engine cuts every page as a chunk
// of its own, and records each page in the file's generation (an entry of
// the page map if it differs from the base generation, a slot of a page
// run in any case). The generations and page maps themselves are kept by
// package index (see its doc for the key tables).
package lineage
