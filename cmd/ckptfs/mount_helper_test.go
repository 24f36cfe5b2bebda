package main

import (
	"strings"
	"testing"
	"time"
)

// Every mount flag has its -o form; mount(8)'s own options pass; the rest
// is refused with the option named.
func TestMountOptions(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want func(o mountOptions) bool
		err  string
	}{
		{[]string{"rw,dev,suid"}, func(o mountOptions) bool { return !o.readOnly && !o.allowOther }, ""},
		{[]string{"ro,allow_other"}, func(o mountOptions) bool { return o.readOnly && o.allowOther }, ""},
		{[]string{"read-only=true,allow-other=false"}, func(o mountOptions) bool { return o.readOnly && !o.allowOther }, ""},
		{[]string{"keep-last=3,keep_daily=7,keep-within=36h"}, func(o mountOptions) bool {
			return o.policy.KeepLast == 3 && o.policy.KeepDaily == 7 && o.policy.KeepWithin == 36*time.Hour
		}, ""},
		{[]string{"codec=zstd", "xen-pages=false,debug"}, func(o mountOptions) bool { return o.codec == "zstd" && !o.xenPages && o.debug }, ""},
		{[]string{"metrics=127.0.0.1:9477,log=/var/log/ckptfs.log"}, func(o mountOptions) bool {
			return o.metrics == "127.0.0.1:9477" && o.logFile == "/var/log/ckptfs.log"
		}, ""},
		{[]string{"nofail,_netdev,noauto,x-systemd.automount,x-systemd.requires=a.mount,comment=x,noatime"}, func(o mountOptions) bool { return len(o.vfs) == 0 }, ""},
		{[]string{"noexec,nosuid", "dev"}, func(o mountOptions) bool { return strings.Join(o.vfs, ",") == "noexec,nosuid,dev" }, ""},
		{[]string{"sync"}, nil, "-o sync: not supported"},
		{[]string{"rw,dirsync"}, nil, "-o dirsync: not supported"},
		{[]string{"strictatime"}, nil, "not supported: reads never update atime"},
		{[]string{"bogus"}, nil, "-o bogus: unknown option"},
		{[]string{"keep-last"}, nil, "-o keep-last: needs a value"},
		{[]string{"keep-last=many"}, nil, "-o keep-last=many"},
		{[]string{"options=ro"}, nil, "unknown option"},
	} {
		var o mountOptions
		f := mountFlagSet(&o, new([]string))
		var err error
		o.vfs, err = applyMountOptions(f, tc.opts)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want %q", tc.opts, err, tc.err)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.opts, err)
		case !tc.want(o):
			t.Errorf("%v: options %+v", tc.opts, o)
		}
	}
}

func TestIsHelperCall(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"/var/lib/ckptfs", "/ckpt", "-o", "rw"}, true},
		{[]string{"./store", "mnt"}, true},
		{[]string{".", "mnt"}, true}, // exists
		{[]string{"mount", "a", "b"}, false},
		{[]string{"nosuchcommand", "b"}, false},
		{[]string{"/var/lib/ckptfs"}, false},
		{[]string{"-o", "rw"}, false},
	} {
		if got := isHelperCall(tc.args); got != tc.want {
			t.Errorf("isHelperCall(%q) = %v", tc.args, got)
		}
	}
}
