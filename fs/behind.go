package fs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/ckptfs/ckptfs/xen"
)

// Write-behind.
//
// xl save keeps the guest paused until close(2) of the image returns, and
// storing a first generation costs more CPU than the FUSE transport can
// deliver bytes (docs/measurements.md: about 3 core-seconds per GiB on
// these two cores). So a file that its only handle writes from offset 0 in
// sequence (xl save, cp, rsync's temporary file) goes to a spool file
// first: a FUSE write is one pwrite(2) into the spool and returns, close
// returns once the spool says the file is complete, and a goroutine per
// file feeds the spooled bytes to the content engine and commits, behind
// the writer. What would see the file before its commit waits for it:
//
//	open, read, truncate, setattr, fsync, wait for this file's spool (and
//	rename                               end write-behind for the handle)
//	latest (lookup, readlink, getattr)   waits for the closed files of its
//	                                     directory
//	stats, generations, gc, fsck, push   wait for every closed file
//	unmount                              waits for every file
//
// getattr does not wait: it reports the spooled size and mtime.
//
// Durability. A spooled byte is in the page cache when write(2) returns, and
// the spool of a closed file holds a marker with its size and mtime. A
// daemon killed (kill -9, OOM) after close returned loses nothing: the next
// writable open of the store (MountStore) replays every spool that has its
// marker into its file and commits it, before serving. A spool without a
// marker is a file that was never closed: it is dropped, as the synchronous
// path drops an unclosed writer's bytes. A power failure before the commit
// loses the file, as it loses a plain file written without fsync (xl save
// does not fsync); fsync(2) waits for the commit, which is durable.
//
// Spool files live in STORE/spool, named INO-SEQ.spool (SEQ orders two
// spools of one file); the marker is INO-SEQ.spool.closed:
//
//	offset  size  spool file
//	0       4096  header: JSON {"format":1,"ino":N,"path":"dir/file"},
//	              zero-padded
//	4096    size  the file's bytes from offset 0
//
//	marker: JSON {"size":N,"mtime":UNIX_NANO}, written to a temporary name
//	and renamed into place at each close(2)
//
// A write that is not at the spooled end (a seek, a second handle, a
// truncate) ends write-behind for the file: the spooled bytes are fed to
// the engine first, then it goes on synchronously. So does a disk with
// less than spoolMinFree free: spooling never fills the disk the store
// needs. Every spooled byte holds its room in the store
// (content.Store.Hold, which the store's disk-full guard counts) before
// it is spooled, and is stored with that hold (WriteAtHeld): a writer
// meets a full disk in write(2), where it sees it, never after its
// close(2) returned. A failure to store spooled bytes all the same (an
// I/O error) is logged with the file's path; the file keeps its previous
// committed content.
const (
	SpoolDir        = "spool"
	spoolHeader     = 4096
	spoolFormat     = 1
	spoolSuffix     = ".spool"
	spoolMarker     = ".closed"
	spoolCheckEvery = 64 << 20
)

// While its writer streams, a file's spool is fed to the engine only once
// it is behindAhead bytes ahead or the writer has written nothing for
// behindIdle: the engine working alongside the transport took the cores
// from it (BenchmarkIngest, first generation: 0.27x the no-op server to
// close when fed at once, 0.68x when deferred; the commit came 8% later).
// Nor while another file streams in, for at most behindYield at a time
// (the next guest of a cron's xl save loop is paused meanwhile), unless
// someone waits for a commit.
const (
	behindAhead = 1 << 30
	behindIdle  = 50 * time.Millisecond
	behindYield = 10 * time.Second
)

// spoolMinFree is the free space below which a file is written
// synchronously: 1 GiB or a tenth of the disk, whichever is less, plus
// what is spooled before the next check.
func spoolMinFree(total int64) int64 { return min(1<<30, total/10) + spoolCheckEvery }

type spoolHead struct {
	Format int    `json:"format"`
	Ino    uint64 `json:"ino"`
	Path   string `json:"path"`
}

