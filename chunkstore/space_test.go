package chunkstore

import (
	"errors"
	"testing"
	"time"
)

// TestHoldCountsAgainstAdmit: room held for data to come (write-behind's
// spool) is refused like new data when the disk has none, counts against
// every later Admit and Hold until it is used or given back, and, once
// held, is taken without a check.
func TestHoldCountsAgainstAdmit(t *testing.T) {
	const mib = 1 << 20
	sp := &space{dir: t.TempDir(), reserve: 10 * mib, unflush: func() int64 { return 0 }}
	s := &Store{space: sp}
	fresh := func(free int64) { sp.free, sp.admitted, sp.checked = free, 0, time.Now() }

	fresh(100 * mib)
	if err := s.Hold(40 * mib); err != nil {
		t.Fatalf("hold 40 MiB of 100 free: %v", err)
	}
	// 2 x (40 held + 10) = 100: nothing left for the reserve.
	if err := s.Admit(10 * mib); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("admit 10 MiB beside 40 held: %v, want ErrNoSpace", err)
	}
	fresh(100 * mib)
	if err := s.Hold(10 * mib); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("hold 10 MiB more: %v, want ErrNoSpace", err)
	}
	fresh(100 * mib)
	if err := s.Admit(mib); err != nil {
		t.Fatalf("admit 1 MiB beside 40 held: %v", err)
	}
	// The held data is stored: no check, and it counts as admitted.
	s.UseHeld(40 * mib)
	if sp.held != 0 || sp.admitted != 41*mib {
		t.Fatalf("after UseHeld: held %d, admitted %d", sp.held, sp.admitted)
	}
	fresh(100 * mib)
	if err := s.Hold(20 * mib); err != nil {
		t.Fatal(err)
	}
	s.Unhold(20 * mib)
	if err := s.Admit(40 * mib); err != nil {
		t.Fatalf("admit 40 MiB once the hold was given back: %v", err)
	}
	// A hold never goes negative (UseHeld of a write the hold did not
	// cover).
	s.UseHeld(mib)
	if sp.held != 0 {
		t.Fatalf("held %d", sp.held)
	}
}
