// Command pausemeter runs inside the real-Xen test guest and measures how
// long the guest is stopped from the outside: it sleeps 10 ms at a time on
// the monotonic clock and prints "GAP <ms>" on the console whenever a wakeup
// comes more than -min later than asked. A Remus checkpoint suspends the
// guest, so each checkpoint shows up as one gap of about the pause; between
// checkpoints the lines show the emulator's scheduling noise.
//
// A PV guest's monotonic clock is Xen system time, which keeps running while
// the domain is paused, so the gap includes the whole pause.
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
	flag.Parse()
	for {
		t0 := time.Now()
		time.Sleep(*tick)
		if late := time.Since(t0) - *tick; late > *min {
			fmt.Fprintf(os.Stdout, "GAP %d\n", late.Milliseconds())
		}
	}
}