type spoolMark struct {
	Size  int64 `json:"size"`
	Mtime int64 `json:"mtime"`
}

type opKind uint8

const (
	opCommit  opKind = iota // a close(2): commit what was spooled before it
	opRelease               // the handle's release: end the write state
)

type behindOp struct {
	kind  opKind
	at    int64 // applied once the spool is fed up to here
	mtime int64
	h     *handle
}

// behind is a file being written behind its writer.
type behind struct {
	n    *Node
	h    *handle
	f    *os.File
	name string // spool file
	path string // the file, for messages
	dir  uint64 // its directory, for latest

	mu       sync.Mutex
	cond     sync.Cond
	end      int64 // bytes spooled: the file's offsets [0, end)
	mtime    int64 // of the last spooled write
	applied  int64 // bytes fed to the writer
	ops      []behindOp
	pending  int   // opCommit queued, not yet done
	unsent   int64 // bytes spooled since the last free-space check
	held     int64 // bytes spooled whose hold (content.Store.Hold) no feed took yet
	err      error // the first failure feeding the writer
	stopping bool  // no more spooling: drain, then end
	urgent   bool  // someone waits for the drain (stop)
	done     chan struct{}

	lastWrite atomic.Int64 // now() of the last spooled write, 0 once closed

	// The guest's turn (awaitTurn); only run's goroutine touches these.
	guestRead   bool      // the spool's guest was looked for
	turnKey     string    // in f.turns under this key ("": not queued)
	waitSince   time.Time // since when what b waits for made no progress
	waitFor     *behind   // the head of the queue b last saw
	waitApplied int64     // and the bytes it had fed then
}

// Turns. xl save -c every few seconds starts the next image of a guest
// while write-behind still stores the previous one. Fed at once, the next
// image would find no committed generation of its guest to compare its
// pages with: its generation would be written full (an entry for every
// page) and its pages hashed and looked up again, not compared by tag.
// So the images of one guest (the UUID its xl save stream names) in one
// directory are fed one at a time: before its first feed a feeder reads
// its file's guest from the spool and joins that guest's queue in
// f.turns, and it feeds once it is the queue's head (waiting holds no
// feed buffer and not the node's lock). It leaves the queue when its
// write-behind ends: after its commit and its writer's release, which ends
// its generation (a generation in flight is no base). A feeder also
// leaves, and feeds as before, when the head has fed nothing for turnWait.
// The queue is per directory, as gc's lineages are: another user, who
// cannot write into the directory, cannot hold a guest's commits back by
// writing (slowly) an image that names the same UUID elsewhere.

// turnWait bounds how long a feeder waits for its guest's turn while the
// file holding it feeds nothing.
var turnWait = time.Minute

// guestPrefix is how much of a spool is read to find the guest's UUID
// (the xl header and its JSON config).
const guestPrefix = 1 << 20

// awaitTurn reports whether b must wait for its guest's turn before its
// first feed (it slept a little then); see Turns.
func (b *behind) awaitTurn() bool {
	f := b.n.fsys
	if !b.guestRead {
		b.mu.Lock()
		end, more := b.end, !b.stopping && len(b.ops) == 0
		b.mu.Unlock()
		prefix := make([]byte, min(end, guestPrefix))
		uuid, ok := "", true
		if _, err := b.f.ReadAt(prefix, spoolHeader); err == nil {
			uuid, ok = xen.GuestUUID(prefix)
		}
		if !ok && more && end < guestPrefix {
			time.Sleep(behindIdle / 2) // more of the header is coming
			return true
		}
		b.guestRead = true
		if uuid == "" {
			return false
		}
		b.turnKey, b.waitSince = fmt.Sprintf("%d/%s", b.dir, uuid), time.Now()
		f.pend.Lock()
		f.turns[b.turnKey] = append(f.turns[b.turnKey], b)
		f.pend.Unlock()
	}
	if b.turnKey == "" {
		return false
	}
	f.pend.Lock()
	head := f.turns[b.turnKey][0]
	f.pend.Unlock()
	if head == b {
		return false
	}
	// The wait is bounded by the progress of what b waits for: a large
	// guest's image may take minutes to store, a writer that stopped
	// writing (and keeps its file open) holds its turn for nothing.
	head.mu.Lock()
	applied := head.applied
	head.mu.Unlock()
	if head != b.waitFor || applied != b.waitApplied {
		b.waitFor, b.waitApplied, b.waitSince = head, applied, time.Now()
	}
	if time.Since(b.waitSince) >= turnWait {
		b.leaveTurns()
		return false
	}
	time.Sleep(behindIdle / 2)
	return true
}

