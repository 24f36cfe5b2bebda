package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/test/sysstat"
	"github.com/ckptfs/ckptfs/xen/xentest"
)

// TestReceiveRSS pipes a generated xl remus stream of a 16 GiB PV guest
// (CKPTFS_RECV_PAGES scales it; checkpoint 0 with every page, then three
// checkpoints of 1% dirty pages) into `ckptfs xen receive --store` and
// reports the receiver's peak RSS (VmHWM) against issue 13's 128 MiB. The
// read-ahead buffer (--buffer-mib, 1 GiB by default, memory the operator
// gives xl to absorb a checkpoint) is set to 16 MiB here and counted in
// the figure. Run by `make bench` (CKPTFS_BENCH=1).
func TestReceiveRSS(t *testing.T) {
	if os.Getenv("CKPTFS_BENCH") == "" {
		t.Skip("benchmark: run with CKPTFS_BENCH=1 (make bench)")
	}
	pages := int64(envInt("CKPTFS_RECV_PAGES", 4<<20))
	store := filepath.Join(t.TempDir(), "store")
	cmd := exec.Command(ckptfsBin, "xen", "receive", "--store", store, "--into", "remus", "--buffer-mib", "16")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut strings.Builder
	cmd.Stderr = &errOut
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	g := xentest.Guest{Name: "big", UUID: "12ec0000-0000-4000-8000-000000000016", Pages: pages, VCPUs: 2, Seed: 13, Dirty: 0.01}
	w := bufio.NewWriterSize(in, 1<<20)
	var peak int64
	done := make(chan struct{})
	go func() { // sample: VmHWM is gone once the process exits
		defer close(done)
		for {
			if v, err := sysstat.Status(fmt.Sprint(cmd.Process.Pid), "VmHWM"); err == nil {
				peak = max(peak, v)
			} else {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	genErr := g.WriteRemus(w, 3)
	if genErr == nil {
		genErr = w.Flush()
	}
	in.Close() // the sender stops: the receiver publishes what is whole and exits
	err = cmd.Wait()
	<-done
	el := time.Since(start)
	if genErr != nil {
		t.Fatalf("writing the stream: %v\n%s", genErr, errOut.String())
	}
	out := errOut.String()
	if !strings.Contains(out, "checkpoints published") {
		t.Fatalf("receiver: %v\n%s", err, out)
	}
	published := strings.Count(out, " published (")
	gib := float64(pages) * 4096 / (1 << 30)
	t.Logf("xen receive of a %.2f GiB guest's stream (%d checkpoints published in %v): peak RSS %d MiB (target <= 128 MiB)", gib, published, el.Round(time.Second), peak>>10)
	fmt.Printf("BENCH receive_peak_rss_mib=%d guest_gib=%.2f\n", peak>>10, gib)
	if published < 4 {
		t.Fatalf("%d checkpoints published, want 4\n%s", published, out)
	}
}
