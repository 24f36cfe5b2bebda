package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/ckptfs/ckptfs/gc"
)

// progress shows long work as a bar with rate and ETA on stderr when it is
// a terminal (github.com/schollz/progressbar); elsewhere it shows nothing,
// so logs and pipes get the command's plain output only. A phase whose
// total is not known shows a spinner with the count. Safe for concurrent
// use.
type progress struct {
	mu    sync.Mutex
	w     io.Writer // nil: not a terminal, show nothing
	cmd   string
	bytes bool // the counts are bytes
	phase string
	bar   *progressbar.ProgressBar
	width int // the bar's, in columns
	total int64
}

// newProgress returns cmd's progress display; bytes says the counts are
// bytes (shown with a byte rate), else items.
func newProgress(cmd string, bytes bool) *progress {
	p := &progress{cmd: cmd, bytes: bytes}
	if isTerminal(os.Stderr) {
		p.w = os.Stderr
	}
	return p
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// update shows done of total in phase (total < 0: unknown).
func (p *progress) update(phase string, done, total int64) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if phase != p.phase || (total < 0) != (p.total < 0) {
		p.finishLocked()
		p.phase, p.total = phase, total
		max := total
		if total < 0 {
			max = -1 // a spinner
		}
		desc := fmt.Sprintf("%s: %s", p.cmd, phase)
		p.width = barWidth(termColumns(p.w), desc)
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetWidth(p.width),
			progressbar.OptionThrottle(200 * time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(total >= 0),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		}
		switch {
		case p.bytes: // the byte rate comes with it
			opts = append(opts, progressbar.OptionShowBytes(true))
		case total >= 0:
			opts = append(opts, progressbar.OptionShowIts(), progressbar.OptionSetItsString("items"))
		}
		p.bar = progressbar.NewOptions64(max, opts...)
	}
	if total >= 0 && total != p.total {
		p.total = total
		p.bar.ChangeMax64(total)
	}
	p.bar.Set64(done)
}

// note adds a note to the current phase's description.
func (p *progress) note(s string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		desc := fmt.Sprintf("%s: %s", p.cmd, p.phase)
		// The line's typical rest ("100% |", the counts, the rate and the
		// times) is about 40 columns: a longer note is cut to fit.
		room := termColumns(p.w) - len([]rune(desc)) - p.width - 40 - 3
		if r := []rune(s); len(r) > room {
			if room < 6 {
				p.bar.Describe(desc)
				return
			}
			s = string(r[:room-1]) + "…"
		}
		p.bar.Describe(fmt.Sprintf("%s (%s)", desc, s))
	}
}

// finish ends the bar of the current phase.
func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *progress) finishLocked() {
	if p.bar != nil && !p.bar.IsFinished() {
		p.bar.Finish() // prints the newline (OptionOnCompletion)
	} else if p.bar != nil {
		fmt.Fprintln(p.w) // it completed itself, then was redrawn (note)
	}
	p.bar, p.phase = nil, ""
}

// enabled reports whether anything is shown.
func (p *progress) enabled() bool { return p != nil && p.w != nil }

// gc returns p as the libraries' progress callback; nil when nothing is
// shown, so that no work is done to report it (and the daemon streams
// none).
func (p *progress) gc() gc.Progress {
	if !p.enabled() {
		return nil
	}
	return p.update
}

// Write writes log lines above the bar: it clears the bar, which the next
// update draws again.
func (p *progress) Write(b []byte) (int, error) {
	if p == nil || p.w == nil {
		return os.Stderr.Write(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	return p.w.Write(b)
}

// followOffset shows how far into f (a regular file of size bytes) its
// open file description's offset has moved, which is where whoever
// shares it (the daemon, handed the descriptor) has read, until stop.
func (p *progress) followOffset(phase string, f *os.File, size int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil {
				p.update(phase, off, max(size, off))
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.finish()
	}
}

// barRest is what a bar's line holds besides its description and the bar:
// "100% |", "| ", the counts and rate ("(123.4/512.0 GiB, 680 MiB/s)") and
// the times (" [12m3s:1h2m]").
const barRest = 52

// barWidth is the bar's width that keeps its line within cols columns
// (24 at most, 5 at least).
func barWidth(cols int, desc string) int {
	return max(5, min(24, cols-len([]rune(desc))-barRest))
}

// termColumns is the width of the terminal w is, 80 if it says none.
func termColumns(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	return 80
}
