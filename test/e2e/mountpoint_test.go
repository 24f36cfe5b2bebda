package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckptfs/ckptfs/chunkstore"
)

// TestMountpointAsStore: every command that takes a STORE also takes the
// mountpoint it is mounted at (a new user's most frequent stumble: `ckptfs
// stats /ckpt`), and answers as for the store itself.
func TestMountpointAsStore(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	defer d.stop(t)
	writeFiles(t, d.mnt, 3)
	for _, args := range [][]string{{"stats"}, {"fsck"}, {"gc"}, {"stats", "--json"}} {
		viaStore, code1 := run(t, append(args, store)...)
		viaMnt, code2 := run(t, append(args, d.mnt)...)
		noTrace(t, args[0], viaMnt)
		if code1 != 0 || code2 != 0 {
			t.Fatalf("%v: exit %d for the store, %d for its mountpoint\n%s\n%s", args, code1, code2, viaStore, viaMnt)
		}
		if args[0] == "stats" && !strings.Contains(viaMnt, "3") {
			t.Fatalf("%v of the mountpoint says nothing of its 3 files:\n%s", args, viaMnt)
		}
	}
	out, code := run(t, "stats", filepath.Join(tmp, "nowhere"))
	if code == 0 {
		t.Fatalf("stats of a directory that is neither a store nor a mountpoint: exit 0\n%s", out)
	}
}

// TestVersion: `ckptfs version`, `--version` and `version --json` say the
// store format the binary writes, exit 0, and agree.
func TestVersion(t *testing.T) {
	out, code := run(t, "version")
	alt, code2 := run(t, "--version")
	if code != 0 || code2 != 0 || out != alt || !strings.Contains(out, fmt.Sprintf("store format %d", chunkstore.FormatVersion)) {
		t.Fatalf("version: exit %d %q; --version: exit %d %q", code, out, code2, alt)
	}
	js, code := run(t, "version", "--json")
	var v struct {
		Format  int    `json:"format"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal([]byte(js), &v); err != nil || code != 0 || v.Format != chunkstore.FormatVersion || v.Version == "" {
		t.Fatalf("version --json: exit %d, %q: %v", code, js, err)
	}
}

// TestGCSaysNoPolicy: gc without a retention policy says that nothing
// expires (as restic's forget warns), and its JSON lists what expired as
// an empty list, not null.
func TestGCSaysNoPolicy(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	writeFiles(t, d.mnt, 2)
	d.stop(t)
	out, code := run(t, "gc", store)
	if code != 0 || !strings.Contains(out, "no retention policy given") {
		t.Fatalf("gc without a policy: exit %d, says nothing of it:\n%s", code, out)
	}
	for _, args := range [][]string{{"gc", "--dry-run", "--json", store}, {"gc", "--keep-last", "5", "--json", store}} {
		out, code = run(t, args...)
		var rep struct {
			Expired json.RawMessage `json:"expired"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || string(rep.Expired) != "[]" {
			t.Fatalf("%v: exit %d, expired %s (%v), want []\n%s", args, code, rep.Expired, err, out)
		}
	}
}

// TestPushSaysNewStore: a push to a destination that does not exist says
// it created a store there (a mistyped path must not go unnoticed); a
// push to an existing store does not.
func TestPushSaysNewStore(t *testing.T) {
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	d := mount(t, store, filepath.Join(tmp, "mnt"))
	writeFiles(t, d.mnt, 2)
	dest := filepath.Join(tmp, "standby")
	out, code := run(t, "push", d.mnt, dest)
	if code != 0 || !strings.Contains(out, "created a new store at "+dest) {
		t.Fatalf("push to a new destination: exit %d\n%s", code, out)
	}
	out, code = run(t, "push", d.mnt, dest)
	if code != 0 || strings.Contains(out, "created a new store") {
		t.Fatalf("push to an existing store: exit %d\n%s", code, out)
	}
	// Between two local stores nothing crosses a wire: no "wire 0 B".
	if strings.Contains(out, "wire") {
		t.Fatalf("a local push speaks of a wire:\n%s", out)
	}
}

// TestPullInterrupted: Ctrl-C during a pull exits 130 and says how far it
// got and that running it again goes on from there.
func TestPullInterrupted(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(bin, "pull", "--timeout", "60s", "--ssh", hostileBin+" stall", "ssh://peer/src", filepath.Join(tmp, "dst"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, which gets the SIGINT, as a terminal's
	// Ctrl-C goes to the foreground group (ssh included).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the peer answered the handshake and went silent
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("pull did not stop on SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 || !strings.Contains(out.String(), "interrupted after") || !strings.Contains(out.String(), "run the same command again") {
		t.Fatalf("pull interrupted: exit %d, want 130 and a word on resuming\n%s", code, out.String())
	}
}
