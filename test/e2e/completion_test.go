package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletion runs 'ckptfs completion bash' and completes command
// lines with the script in a real bash, as a user's Tab would: commands,
// a group's subcommands, a command's flags, and the shells completion
// knows. zsh and fish get their own scripts; an unknown shell is a usage
// error.
func TestCompletion(t *testing.T) {
	out, code := run(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: exit %d\n%s", code, out)
	}
	script := filepath.Join(t.TempDir(), "ckptfs.bash")
	os.WriteFile(script, []byte(out), 0o644)
	for _, tc := range []struct{ line, want string }{
		{"ckptfs g", "generations gc"},
		{"ckptfs gc --keep-l", "--keep-last"},
		{"ckptfs gc --keep-last 2 --dry", "--dry-run"},
		{"ckptfs xen r", "receive"},
		{"ckptfs xen receive --in", "--into"},
		{"ckptfs bucket gc --gr", "--grace"},
		{"ckptfs completion ", "bash zsh fish"},
		{"ckptfs push --remote", "--remote-ckptfs"},
	} {
		prog := `source "$1"; read -ra COMP_WORDS <<< "$2"; [[ $2 == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _ckptfs; echo "${COMPREPLY[*]}"`
		got, err := exec.Command("bash", "-c", prog, "bash", script, tc.line).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.line, err, got)
		}
		if strings.TrimSpace(string(got)) != tc.want {
			t.Errorf("%q completes to %q, want %q", tc.line, strings.TrimSpace(string(got)), tc.want)
		}
	}
	if out, code := run(t, "completion", "zsh"); code != 0 || !strings.Contains(out, "bashcompinit") || !strings.Contains(out, "complete -o filenames -F _ckptfs ckptfs") {
		t.Errorf("completion zsh: exit %d\n%s", code, out)
	}
	if out, code := run(t, "completion", "fish"); code != 0 || !strings.Contains(out, "complete -c ckptfs -n '__fish_seen_subcommand_from gc' -l keep-last -r -F") {
		t.Errorf("completion fish: exit %d\n%.400s", code, out)
	}
	if out, code := run(t, "completion", "tcsh"); code != 2 || !strings.Contains(out, "want bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, want 2 and a usage error\n%s", code, out)
	}
}