// leaveTurns takes b out of its guest's queue, if it is in one.
func (b *behind) leaveTurns() {
	if b.turnKey == "" {
		return
	}
	f := b.n.fsys
	f.pend.Lock()
	q := slices.DeleteFunc(f.turns[b.turnKey], func(w *behind) bool { return w == b })
	if len(q) == 0 {
		delete(f.turns, b.turnKey)
	} else {
		f.turns[b.turnKey] = q
	}
	f.pend.Unlock()
	b.turnKey = ""
}

// behind returns the write-behind of n's inode, if any. It is kept by
// inode number, not on the Node: once the writer's handle is released
// (for the kernel, at close), the kernel may forget the inode and go-fuse
// give the next lookup a new Node, which must still wait for the commit.
func (n *Node) behind() *behind {
	f := n.fsys
	f.pend.Lock()
	defer f.pend.Unlock()
	return f.byIno[n.ino()]
}

// endBehind feeds n's spooled bytes to its writer, commits what was
// closed, and ends write-behind for n: from here its requests run
// synchronously. Callers hold none of n's locks.
func (n *Node) endBehind() {
	if b := n.behind(); b != nil {
		b.stop()
	}
}

// endBehindChild ends write-behind for the file dir/name, if any.
func (f *FS) endBehindChild(dir *gofs.Inode, name string) {
	ch := dir.GetChild(name)
	if ch == nil {
		return
	}
	f.pend.Lock()
	b := f.byIno[ch.StableAttr().Ino]
	f.pend.Unlock()
	if b != nil {
		b.stop()
	}
}

