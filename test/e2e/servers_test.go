package e2e

import (
	"os"
	"os/exec"
	"testing"

	"github.com/ckptfs/ckptfs/test/servers"
)

// runEnv is run with extra environment.
func runEnv(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

var (
	startSSHD = servers.StartSSHD
	startS3   = servers.StartS3
	keyFile   = servers.KeyFile
)

type s3 = servers.S3
