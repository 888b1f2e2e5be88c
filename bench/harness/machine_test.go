package harness

import "testing"

// Outside a git checkout, the revision comes from RevisionEnv.
func TestReadMachineRevisionFromEnv(t *testing.T) {
	for _, c := range []struct {
		env, rev string
		dirty    bool
	}{
		{"", "", false},
		{"0123abcd", "0123abcd", false},
		{"0123abcd-dirty", "0123abcd", true},
	} {
		t.Setenv(RevisionEnv, c.env)
		m := ReadMachine(t.TempDir())
		if m.GitRevision != c.rev || m.GitDirty != c.dirty {
			t.Errorf("%s=%q: revision %q dirty %v, want %q %v", RevisionEnv, c.env, m.GitRevision, m.GitDirty, c.rev, c.dirty)
		}
	}
}