// startBehind starts write-behind for handle h writing at off, if the
// file qualifies; it returns nil when the write must go synchronously.
func (n *Node) startBehind(h *handle, off int64) *behind {
	f := n.fsys
	if !f.writeBehind || f.readOnly || off != 0 || f.spoolDir() == "" {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.w == nil || n.writers != 1 || n.opens != 1 || n.w.Size() != 0 || n.wbFailed || n.orphan {
		return nil
	}
	if n.behind() != nil || !f.spoolRoom(0) {
		return nil
	}
	b, err := f.newBehind(n, h)
	if errors.Is(err, errBehindBusy) {
		return nil
	}
	if err != nil {
		f.limit.Print(f.log, fmt.Sprintf("write-behind of /%s: %v; writing synchronously", n.Path(nil), err))
		return nil
	}
	go b.run()
	return b
}

func (f *FS) spoolDir() string {
	if f.statfsOf == "" {
		return ""
	}
	return filepath.Join(f.statfsOf, SpoolDir)
}

// spoolRoom reports whether the spool's disk has room for more, beyond
// what keeps the store working.
func (f *FS) spoolRoom(int64) bool {
	var st syscall.Statfs_t
	if syscall.Statfs(f.statfsOf, &st) != nil {
		return false
	}
	total, free := int64(st.Blocks)*st.Bsize, int64(st.Bavail)*st.Bsize
	return total > 0 && free >= spoolMinFree(total)
}

func (f *FS) newBehind(n *Node, h *handle) (*behind, error) {
	dir := f.spoolDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	seq := f.spoolSeq.Add(1)
	name := filepath.Join(dir, fmt.Sprintf("%d-%d-%d%s", n.ino(), time.Now().UnixNano(), seq, spoolSuffix))
	file, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	path := n.Path(nil)
	hd, _ := json.Marshal(spoolHead{Format: spoolFormat, Ino: n.ino(), Path: path})
	if len(hd) > spoolHeader {
		hd, _ = json.Marshal(spoolHead{Format: spoolFormat, Ino: n.ino()})
	}
	if _, err := file.WriteAt(append(hd, make([]byte, spoolHeader-len(hd))...), 0); err != nil {
		file.Close()
		os.Remove(name)
		return nil, err
	}
	var dirIno uint64
	if _, p := n.Parent(); p != nil {
		dirIno = p.StableAttr().Ino
	}
	b := &behind{n: n, h: h, f: file, name: name, path: path, dir: dirIno, done: make(chan struct{})}
	b.cond.L = &b.mu
	f.pend.Lock()
	if f.byIno[n.ino()] != nil {
		f.pend.Unlock()
		file.Close()
		os.Remove(name)
		return nil, errBehindBusy
	}
	f.behinds[b] = struct{}{}
	f.byIno[n.ino()] = b
	f.pend.Unlock()
	return b, nil
}

var errBehindBusy = errors.New("the file is being written behind already")

// write spools p, written at off; false: it must go synchronously.
func (b *behind) write(h *handle, p []byte, off int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping || b.err != nil || h != b.h || off != b.end {
		return false
	}
	if b.unsent += int64(len(p)); b.unsent >= spoolCheckEvery {
		if !b.n.fsys.spoolRoom(b.end) {
			return false
		}
		b.unsent = 0
	}
	data := b.n.fsys.data
	if data.Hold(len(p)) != nil {
		return false // the synchronous path meets the full disk
	}
	if _, err := b.f.WriteAt(p, spoolHeader+off); err != nil {
		data.Unhold(len(p))
		return false // ENOSPC, EIO: the synchronous path takes it from here
	}
	b.held += int64(len(p))
	b.end += int64(len(p))
	b.mtime = now()
	b.lastWrite.Store(b.mtime)
	b.cond.Broadcast()
	return true
}

// flush records a close(2) of the file: the spool is complete up to here.
// false: it must be committed synchronously.
func (b *behind) flush(h *handle) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping || b.err != nil || h != b.h {
		return false
	}
	// The marker promises the file to the next mount: its name and inode
	// must be there after a kill -9 too. Pebble keeps an unsynced commit
	// (the file's create) in its log writer's memory until a block fills
	// or a sync comes, so the namespace is synced first (nothing to do if
	// the once-a-second sync already did: TestWriteBehindKill9AfterClose
	// lost the file's name in 4 of 6 runs without it).
	if err := b.n.fsys.ns.SyncPending(); err != nil {
		return false
	}
	m, _ := json.Marshal(spoolMark{Size: b.end, Mtime: b.mtime})
	tmp := b.name + spoolMarker + ".tmp"
	if err := os.WriteFile(tmp, m, 0o600); err != nil {
		os.Remove(tmp)
		return false
	}
	if err := os.Rename(tmp, b.name+spoolMarker); err != nil {
		os.Remove(tmp)
		return false
	}
	b.ops = append(b.ops, behindOp{kind: opCommit, at: b.end, mtime: b.mtime})
	b.lastWrite.Store(0)
	b.pending++
	b.n.fsys.pendingAdd(b.dir, 1)
	b.cond.Broadcast()
	return true
}

// release queues the handle's release after what was spooled; false: it
// must be released synchronously.
func (b *behind) release(h *handle) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopping || h != b.h {
		return false
	}
	b.ops = append(b.ops, behindOp{kind: opRelease, at: b.end, h: h})
	b.lastWrite.Store(0)
	b.stopping = true // nothing more can come from a released handle
	b.cond.Broadcast()
	return true
}

// stop ends spooling and waits until everything spooled and queued is done.
func (b *behind) stop() {
	b.mu.Lock()
	b.stopping, b.urgent = true, true
	b.cond.Broadcast()
	b.mu.Unlock()
	<-b.done
}

