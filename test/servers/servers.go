// Package servers starts real servers on loopback for the tests and
// benchmarks that need them: sshd (OpenSSH) for ssh:// pushes and
// SeaweedFS's weed in S3 mode for the bucket tier. `make deps` installs
// openssh-server and builds weed (from its module, into $CKPTFS_WEED);
// with CI=true a missing server fails the test instead of skipping it.
package servers

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Need skips (or, in CI, fails) the test when err says a server is missing.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (make deps installs it): %v", what, err)
	}
	t.Skipf("no %s: %v (make deps installs it)", what, err)
}

// freePort returns a loopback port nobody listens on; with grpc, port+10000
// is free too (weed puts its gRPC listeners there).
func FreePort(t testing.TB, grpc bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !grpc {
			return p
		}
		if p+10000 > 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000)); err == nil {
			l2.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// StartProcess starts cmd in its own process group, killed when t ends.
func StartProcess(t testing.TB, cmd *exec.Cmd) *bytes.Buffer {
	t.Helper()
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return &log
}

// SSHD is an OpenSSH server on loopback that lets the test's key in as
// the current user; Cmd is the ssh command (with options) to reach it.
type SSHD struct {
	Port int
	Cmd  string
}

func StartSSHD(t testing.TB) SSHD {
	t.Helper()
	_, err := exec.LookPath("/usr/sbin/sshd")
	Need(t, "sshd (openssh-server)", err)
	_, err = exec.LookPath("ssh")
	Need(t, "ssh (openssh-client)", err)
	dir := t.TempDir()
	os.MkdirAll("/run/sshd", 0o755) // its privilege separation directory
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "client.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	port := FreePort(t, false)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s/host
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
`, port, dir, dir, dir)
	os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600)
	log := StartProcess(t, exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config")))
	WaitPort(t, port, log)
	return SSHD{Port: port, Cmd: fmt.Sprintf("ssh -i %s/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR", dir)}
}

// WaitPort waits for a listener on port.
func WaitPort(t testing.TB, port int, log *bytes.Buffer) {
	t.Helper()
	for range 200 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d after 20 s\n%s", port, log)
}

// WeedPath is where make deps builds SeaweedFS's weed.
func WeedPath() string {
	if p := os.Getenv("CKPTFS_WEED"); p != "" {
		return p
	}
	return "/var/cache/ckptfs-test/weed"
}

// S3 is a SeaweedFS server in S3 mode on loopback.
type S3 struct {
	Endpoint string
	Env      []string // the credentials, as AWS_* variables
}

func StartS3(t testing.TB) S3 {
	t.Helper()
	weed := WeedPath()
	_, err := os.Stat(weed)
	Need(t, "SeaweedFS weed", err)
	dir := t.TempDir()
	cfg := `{"identities":[{"name":"ckptfs","credentials":[{"accessKey":"ckptfs-test","secretKey":"ckptfs-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}`
	os.WriteFile(filepath.Join(dir, "s3.json"), []byte(cfg), 0o600)
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	ports := map[string]int{}
	for _, k := range []string{"master", "volume", "filer", "s3"} {
		ports[k] = FreePort(t, true)
	}
	cmd := exec.Command(weed, "server", "-dir="+filepath.Join(dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		fmt.Sprintf("-master.port=%d", ports["master"]), fmt.Sprintf("-volume.port=%d", ports["volume"]),
		"-volume.max=32", "-master.volumeSizeLimitMB=256",
		"-filer", fmt.Sprintf("-filer.port=%d", ports["filer"]),
		"-s3", fmt.Sprintf("-s3.port=%d", ports["s3"]), "-s3.config="+filepath.Join(dir, "s3.json"),
		"-metricsPort=0")
	cmd.Dir = dir
	log := StartProcess(t, cmd)
	s := S3{Endpoint: fmt.Sprintf("127.0.0.1:%d", ports["s3"]), Env: []string{"AWS_ACCESS_KEY_ID=ckptfs-test", "AWS_SECRET_ACCESS_KEY=ckptfs-test-secret"}}
	// Up when the S3 port answers and a volume takes writes.
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weed's S3 port does not answer: %v\n%s", err, tail(log.String()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return s
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// KeyFile writes a fresh 32-byte key, mode 0600.
func KeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	b := make([]byte, 32)
	f, _ := os.Open("/dev/urandom")
	f.Read(b)
	f.Close()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
