// Command pausemeter runs inside the real-Xen test guest and measures how
// long the guest is stopped from the outside: it sleeps 10 ms at a time on
// the monotonic clock and prints "GAP <ms>" on the console whenever a wakeup
// comes more than -min later than asked. A Remus checkpoint suspends the
// guest, so each checkpoint shows up as one gap of about the pause; between
// checkpoints the lines show the emulator's scheduling noise.
//
// Linux stops CLOCK_MONOTONIC across a Xen suspend (a checkpoint suspends
// the guest the same way as a save) and injects the time it was away into
// the wall clock on resume, so the gap is measured on both clocks and the
// larger is reported.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	tick := flag.Duration("tick", 10*time.Millisecond, "sleep per iteration")
	min := flag.Duration("min", 40*time.Millisecond, "report wakeups later than this past due")
	every := flag.Duration("every", 30*time.Second, "print a PAUSEMETER summary line this often")
	flag.Parse()
	fmt.Fprintln(os.Stdout, "PAUSEMETER started")
	var n int
	var worst time.Duration
	last := time.Now()
	for {
		t0 := time.Now() // wall and monotonic readings
		time.Sleep(*tick)
		t1 := time.Now()
		late := max(t1.Sub(t0), t1.Round(0).Sub(t0.Round(0))) - *tick // Round(0): wall clock only
		if late > *min {
			fmt.Fprintf(os.Stdout, "GAP %d\n", late.Milliseconds())
		}
		n, worst = n+1, max(worst, late)
		if t1.Sub(last) >= *every {
			fmt.Fprintf(os.Stdout, "PAUSEMETER %d wakeups, latest by at most %d ms\n", n, worst.Milliseconds())
			n, worst, last = 0, 0, t1
		}
	}
}