// streaming reports whether a file other than b is being written behind
// right now (a guest paused in xl save, whose close should not wait for
// the cores b's storing would take), and nobody waits for a commit.
func (f *FS) streaming(b *behind) bool {
	if f.waiters.Load() > 0 {
		return false
	}
	f.pend.Lock()
	defer f.pend.Unlock()
	t := now()
	for o := range f.behinds {
		if o != b {
			if w := o.lastWrite.Load(); w != 0 && t-w < int64(behindIdle) {
				return true
			}
		}
	}
	return false
}

// size returns the spooled size and mtime.
func (b *behind) size() (int64, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.end, b.mtime
}

// run feeds the spool to the writer, in order with the queued closes and
// the release, until stopped and drained.
func (b *behind) run() {
	defer b.finish()
	n := b.n
	var deferredSince time.Time // since when b has yielded to other writers
	for {
		b.mu.Lock()
		for b.applied == b.end && len(b.ops) == 0 && !b.stopping {
			b.cond.Wait()
		}
		if b.applied == b.end && len(b.ops) == 0 {
			b.mu.Unlock()
			return
		}
		if len(b.ops) > 0 && b.ops[0].at == b.applied {
			op := b.ops[0]
			b.ops = b.ops[1:]
			b.mu.Unlock()
			if b.do(op) {
				return
			}
			continue
		}
		if len(b.ops) == 0 && !b.stopping && b.end-b.applied < behindAhead && now()-b.mtime < int64(behindIdle) {
			// The writer is streaming: the transport has the cores
			// (the guest is paused until its close), the engine
			// follows once it closes, pauses or is far ahead.
			b.mu.Unlock()
			time.Sleep(behindIdle / 2)
			continue
		}
		if !b.urgent && b.end-b.applied < behindAhead && n.fsys.streaming(b) {
			// Another file is streaming in: its writer (a paused guest)
			// goes first, for at most behindYield.
			if deferredSince.IsZero() {
				deferredSince = time.Now()
			}
			if time.Since(deferredSince) < behindYield {
				b.mu.Unlock()
				time.Sleep(behindIdle / 2)
				continue
			}
		} else {
			deferredSince = time.Time{}
		}
		upto, mtime := b.end, b.mtime
		if len(b.ops) > 0 {
			upto, mtime = b.ops[0].at, b.ops[0].mtime
		}
		from, failed := b.applied, b.err != nil
		b.mu.Unlock()
		if from == 0 && !failed && b.awaitTurn() {
			continue
		}
		k := min(feedBytes, upto-from)
		var err error
		fed := false // WriteAtHeld took k bytes' hold
		if !failed {
			buf := n.fsys.feedBuf()
			if _, err = b.f.ReadAt(buf[:k], spoolHeader+from); err == nil {
				n.mu.Lock()
				err = n.w.WriteAtHeld(buf[:k], from, mtime)
				n.mu.Unlock()
				fed = true
			}
			n.fsys.feedBufs <- buf
		}
		b.mu.Lock()
		if fed {
			b.held -= k
		}
		if err != nil && b.err == nil {
			b.err = err
			n.fsys.toErrno("write-behind", n, err)
		}
		b.applied = from + k
		b.cond.Broadcast()
		b.mu.Unlock()
	}
}

// feedBytes is what one step of a spool's feed reads: the FUSE write size
// (4 MiB steps grew the writer's buffers: +100 MiB peak RSS in
// TestPeakRSS). Feeders take turns at feedBuffers buffers, so that memory
// stays bounded however many files are written behind at once (a file
// waiting for its turn holds none).
const (
	feedBytes   = 1 << 20
	feedBuffers = 4
)

func (f *FS) feedBuf() []byte {
	buf := <-f.feedBufs
	if buf == nil {
		buf = make([]byte, feedBytes)
	}
	return buf
}

