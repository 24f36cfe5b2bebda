package daemon

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/ckptfs/ckptfs/fs"
	"github.com/ckptfs/ckptfs/gc"
)

// RunOptions are what a mount daemon runs beside its filesystem.
type RunOptions struct {
	// Policy is applied after each completed checkpoint (empty: none).
	Policy gc.Policy
	// Metrics, if set, serves Prometheus metrics at /metrics.
	Metrics net.Listener
	Logger  *log.Logger
	// Ready is called once everything serves (the command prints its
	// ready line); systemd is told right after.
	Ready func()
	// Report says what an automatic gc run did, for the log.
	Report func(GCReport) string
	// Human formats byte counts in a receive's progress lines.
	Human func(int64) string
}

// Run is the daemon of the store mounted as m until it is unmounted
// (umount, or SIGINT/SIGTERM here): its control socket (Listen), metrics,
// automatic gc and systemd's notifications. At the end it stores the
// files closed behind their writers while the socket still answers, then
// closes the store. ErrServed if another daemon serves the store.
func Run(m *fs.Mounted, readOnly bool, o RunOptions) error {
	logger := o.Logger
	if logger == nil {
		logger = log.New(os.Stderr, "ckptfs: ", log.LstdFlags)
	}
	d := &Daemon{Dir: m.StoreDir, Chunks: m.Store, Index: m.Index, FS: m.FS, Data: m.Data, Human: o.Human}
	ctl, err := Listen(d)
	if err != nil && readOnly && (errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES)) {
		// A store on read-only media: no control socket. Commands open
		// the store read-only themselves (readers share it).
		logger.Printf("no control socket (%v): stats and fsck open the store read-only beside this mount", err)
		ctl, err = closerFunc(func() error { return nil }), nil
	}
	if err != nil {
		m.Unmount()
		m.Close()
		return err
	}
	defer ctl.Close()
	stopMetrics := func() {}
	if o.Metrics != nil {
		stopMetrics = serveMetrics(o.Metrics, &mountMetrics{d: d, store: m.StoreDir, data: m.Data})
		defer stopMetrics()
		logger.Printf("metrics at http://%s/metrics", o.Metrics.Addr())
	}
	if !o.Policy.Empty() {
		stop := make(chan struct{})
		defer close(stop)
		report := o.Report
		if report == nil {
			report = func(r GCReport) string { return fmt.Sprintf("expired %d files", len(r.Expired)) }
		}
		go d.AutoGC(o.Policy, m.Data.Counters().Images.Load, 2*time.Second, logger.Printf, report, stop)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			if err := m.Server.Unmount(); err != nil {
				logger.Printf("%v: cannot unmount %s (%v); close the files open there and retry, or 'umount -l %s'", s, m.Dir, err, m.Dir)
			}
		}
	}()
	if o.Ready != nil {
		o.Ready()
	}
	// Under systemd (Type=notify) the unit is up now; elsewhere a no-op.
	sddaemon.SdNotify(false, sddaemon.SdNotifyReady)
	m.Server.Wait()
	sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
	// Files closed behind their writers are stored first, while the
	// control socket still answers: a command that waits for them (stats
	// right after umount) gets its answer.
	m.FS.StopBehind()
	stopMetrics() // no scrape reads a store being closed
	ctl.Close()   // nor a request
	if err := m.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}
