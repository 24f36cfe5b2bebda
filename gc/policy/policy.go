// Package policy is what gc decides without looking at a store: which
// generations a retention policy keeps (restic forget's rules), and the
// dead fraction past which a segment is rewritten. A bucket's gc applies
// the same rules as a local store's.
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy says which generations to keep, with restic forget's semantics:
// a generation kept by any rule stays. Generations are grouped per guest
// lineage (xl save images) or per directory (other files), and each group
// is judged on its own.
type Policy struct {
	KeepLast    int           // the n newest
	KeepWithin  time.Duration // those at most this much older than the group's newest
	KeepHourly  int           // the newest of each of the n newest hours that have one
	KeepDaily   int
	KeepWeekly  int
	KeepMonthly int
	KeepYearly  int
	// AllFiles expires regular files that are not xl save images too
	// (grouped by owner and directory); without it only images expire.
	AllFiles bool
}

// Empty reports whether the policy has no rule; an empty policy expires
// nothing (as restic refuses to forget with no policy).
func (p Policy) Empty() bool {
	return p.KeepLast == 0 && p.KeepWithin == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 &&
		p.KeepMonthly == 0 && p.KeepYearly == 0
}

// Validate rejects negative counts and durations.
func (p Policy) Validate() error {
	if p.KeepLast < 0 || p.KeepWithin < 0 || p.KeepHourly < 0 || p.KeepDaily < 0 || p.KeepWeekly < 0 || p.KeepMonthly < 0 || p.KeepYearly < 0 {
		return fmt.Errorf("retention policy: counts and durations must not be negative")
	}
	return nil
}

// Item is one generation to judge.
type Item struct {
	ID   uint64
	Time time.Time
}

// Verdict is what a policy says of one item: kept (and by which rules:
// "last #1", "within 7d", "daily #3", ... as restic's keep reasons and
// borg prune --list's rules) or expired.
type Verdict struct {
	Item
	Keep    bool
	Reasons []string
}

// Judge returns the verdict on each item of one group, newest first.
func (p Policy) Judge(items []Item) []Verdict {
	s := make([]Verdict, len(items))
	for i, it := range items {
		s[i].Item = it
	}
	sort.SliceStable(s, func(i, j int) bool { return s[i].Time.After(s[j].Time) }) // newest first
	if p.Empty() {
		for i := range s {
			s[i].Keep, s[i].Reasons = true, []string{"no policy"}
		}
		return s
	}
	keep := func(i int, why string) { s[i].Keep, s[i].Reasons = true, append(s[i].Reasons, why) }
	for i := range s {
		if i < p.KeepLast {
			keep(i, fmt.Sprintf("last #%d", i+1))
		}
		if p.KeepWithin > 0 && !s[i].Time.Before(s[0].Time.Add(-p.KeepWithin)) {
			keep(i, "within "+humanDuration(p.KeepWithin))
		}
	}
	bucket := func(n int, rule string, key func(time.Time) string) {
		last, k := "", 0
		for i := 0; i < len(s) && k < n; i++ {
			if b := key(s[i].Time); b != last {
				k++
				keep(i, fmt.Sprintf("%s #%d", rule, k))
				last = b
			}
		}
	}
	bucket(p.KeepHourly, "hourly", func(t time.Time) string { return t.Format("2006-01-02T15") })
	bucket(p.KeepDaily, "daily", func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(p.KeepWeekly, "weekly", func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%d-%02d", y, w)
	})
	bucket(p.KeepMonthly, "monthly", func(t time.Time) string { return t.Format("2006-01") })
	bucket(p.KeepYearly, "yearly", func(t time.Time) string { return t.Format("2006") })
	return s
}

// Expire returns the items of one group that no rule keeps, oldest first.
func (p Policy) Expire(items []Item) []Item {
	if p.Empty() || len(items) == 0 {
		return nil
	}
	vs := p.Judge(items)
	var out []Item
	for i := len(vs) - 1; i >= 0; i-- {
		if !vs[i].Keep {
			out = append(out, vs[i].Item)
		}
	}
	return out
}

// humanDuration writes d as the flags take it: whole days ("7d") or Go's
// form ("36h0m0s" becomes "36h").
func humanDuration(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	return strings.TrimSuffix(s, "0m")
}

// SegmentGarbage is the dead fraction of a segment past which gc rewrites
// it (copies its live records and removes it): the most space a store
// keeps for what gc deleted, and the price of giving it back (up to
// 1/SegmentGarbage - 1 bytes copied per byte freed). See the README.
const SegmentGarbage = 0.1