// do runs a queued operation; true after the release.
func (b *behind) do(op behindOp) bool {
	n, f := b.n, b.n.fsys
	switch op.kind {
	case opCommit:
		b.mu.Lock()
		failed := b.err
		b.mu.Unlock()
		img := false
		if failed == nil {
			n.mu.Lock()
			if errno := n.commitLocked("close"); errno != 0 {
				failed = errno
			}
			img = n.w.CommittedImage()
			if img {
				f.stats.observeImage(now() - n.wStart)
			}
			n.mu.Unlock()
		}
		if failed != nil {
			f.limit.Print(f.log, fmt.Sprintf("ERROR /%s: the bytes written before close could not be stored (%v); the file keeps what it held before", b.path, failed))
			n.mu.Lock()
			n.wbFailed = true
			n.mu.Unlock()
		}
		b.mu.Lock()
		b.pending--
		b.mu.Unlock()
		f.pendingAdd(b.dir, -1)
		if img {
			_, p := n.Parent()
			f.latestArrived(p)
		}
	case opRelease:
		b.mu.Lock()
		failed := b.err != nil
		b.mu.Unlock()
		if failed {
			n.mu.Lock()
			n.wbFailed = true
			n.mu.Unlock()
		}
		n.releaseNow(op.h)
		return true
	}
	return false
}

// finish ends write-behind: the spool goes, the node writes synchronously.
func (b *behind) finish() {
	n, f := b.n, b.n.fsys
	b.leaveTurns()
	b.f.Close()
	os.Remove(b.name + spoolMarker)
	os.Remove(b.name)
	b.mu.Lock()
	f.data.Unhold(int(b.held)) // spooled bytes never fed (a failure)
	b.held = 0
	for ; b.pending > 0; b.pending-- { // closes never committed (stopped first)
		f.pendingAdd(b.dir, -1)
	}
	b.mu.Unlock()
	f.pend.Lock()
	delete(f.behinds, b)
	if f.byIno[n.ino()] == b {
		delete(f.byIno, n.ino())
	}
	f.pend.Unlock()
	f.pendCond.Broadcast()
	close(b.done)
}

// pendingAdd counts closed files not yet committed, per directory.
func (f *FS) pendingAdd(dir uint64, d int) {
	f.pend.Lock()
	f.pendDirs[dir] += d
	if f.pendDirs[dir] <= 0 {
		delete(f.pendDirs, dir)
	}
	f.pendAll += d
	f.pend.Unlock()
	if d < 0 {
		f.pendCond.Broadcast()
	}
}

// waitDir waits until the files closed in directory dir are committed.
func (f *FS) waitDir(dir uint64) {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	f.pend.Lock()
	for f.pendDirs[dir] > 0 {
		f.pendCond.Wait()
	}
	f.pend.Unlock()
}

// WaitCommitted waits until every file closed through the mount is
// committed: what stats, gc, fsck and push see includes it.
func (f *FS) WaitCommitted() {
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	f.pend.Lock()
	for f.pendAll > 0 {
		f.pendCond.Wait()
	}
	f.pend.Unlock()
}

