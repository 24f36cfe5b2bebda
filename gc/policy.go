package gc

import (
	"fmt"
	"sort"
	"time"
)

// Policy says which generations to keep, with restic forget's semantics:
// a generation kept by any rule stays. Generations are grouped per guest
// lineage (xl save images) or per directory (other files), and each group
// is judged on its own.
type Policy struct {
	KeepLast   int           // the n newest
	KeepWithin time.Duration // those at most this much older than the group's newest
	KeepHourly int           // the newest of each of the n newest hours that have one
	KeepDaily  int
	KeepWeekly int
	// AllFiles expires regular files that are not xl save images too
	// (grouped by owner and directory); without it only images expire.
	AllFiles bool
}

// Empty reports whether the policy has no rule; an empty policy expires
// nothing (as restic refuses to forget with no policy).
func (p Policy) Empty() bool {
	return p.KeepLast == 0 && p.KeepWithin == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0
}

// Validate rejects negative counts and durations.
func (p Policy) Validate() error {
	if p.KeepLast < 0 || p.KeepWithin < 0 || p.KeepHourly < 0 || p.KeepDaily < 0 || p.KeepWeekly < 0 {
		return fmt.Errorf("retention policy: counts and durations must not be negative")
	}
	return nil
}

// Item is one generation to judge.
type Item struct {
	ID   uint64
	Time time.Time
}

// Expire returns the items of one group that no rule keeps, oldest first.
func (p Policy) Expire(items []Item) []Item {
	if p.Empty() || len(items) == 0 {
		return nil
	}
	s := append([]Item(nil), items...)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Time.After(s[j].Time) }) // newest first
	keep := make([]bool, len(s))
	for i := range s {
		if i < p.KeepLast {
			keep[i] = true
		}
		if p.KeepWithin > 0 && !s[i].Time.Before(s[0].Time.Add(-p.KeepWithin)) {
			keep[i] = true
		}
	}
	bucket := func(n int, key func(time.Time) string) {
		last := ""
		for i := 0; i < len(s) && n > 0; i++ {
			k := key(s[i].Time)
			if k != last {
				keep[i] = true
				last = k
				n--
			}
		}
	}
	bucket(p.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02T15") })
	bucket(p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(p.KeepWeekly, func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%d-%02d", y, w)
	})
	var out []Item
	for i := len(s) - 1; i >= 0; i-- {
		if !keep[i] {
			out = append(out, s[i])
		}
	}
	return out
}
