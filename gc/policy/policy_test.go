package policy

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
	// one a month, Jul 2025 .. Jun 2026: IDs 0 .. 11
	var monthly []Item
	for i := 0; i < 12; i++ {
		monthly = append(monthly, Item{ID: uint64(i), Time: time.Date(2025, time.Month(7+i), 3, 0, 0, 0, 0, time.UTC)})
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
		{"keep-monthly 2", Policy{KeepMonthly: 2}, monthly, []uint64{10, 11}},
		{"keep-yearly 2", Policy{KeepYearly: 2}, monthly, []uint64{5, 11}},
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

// TestPolicyReasons: each kept generation says which rules keep it, as
// restic's keep reasons do; an expired one says none.
func TestPolicyReasons(t *testing.T) {
	base := time.Date(2026, 11, 16, 10, 0, 0, 0, time.UTC)
	var items []Item
	for i := 0; i < 5; i++ { // one a day, ID 4 newest
		items = append(items, Item{ID: uint64(i), Time: base.Add(time.Duration(i) * 24 * time.Hour)})
	}
	got := map[uint64][]string{}
	for _, v := range (Policy{KeepLast: 2, KeepDaily: 3, KeepWithin: 36 * time.Hour}).Judge(items) {
		if v.Keep != (len(v.Reasons) > 0) {
			t.Fatalf("%d: keep %v with reasons %v", v.ID, v.Keep, v.Reasons)
		}
		got[v.ID] = v.Reasons
	}
	want := map[uint64][]string{
		4: {"last #1", "within 36h", "daily #1"},
		3: {"last #2", "within 36h", "daily #2"},
		2: {"daily #3"},
		1: nil,
		0: nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
}
