package deploytest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/xnat/xnat/mgmt"
)

const (
	unitFile     = "deploy/systemd/natd.service"
	sysusersFile = "deploy/systemd/xnat.sysusers.conf"
	// unitNatd is where the unit expects natd; the tests substitute the
	// natd they built.
	unitNatd = "/usr/local/bin/natd"
	// unitConfig is the configuration path the unit and natd's default
	// agree on.
	unitConfig = "/etc/xnat/natd.yaml"
)

// unit is a parsed systemd unit file: section, key, and every assignment of
// the key in order (systemd accumulates or resets lists across
// assignments; the tests look at what they need).
type unit map[string]map[string][]string

func parseUnit(data []byte) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	var cont strings.Builder
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if cont.Len() == 0 && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont.WriteString(strings.TrimSuffix(line, "\\"))
			cont.WriteString(" ")
			continue
		}
		if cont.Len() > 0 {
			cont.WriteString(line)
			line = cont.String()
			cont.Reset()
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("line %d: %q is neither a section nor a key=value", lineNo, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	return u, sc.Err()
}

// last returns the last assignment of a key, "" if none.
func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words returns every whitespace-separated word of every assignment.
func (u unit) words(section, key string) []string {
	var w []string
	for _, v := range u[section][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

func loadUnit(t *testing.T) unit {
	t.Helper()
	u, err := parseUnit(readRepoFile(t, unitFile))
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	return u
}

// unitWithNatd writes a copy of the unit whose natd is the one built by the
// tests (or any other path), named natd.service as systemd needs.
func unitWithNatd(t *testing.T, natd string) string {
	t.Helper()
	data := string(readRepoFile(t, unitFile))
	if !strings.Contains(data, unitNatd) {
		t.Fatalf("%s does not run %s", unitFile, unitNatd)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "natd.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(data, unitNatd, natd)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit with the
// natd this repository builds in place of /usr/local/bin/natd: unknown
// keys, bad values and missing executables all fail it. A copy pointing at
// a natd that does not exist must fail, so the check is known to bite.
func TestSystemdUnitVerifies(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	path := unitWithNatd(t, natdPath(t))
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}

	missing := unitWithNatd(t, filepath.Join(t.TempDir(), "no-such-natd"))
	out, err = exec.Command(sa, "verify", "--man=no", missing).CombinedOutput()
	if err == nil {
		t.Errorf("systemd-analyze verify accepted a unit whose natd does not exist:\n%s", out)
	}
}

// exposure parses systemd-analyze security's overall score.
var exposure = regexp.MustCompile(`Overall exposure level for natd\.service: ([0-9.]+)`)

// TestSystemdUnitSecurity scores the unit's sandbox with systemd-analyze
// security --offline: the exposure level must stay at or below 3.0 (of 10,
// "OK"). A copy without the hardening must score worse, so the threshold
// is known to bite.
func TestSystemdUnitSecurity(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	const threshold = "30" // tenths: exposure 3.0
	path := unitWithNatd(t, natdPath(t))
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold="+threshold, path).CombinedOutput()
	m := exposure.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level: %v\n%s", err, out)
	}
	t.Logf("exposure level of %s: %s", unitFile, m[1])
	if err != nil {
		t.Errorf("systemd-analyze security --threshold=%s: %v (exposure %s)\n%s", threshold, err, m[1], out)
	}

	// Strip the sandbox and the privilege drop.
	var weak []string
	for _, line := range strings.Split(string(readRepoFile(t, unitFile)), "\n") {
		k, _, _ := strings.Cut(line, "=")
		switch {
		case strings.HasPrefix(k, "Protect"), strings.HasPrefix(k, "Private"), strings.HasPrefix(k, "Restrict"),
			strings.HasPrefix(k, "SystemCall"), strings.HasPrefix(k, "Capability"), strings.HasPrefix(k, "Ambient"),
			k == "User", k == "Group", k == "NoNewPrivileges", k == "MemoryDenyWriteExecute", k == "LockPersonality":
			continue
		}
		weak = append(weak, strings.ReplaceAll(line, unitNatd, natdPath(t)))
	}
	weakPath := filepath.Join(t.TempDir(), "natd.service")
	if err := os.WriteFile(weakPath, []byte(strings.Join(weak, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", "--threshold="+threshold, weakPath).CombinedOutput()
	if err == nil {
		t.Errorf("an unhardened copy of the unit passes --threshold=%s:\n%s", threshold, out)
	}
}

// TestSystemdUnitContract checks what the issue asks of the unit and what
// natd itself assumes: its flags, its configuration and socket paths.
func TestSystemdUnitContract(t *testing.T) {
	u := loadUnit(t)
	svc := "Service"

	// Least privilege: a named user, no new privileges, the capabilities
	// natd needs and no others (TestUnitSandbox and TestUnitCapabilities
	// run natd with exactly these).
	if user := u.last(svc, "User"); user == "" || user == "root" || user == "0" {
		t.Errorf("User=%q: natd must not run as root", user)
	}
	if u.last(svc, "Group") == "" {
		t.Errorf("no Group=: the read-only socket's group is natd's primary group")
	}
	if u.last(svc, "NoNewPrivileges") != "yes" {
		t.Errorf("NoNewPrivileges=%q, want yes", u.last(svc, "NoNewPrivileges"))
	}
	ambient := u.words(svc, "AmbientCapabilities")
	bounding := u.words(svc, "CapabilityBoundingSet")
	slices.Sort(ambient)
	slices.Sort(bounding)
	if !slices.Equal(ambient, bounding) {
		t.Errorf("AmbientCapabilities %v != CapabilityBoundingSet %v", ambient, bounding)
	}
	allowed := map[string]bool{"CAP_NET_ADMIN": true, "CAP_NET_RAW": true, "CAP_BPF": true, "CAP_IPC_LOCK": true}
	for _, c := range ambient {
		if !allowed[c] {
			t.Errorf("capability %s is not one natd uses", c)
		}
	}
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW"} {
		if !slices.Contains(ambient, c) {
			t.Errorf("AmbientCapabilities lacks %s", c)
		}
	}
	if u.last(svc, "LimitMEMLOCK") != "infinity" && !slices.Contains(ambient, "CAP_IPC_LOCK") {
		t.Errorf("neither LimitMEMLOCK=infinity nor CAP_IPC_LOCK: the AF_XDP frames exceed the default 8 MiB")
	}

	// Hardening the issue names.
	for key, want := range map[string]string{
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"SystemCallArchitectures": "native", "Restart": "on-failure",
	} {
		if got := u.last(svc, key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	families := u.words(svc, "RestrictAddressFamilies")
	for _, f := range []string{"AF_UNIX", "AF_INET", "AF_NETLINK", "AF_XDP"} {
		if !slices.Contains(families, f) {
			t.Errorf("RestrictAddressFamilies %v lacks %s", families, f)
		}
	}

	// The management sockets live in the runtime directory systemd makes.
	rd := u.last(svc, "RuntimeDirectory")
	for _, sock := range []string{mgmt.DefaultSocketPath, mgmt.DefaultReadOnlySocketPath} {
		if filepath.Dir(sock) != "/run/"+rd {
			t.Errorf("RuntimeDirectory=%s, but natd's default socket is %s", rd, sock)
		}
	}

	// natd, its flags and its configuration path.
	start := u.words(svc, "ExecStart")
	if len(start) == 0 || start[0] != unitNatd {
		t.Fatalf("ExecStart=%v does not run %s", start, unitNatd)
	}
	n := 0
	for _, key := range []string{"ExecStartPre", "ExecStart", "ExecStartPost"} {
		for _, line := range u[svc][key] {
			if strings.Contains(line, "natd") {
				n += checkNatdFlags(t, key, line)
			}
		}
	}
	if n == 0 {
		t.Errorf("no natd flag found in the unit's Exec lines: the flag check checked nothing")
	}
	if i := slices.Index(start, "--config"); i < 0 || i+1 >= len(start) || start[i+1] != unitConfig {
		t.Errorf("ExecStart=%v does not pass --config %s", start, unitConfig)
	}
	if u.last("Unit", "ConditionPathExists") != unitConfig {
		t.Errorf("ConditionPathExists=%q, want %s", u.last("Unit", "ConditionPathExists"), unitConfig)
	}
	help, _ := exec.Command(natdPath(t), "--help").CombinedOutput()
	if !strings.Contains(string(help), `(default "`+unitConfig+`")`) {
		t.Errorf("natd's default --config is not %s:\n%s", unitConfig, help)
	}

	// Reload is SIGHUP to natd, which re-reads the file.
	reload := u.last(svc, "ExecReload")
	if !strings.Contains(reload, "kill") || !strings.Contains(reload, "-HUP") || !strings.Contains(reload, "$MAINPID") {
		t.Errorf("ExecReload=%q does not send SIGHUP to natd", reload)
	}
}

// TestSysusersCreatesServiceUser runs the sysusers.d entry in a scratch
// root: it must create the unit's User and Group.
func TestSysusersCreatesServiceUser(t *testing.T) {
	su := requireTool(t, "systemd-sysusers", "systemd")
	u := loadUnit(t)
	scratch := t.TempDir()
	if err := os.MkdirAll(filepath.Join(scratch, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(su, "--dry-run", "--root="+scratch, repoFile(t, sysusersFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-sysusers %s: %v\n%s", sysusersFile, err, out)
	}
	user, group := u.last("Service", "User"), u.last("Service", "Group")
	if !strings.Contains(string(out), "Creating user '"+user+"'") {
		t.Errorf("%s does not create the unit's user %q:\n%s", sysusersFile, user, out)
	}
	if !strings.Contains(string(out), "Creating group '"+group+"'") {
		t.Errorf("%s does not create the unit's group %q:\n%s", sysusersFile, group, out)
	}
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit([]byte("# c\n[Unit]\nA=1\n[Service]\nX=a b\nX=c \\\n  d\n; c\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.words("Service", "X"); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("words = %q", got)
	}
	if u.last("Unit", "A") != "1" || u.last("Unit", "B") != "" {
		t.Errorf("last: %v", u)
	}
	if _, err := parseUnit([]byte("X=1\n")); err == nil {
		t.Errorf("a key outside a section was accepted")
	}
}
