package gc

import (
	"reflect"
	"testing"
	"time"
)

func TestPolicyExpire(t *testing.T) {
	base := time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC) // a Monday
	// every 15 minutes for 3 days: 288 items, IDs 0 (oldest) .. 287
	var every15 []Item
	for i := 0; i < 288; i++ {
		every15 = append(every15, Item{ID: uint64(i), Time: base.Add(time.Duration(i) * 15 * time.Minute)})
	}
	kept := func(p Policy, items []Item) []uint64 {
		gone := map[uint64]bool{}
		for _, it := range p.Expire(items) {
			gone[it.ID] = true
		}
		var out []uint64
		for _, it := range items {
			if !gone[it.ID] {
				out = append(out, it.ID)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		p     Policy
		items []Item
		want  []uint64
	}{
		{"empty policy keeps all", Policy{}, every15[:3], []uint64{0, 1, 2}},
		{"keep-last 2", Policy{KeepLast: 2}, every15[:5], []uint64{3, 4}},
		{"keep-last more than there are", Policy{KeepLast: 9}, every15[:3], []uint64{0, 1, 2}},
		{"keep-within 30m of the newest", Policy{KeepWithin: 30 * time.Minute}, every15[:6], []uint64{3, 4, 5}},
		{"keep-hourly 2: newest of the 2 newest hours", Policy{KeepHourly: 2}, every15[:12], []uint64{7, 11}},
		{"keep-daily 2", Policy{KeepDaily: 2}, every15, []uint64{191, 287}},
		{"keep-weekly 1 (ISO weeks)", Policy{KeepWeekly: 1}, every15, []uint64{287}},
		{"rules add up", Policy{KeepLast: 1, KeepDaily: 3}, every15, []uint64{95, 191, 287}},
		{"keep-last and hourly overlap", Policy{KeepLast: 2, KeepHourly: 2}, every15[:12], []uint64{7, 10, 11}},
		{"unsorted input", Policy{KeepLast: 1}, []Item{every15[5], every15[9], every15[2]}, []uint64{9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kept(tc.p, tc.items); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
		})
	}
	if (Policy{KeepLast: -1}).Validate() == nil {
		t.Fatal("negative keep-last accepted")
	}
}
