package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountFstab installs ckptfs as make install does and mounts it the
// way an operator's host does: mount -t fuse.ckptfs (mount(8) runs fuse3's
// mount.fuse3, which runs ckptfs from its PATH), then a line of an fstab
// file (mount -T), each unmounted with umount. It runs in a mount
// namespace of its own, with the staged /usr/local/bin bound over the
// host's, so the host's installation is left alone.
func TestMountFstab(t *testing.T) {
	requireFUSE(t)
	for _, tool := range []string{"unshare", "mount.fuse3", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required in CI (make deps installs it): %v", tool, err)
			}
			t.Skipf("no %s", tool)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount namespace, mount(8))")
	}
	tmp := t.TempDir()
	stage := filepath.Join(tmp, "stage")
	if out, err := exec.Command("make", "-C", "../..", "install", "BIN="+bin, "DESTDIR="+stage, "PREFIX=/usr/local").CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/ckptfs", "usr/local/lib/systemd/system/ckptfs.service", "usr/local/lib/systemd/system/ckpt.mount", "usr/local/share/doc/ckptfs/README.md",
		"usr/local/share/doc/ckptfs/docs/operations.md", "usr/local/share/doc/ckptfs/docs/bench-xen.png", // the README's links
		"usr/local/share/bash-completion/completions/ckptfs", "usr/local/share/zsh/site-functions/_ckptfs", "usr/local/share/fish/vendor_completions.d/ckptfs.fish"} {
		st, err := os.Stat(filepath.Join(stage, f))
		if err != nil {
			t.Fatalf("make install DESTDIR: %v", err)
		}
		if strings.HasSuffix(f, "bin/ckptfs") && st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v", f, st.Mode())
		}
	}
	unit, _ := os.ReadFile(filepath.Join(stage, "usr/local/lib/systemd/system/ckptfs.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/ckptfs mount ") || strings.Contains(string(unit), "@") {
		t.Errorf("installed ckptfs.service does not name PREFIX's binary:\n%s", unit)
	}
	// The units as systemd reads them, against a real binary at PREFIX.
	prefix := filepath.Join(tmp, "prefix")
	if out, err := exec.Command("make", "-C", "../..", "install", "BIN="+bin, "PREFIX="+prefix).CombinedOutput(); err != nil {
		t.Fatalf("make install PREFIX: %v\n%s", err, out)
	}
	for _, u := range []string{"ckptfs.service", "ckpt.mount"} {
		if out, err := exec.Command("systemd-analyze", "verify", filepath.Join(prefix, "lib/systemd/system", u)).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}

	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	os.MkdirAll(mnt, 0o755)
	fstab := filepath.Join(tmp, "fstab")
	os.WriteFile(fstab, []byte("# test\n"+store+"  "+mnt+"  fuse.ckptfs  ro,nofail,_netdev  0 0\n"), 0o644)
	script := `set -u
mount --bind "$STAGE/usr/local/bin" /usr/local/bin || exit 90
gone() { i=0; while pgrep -f "ckptfs $STORE $MNT" >/dev/null; do i=$((i+1)); [ $i -gt 300 ] && return 1; sleep 0.1; done; }
mount -t fuse.ckptfs "$STORE" "$MNT" -o allow_other,keep-last=2,nofail,x-systemd.automount || exit 91
grep " $MNT " /proc/mounts
echo hello from fstab > "$MNT/file" || exit 92
umount "$MNT" || exit 93
gone || exit 94
echo ---
mount -T "$FSTAB" "$MNT" || exit 95
grep " $MNT " /proc/mounts
cat "$MNT/file" || exit 96
if (echo no > "$MNT/other") 2>/dev/null; then exit 97; fi
umount "$MNT" || exit 98
gone || exit 99
echo ---
mount -t fuse.ckptfs "$STORE" "$MNT" -o keep-lastt=2 2>&1
echo "rc=$?"
grep -c " $MNT " /proc/mounts
exit 0
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "STAGE="+stage, "STORE="+store, "MNT="+mnt, "FSTAB="+fstab)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mount(8) session: %v\n%s", err, out)
	}
	parts := strings.Split(string(out), "---\n")
	if len(parts) != 3 {
		t.Fatalf("mount(8) session:\n%s", out)
	}
	if f := strings.Fields(parts[0]); len(f) < 4 || f[0] != store || f[2] != "fuse.ckptfs" || !strings.Contains(f[3], "allow_other") {
		t.Errorf("mount -t fuse.ckptfs: /proc/mounts has %q, want %s at %s, fuse.ckptfs, allow_other", parts[0], store, mnt)
	}
	if f := strings.Fields(parts[1]); len(f) < 4 || f[2] != "fuse.ckptfs" || !strings.HasPrefix(f[3], "ro,") || !strings.Contains(parts[1], "hello from fstab") {
		t.Errorf("mount -T fstab (ro): %q", parts[1])
	}
	if !strings.Contains(parts[2], "-o keep-lastt=2: unknown option") || !strings.Contains(parts[2], "rc=2") || !strings.HasSuffix(strings.TrimSpace(parts[2]), "0") {
		t.Errorf("a bad -o option: %q, want a clear error, exit 2, nothing mounted", parts[2])
	}
	// The daemon closed the store cleanly: it opens again, file intact.
	d := mount(t, store, filepath.Join(tmp, "again"))
	if b, err := os.ReadFile(filepath.Join(d.mnt, "file")); err != nil || string(b) != "hello from fstab\n" {
		t.Errorf("after umount: %q %v", b, err)
	}
}

// TestMountProgramPath: a binary outside mount.fuse3's PATH mounts through
// FUSE's PROGRAM#SOURCE form (mount -t fuse 'BIN#STORE' DIR), as
// docs/operations.md says: it serves, shows as fuse.ckptfs, and unmounts.
func TestMountProgramPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mount(8))")
	}
	if _, err := exec.LookPath("mount.fuse3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mount.fuse3 is required in CI (make deps installs fuse3)")
		}
		t.Skip("no mount.fuse3")
	}
	tmp := t.TempDir()
	store, mnt := filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt")
	os.MkdirAll(mnt, 0o755)
	if out, err := exec.Command("mount", "-t", "fuse", bin+"#"+store, mnt, "-o", "keep-last=2").CombinedOutput(); err != nil {
		t.Fatalf("mount -t fuse BIN#STORE: %v\n%s", err, out)
	}
	daemonArgs := store + " " + mnt // mount.fuse3 runs BIN STORE MNT -o ...
	defer func() {
		exec.Command("umount", mnt).Run()
		waitNoProcess(t, daemonArgs) // before TempDir's cleanup removes the store under it
	}()
	mounts, _ := os.ReadFile("/proc/mounts")
	if !strings.Contains(string(mounts), store+" "+mnt+" fuse.ckptfs ") {
		t.Errorf("/proc/mounts does not show %s on %s as fuse.ckptfs:\n%s", store, mnt, mounts)
	}
	if err := os.WriteFile(filepath.Join(mnt, "f"), []byte("through PROGRAM#SOURCE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "through PROGRAM#SOURCE\n" {
		t.Errorf("read back %q (%v)", got, err)
	}
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v\n%s", err, out)
	}
	// The daemon closes the store after umount returns; once it is gone
	// the store opens again with the file in it.
	waitNoProcess(t, daemonArgs)
	d := mount(t, store, filepath.Join(tmp, "again"))
	if b, err := os.ReadFile(filepath.Join(d.mnt, "f")); err != nil || string(b) != "through PROGRAM#SOURCE\n" {
		t.Errorf("after umount: %q %v", b, err)
	}
}