// waitReleased waits, up to d, until no file handle is open: after an
// unmount, for the releases the kernel sent before it.
func (f *FS) waitReleased(d time.Duration) {
	for deadline := time.Now().Add(d); f.handles.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// StopBehind feeds every spool to its file and ends write-behind (at
// unmount, before the store closes).
func (f *FS) StopBehind() {
	f.pend.Lock()
	all := make([]*behind, 0, len(f.behinds))
	for b := range f.behinds {
		all = append(all, b)
	}
	f.pend.Unlock()
	for _, b := range all {
		b.stop()
	}
}

// Backlog returns the files written behind whose storing has not ended,
// and their spooled bytes not yet fed to the store.
func (f *FS) Backlog() (files int, bytes int64) {
	f.pend.Lock()
	all := make([]*behind, 0, len(f.behinds))
	for b := range f.behinds {
		all = append(all, b)
	}
	f.pend.Unlock()
	for _, b := range all {
		b.mu.Lock()
		bytes += b.end - b.applied
		b.mu.Unlock()
	}
	return len(all), bytes
}

// Spooled is a file recovered from its spool.
type Spooled struct {
	Path       string
	Ino        uint64
	Size       int64
	Err        error // not recovered: why
	Unfinished bool  // never closed: dropped
}

// RecoverSpool replays the spools a killed daemon left: each closed file
// gets the bytes written before its close(2), committed; a spool of a file
// never closed is dropped. It runs before the store is served.
func (f *FS) RecoverSpool() ([]Spooled, error) {
	dir := f.spoolDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || dir == "" {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type spool struct {
		name     string
		ino, seq uint64
	}
	var spools []spool
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, spoolMarker+".tmp") {
			os.Remove(filepath.Join(dir, name))
			continue
		}
		if !strings.HasSuffix(name, spoolSuffix) {
			continue
		}
		parts := strings.SplitN(strings.TrimSuffix(name, spoolSuffix), "-", 3)
		if len(parts) != 3 {
			continue
		}
		ino, err1 := strconv.ParseUint(parts[0], 10, 64)
		t, err2 := strconv.ParseUint(parts[1], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		spools = append(spools, spool{name, ino, t})
	}
	slices.SortFunc(spools, func(a, b spool) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var out []Spooled
	for _, s := range spools {
		p := filepath.Join(dir, s.name)
		r := f.replay(p, s.ino)
		out = append(out, r)
		if r.Err == nil || r.Unfinished || errors.Is(r.Err, errSpoolOrphan) {
			os.Remove(p + spoolMarker)
			os.Remove(p)
		}
	}
	return out, nil
}

// SpooledFiles counts the files in store directory dir that were closed
// but are not stored yet: being stored behind their writers by a running
// daemon, or left by a killed one for the next writable mount.
func SpooledFiles(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, SpoolDir, "*"+spoolSuffix+spoolMarker))
	return len(m)
}

var errSpoolOrphan = errors.New("the file was deleted")

// replay stores one spool into its file.
func (f *FS) replay(p string, ino uint64) Spooled {
	r := Spooled{Ino: ino}
	file, err := os.Open(p)
	if err != nil {
		r.Err = err
		return r
	}
	defer file.Close()
	hb := make([]byte, spoolHeader)
	if _, err := io.ReadFull(file, hb); err != nil {
		r.Unfinished = true // cut before its header was whole: never closed
		return r
	}
	var hd spoolHead
	if err := json.Unmarshal([]byte(strings.TrimRight(string(hb), "\x00")), &hd); err != nil || hd.Format != spoolFormat || hd.Ino != ino {
		r.Err = fmt.Errorf("%s: not a spool of format %d", p, spoolFormat)
		return r
	}
	r.Path = hd.Path
	mb, err := os.ReadFile(p + spoolMarker)
	if errors.Is(err, os.ErrNotExist) {
		r.Unfinished = true
		return r
	}
	var mk spoolMark
	if err == nil {
		err = json.Unmarshal(mb, &mk)
	}
	if err != nil {
		r.Err = fmt.Errorf("%s%s: %v", p, spoolMarker, err)
		return r
	}
	st, err := file.Stat()
	if err != nil {
		r.Err = err
		return r
	}
	if st.Size() < spoolHeader+mk.Size {
		r.Err = fmt.Errorf("%s: holds %d bytes, its close recorded %d", p, st.Size()-spoolHeader, mk.Size)
		return r
	}
	in, err := f.ns.Get(ino)
	if err != nil {
		r.Err = errSpoolOrphan
		return r
	}
	w := f.data.NewWriter(in)
	defer w.Close()
	if err := w.Truncate(0, mk.Mtime); err != nil {
		r.Err = err
		return r
	}
	buf := f.feedBuf()
	defer func() { f.feedBufs <- buf }()
	for off := int64(0); off < mk.Size; {
		k := min(int64(len(buf)), mk.Size-off)
		if _, err := file.ReadAt(buf[:k], spoolHeader+off); err != nil {
			r.Err = err
			return r
		}
		if err := w.WriteAt(buf[:k], off, mk.Mtime); err != nil {
			r.Err = err
			return r
		}
		off += k
	}
	w.SetMtime(mk.Mtime)
	if _, err := w.Commit(); err != nil {
		r.Err = err
		return r
	}
	r.Size = mk.Size
	return r
}
