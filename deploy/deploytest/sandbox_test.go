package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/bench/lab/natdlab"
)

// The sandbox tests run natd in the namespace lab the way the systemd unit
// runs it, as far as that is possible without systemd: as an unprivileged
// user holding exactly the unit's capabilities as ambient capabilities,
// with no_new_privs, and with the unit's locked-memory limit. Then
// strace's record of every system call natd made is held against the
// rest of the unit's sandbox: SystemCallFilter, RestrictAddressFamilies,
// RestrictNamespaces and the directories natd may write to.

// sandboxUID is the unprivileged user natd runs as in the tests: nobody,
// standing in for the unit's xnat user.
const sandboxUID = 65534

// unitCaps returns the unit's ambient capabilities in setpriv's spelling
// (net_admin).
func unitCaps(t *testing.T, u unit) []string {
	t.Helper()
	var caps []string
	for _, c := range u.words("Service", "AmbientCapabilities") {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if len(caps) == 0 {
		t.Fatalf("%s grants no capability", unitFile)
	}
	return caps
}

// sandboxRun is one natd started in the lab under the unit's privileges.
type sandboxRun struct {
	env      *natdlab.Env
	startErr error
	trace    string // strace output file, if traced
	writable []string
}

// umemFit returns natd configuration that makes its AF_XDP frames fit the
// locked-memory limit natd will run with. The unit sets
// LimitMEMLOCK=infinity; a test machine whose root cannot raise the limit
// (no CAP_SYS_RESOURCE, as in some containers) runs natd with a smaller
// UMEM instead, which exercises the same code and the same charge.
func umemFit(t *testing.T, u unit) (raise bool, extra string) {
	t.Helper()
	if u.last("Service", "LimitMEMLOCK") == "infinity" && exec.Command("sh", "-c", "ulimit -l unlimited").Run() == nil {
		return true, ""
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		t.Fatal(err)
	}
	// Two sockets (inside, outside) of frames*2048 bytes for one worker.
	frames := 4096
	for frames >= 256 && uint64(2*frames*2048) > rl.Cur {
		frames /= 2
	}
	if frames < 256 {
		lab.Unavailable(t, "RLIMIT_MEMLOCK is %d bytes and cannot be raised: too small for any UMEM", rl.Cur)
	}
	t.Logf("RLIMIT_MEMLOCK cannot be raised here (%d bytes): natd runs with %d frames per socket instead of LimitMEMLOCK=infinity", rl.Cur, frames)
	return false, fmt.Sprintf("xdp:\n  frames: %d\n  ring_size: %d\n", frames, frames/4)
}

// startSandboxed builds the lab and starts natd with the given
// capabilities (setpriv spelling), traced by strace when trace is set.
func startSandboxed(t *testing.T, u unit, caps []string, trace bool) *sandboxRun {
	t.Helper()
	setpriv := requireTool(t, "setpriv", "util-linux")
	strace := ""
	if trace {
		strace = requireTool(t, "strace", "strace")
	}
	natd := natdPath(t)
	raise, extra := umemFit(t, u)

	// Directories natd may write to, standing in for RuntimeDirectory and
	// LogsDirectory. They and their parents must be searchable by nobody.
	eventsDir := sandboxDir(t)
	wrapper := filepath.Join(sandboxDir(t), "natd-sandboxed")
	e := natdlab.RequireEnv(t, natdlab.Options{
		Natd: wrapper,
		Config: natdlab.ConfigParams{
			EventsFile: filepath.Join(eventsDir, "events.log"),
			Extra:      extra,
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("natd ran with capabilities %v", caps)
		}
	})
	r := &sandboxRun{env: e, writable: []string{e.Dir, eventsDir}}
	for _, p := range []string{e.Dir, e.ConfigPath} {
		if err := os.Chown(p, sandboxUID, sandboxUID); err != nil {
			t.Fatal(err)
		}
	}

	capList := "-all"
	for _, c := range caps {
		capList += ",+" + c
	}
	var script strings.Builder
	script.WriteString("#!/bin/sh\n")
	if raise {
		script.WriteString("ulimit -l unlimited || exit 97\n")
	}
	fmt.Fprintf(&script, "exec %s --reuid=%d --regid=%d --clear-groups --no-new-privs --inh-caps=%s --ambient-caps=%s --bounding-set=%s",
		setpriv, sandboxUID, sandboxUID, capList, capList, capList)
	if trace {
		// -DD: strace runs as a grandchild in its own process group, so
		// that natd keeps the pid natdlab signals and the group signal
		// does not reach strace.
		r.trace = filepath.Join(e.Dir, "natd.strace")
		fmt.Fprintf(&script, " %s -DD -f -qq -o %s", strace, r.trace)
	}
	fmt.Fprintf(&script, " %s \"$@\"\n", natd)
	if err := os.WriteFile(wrapper, []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.startErr = e.Start(ctx)
	return r
}

// sandboxDir makes a directory that nobody may write to (and search).
func sandboxDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "xnat-sandbox-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, sandboxUID, sandboxUID); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestUnitSandbox runs natd with the unit's privileges, passes traffic
// through it both ways, scrapes it, asks for its status, reloads it with
// SIGHUP (as ExecReload does) and stops it with SIGTERM; then checks that
// every system call, socket family, namespace change and file write natd
// made is one the unit's sandbox allows.
func TestUnitSandbox(t *testing.T) {
	lab.Require(t)
	sa := requireTool(t, "systemd-analyze", "systemd")
	u := loadUnit(t)
	r := startSandboxed(t, u, unitCaps(t, u), true)
	if r.startErr != nil {
		t.Fatalf("natd does not start with the unit's capabilities %v: %v", u.words("Service", "AmbientCapabilities"), r.startErr)
	}
	e := r.env

	// Outbound TCP and UDP, inbound through the port forward.
	greeting, seen, err := natdlab.TCPHello(e.In1, e.Out, netip.AddrPortFrom(natdlab.Server, 7001))
	if err != nil || seen.Addr() != natdlab.PoolAddr {
		t.Errorf("TCP through the sandboxed natd: %q seen as %v: %v", greeting, seen, err)
	}
	if n, _, err := natdlab.UDPExchange(e.In2, e.Out, netip.AddrPortFrom(natdlab.Server, 7002), natdlab.In2, 8); err != nil || n != 8 {
		t.Errorf("UDP through the sandboxed natd: %d of 8 answered: %v", n, err)
	}
	if _, _, err := natdlab.TCPHelloVia(e.Out, e.In2, netip.AddrPortFrom(natdlab.In2, 80),
		netip.AddrPortFrom(natdlab.PoolAddr, natdlab.ForwardPort)); err != nil {
		t.Errorf("port forward through the sandboxed natd: %v", err)
	}
	if _, err := e.Scrape(); err != nil {
		t.Errorf("scrape: %v", err)
	}
	out, err := exec.Command(natctlPath(t), "--socket", e.ROSocket, "status", "-o", "json").CombinedOutput()
	var status struct {
		Workers []struct{ CPU int } `json:"workers"`
	}
	if err != nil || json.Unmarshal(out, &status) != nil || len(status.Workers) != 1 {
		t.Errorf("natctl status on the read-only socket: %v\n%s", err, out)
	}

	// ExecReload.
	if err := e.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.WaitLog(t, "msg=reloaded")

	if err := e.Stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("natd did not stop cleanly on SIGTERM: %v", err)
	}
	if !strings.Contains(e.Log(), "interfaces restored") {
		t.Errorf("natd did not report restoring the interfaces")
	}

	tr := readTrace(t, r.trace)
	allowed := syscallFilter(t, sa, u.words("Service", "SystemCallFilter"))
	var denied []string
	for name := range tr.syscalls {
		if !allowed[name] {
			denied = append(denied, name)
		}
	}
	slices.Sort(denied)
	if len(denied) > 0 {
		t.Errorf("natd made system calls SystemCallFilter=%v denies: %v", u.words("Service", "SystemCallFilter"), denied)
	}
	families := u.words("Service", "RestrictAddressFamilies")
	for f := range tr.families {
		if !slices.Contains(families, f) {
			t.Errorf("natd opened an %s socket; RestrictAddressFamilies=%v", f, families)
		}
	}
	for _, ns := range tr.namespaces {
		if !slices.Contains(u.words("Service", "RestrictNamespaces"), ns) {
			t.Errorf("natd entered or created a %s namespace; RestrictNamespaces=%v", ns, u.words("Service", "RestrictNamespaces"))
		}
	}
	for _, w := range tr.writes {
		ok := false
		for _, d := range r.writable {
			if strings.HasPrefix(w, d+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("natd wrote %s, outside its runtime and log directories (ProtectSystem=strict)", w)
		}
	}
	if tr.execs != 1 {
		t.Errorf("natd ran %d programs; it should exec nothing", tr.execs-1)
	}
	t.Logf("natd made %d distinct system calls, opened sockets of %v, entered namespaces %v, wrote %d paths",
		len(tr.syscalls), sortedKeys(tr.families), tr.namespaces, len(tr.writes))
}

// TestUnitCapabilities removes each of the unit's capabilities in turn:
// natd must fail to start without it, or the unit grants too much.
func TestUnitCapabilities(t *testing.T) {
	lab.Require(t)
	u := loadUnit(t)
	caps := unitCaps(t, u)
	without := func(drop ...string) []string {
		var out []string
		for _, c := range caps {
			if !slices.Contains(drop, c) {
				out = append(out, c)
			}
		}
		return out
	}
	for _, c := range caps {
		t.Run(c, func(t *testing.T) {
			r := startSandboxed(t, u, without(c), false)
			if r.startErr == nil {
				t.Errorf("natd starts without CAP_%s: drop it from %s and deploy/kubernetes", strings.ToUpper(c), unitFile)
				return
			}
			t.Logf("without CAP_%s: %s", strings.ToUpper(c), lastError(r.env.Log()))
		})
	}
}

func lastError(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "level=ERROR") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// trace is what an strace -f log says natd did.
type trace struct {
	syscalls   map[string]bool
	families   map[string]bool
	namespaces []string // CLONE_NEW* of setns, unshare and clone
	writes     []string // paths created, written, renamed, removed, bound
	execs      int
}

var (
	traceCall   = regexp.MustCompile(`^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)`)
	traceFamily = regexp.MustCompile(`\bsocket\((AF_[A-Z0-9]+)`)
	traceNS     = regexp.MustCompile(`CLONE_NEW[A-Z]+`)
	tracePath   = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
)

// readTrace waits for strace to record natd's exit_group (strace -DD does
// not always live to write "+++ exited"), and for the log to stop growing,
// then parses it.
func readTrace(t *testing.T, path string) *trace {
	t.Helper()
	var data []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		prev := len(data)
		data, _ = os.ReadFile(path)
		if len(data) == prev && bytes.Contains(data, []byte("exit_group(")) {
			break
		}
		if time.Now().After(deadline) {
			tail := data[max(0, len(data)-2000):]
			t.Fatalf("strace did not record natd's exit in %s (%d bytes); it ends:\n%s", path, len(data), tail)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return parseTrace(data)
}

func parseTrace(data []byte) *trace {
	tr := &trace{syscalls: map[string]bool{}, families: map[string]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := traceCall.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := m[1]
		tr.syscalls[name] = true
		switch name {
		case "execve", "execveat":
			if !strings.Contains(line, "resumed>") {
				tr.execs++
			}
		case "socket":
			if f := traceFamily.FindStringSubmatch(line); f != nil {
				tr.families[f[1]] = true
			}
		case "setns", "unshare", "clone", "clone3":
			for _, ns := range traceNS.FindAllString(line, -1) {
				short := map[string]string{"CLONE_NEWNET": "net", "CLONE_NEWNS": "mnt", "CLONE_NEWUTS": "uts",
					"CLONE_NEWIPC": "ipc", "CLONE_NEWUSER": "user", "CLONE_NEWPID": "pid", "CLONE_NEWCGROUP": "cgroup"}[ns]
				if !slices.Contains(tr.namespaces, short) {
					tr.namespaces = append(tr.namespaces, short)
				}
			}
		case "openat", "open", "creat":
			if strings.Contains(line, "O_WRONLY") || strings.Contains(line, "O_RDWR") || strings.Contains(line, "O_CREAT") || name == "creat" {
				tr.writes = append(tr.writes, firstPath(line))
			}
		case "bind":
			if strings.Contains(line, "AF_UNIX") {
				tr.writes = append(tr.writes, firstPath(line))
			}
		case "renameat", "renameat2", "rename", "unlinkat", "unlink", "mkdirat", "mkdir", "fchmodat", "chmod", "rmdir":
			tr.writes = append(tr.writes, allPaths(line)...)
		}
	}
	for i, w := range tr.writes {
		tr.writes[i] = filepath.Clean(w)
	}
	return tr
}

func firstPath(line string) string {
	p := allPaths(line)
	if len(p) == 0 {
		return "(unknown)"
	}
	return p[0]
}

func allPaths(line string) []string {
	var out []string
	for _, m := range tracePath.FindAllStringSubmatch(line, -1) {
		if strings.HasPrefix(m[1], "/") {
			out = append(out, m[1])
		}
	}
	return out
}

// syscallFilter expands a unit's SystemCallFilter allow list (groups like
// @system-service and single calls; later ~deny assignments remove) with
// systemd-analyze syscall-filter, the local systemd's own definition.
func syscallFilter(t *testing.T, sa string, filter []string) map[string]bool {
	t.Helper()
	out, err := exec.Command(sa, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := parseSyscallGroups(string(out))
	var expand func(name string, into map[string]bool, depth int)
	expand = func(name string, into map[string]bool, depth int) {
		if !strings.HasPrefix(name, "@") {
			into[name] = true
			return
		}
		members, ok := groups[name]
		if !ok || depth > 10 {
			t.Fatalf("unknown system call group %s", name)
		}
		for _, m := range members {
			expand(m, into, depth+1)
		}
	}
	allowed := map[string]bool{}
	deny := false
	for i, w := range filter {
		if i == 0 && strings.HasPrefix(w, "~") {
			t.Fatalf("SystemCallFilter starts with a deny list; the test expects an allow list")
		}
		if strings.HasPrefix(w, "~") {
			deny = true
			w = w[1:]
		}
		set := map[string]bool{}
		expand(w, set, 0)
		for s := range set {
			if deny {
				delete(allowed, s)
			} else {
				allowed[s] = true
			}
		}
	}
	if len(allowed) == 0 {
		t.Fatalf("SystemCallFilter %v allows nothing", filter)
	}
	return allowed
}

// parseSyscallGroups reads systemd-analyze syscall-filter's listing: a
// group name at the start of a line, its members indented below it.
func parseSyscallGroups(listing string) map[string][]string {
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(listing, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			cur = ""
		case strings.HasPrefix(trimmed, "#"):
		case !strings.HasPrefix(line, " ") && strings.HasPrefix(trimmed, "@"):
			cur = trimmed
			groups[cur] = nil
		case cur != "":
			groups[cur] = append(groups[cur], trimmed)
		}
	}
	return groups
}

func TestParseTrace(t *testing.T) {
	tr := parseTrace([]byte(`100  execve("/x/natd", ["natd"], 0x7ffe /* 3 vars */) = 0
100  socket(AF_XDP, SOCK_RAW|SOCK_CLOEXEC, 0) = 7
101  setns(9, CLONE_NEWNET <unfinished ...>
101  <... setns resumed>)                = 0
101  openat(AT_FDCWD, "/run/xnat/events.log", O_WRONLY|O_CREAT|O_APPEND|O_CLOEXEC, 0640) = 3
101  openat(AT_FDCWD, "/etc/xnat/natd.yaml", O_RDONLY|O_CLOEXEC) = 3
101  bind(5, {sa_family=AF_UNIX, sun_path="/run/xnat/.natd.sock.1.tmp"}, 30) = 0
101  renameat(AT_FDCWD, "/run/xnat/a", AT_FDCWD, "/run/xnat/b") = 0
101  --- SIGURG {si_signo=SIGURG} ---
100  +++ exited with 0 +++
`))
	for _, s := range []string{"execve", "socket", "setns", "openat", "bind", "renameat"} {
		if !tr.syscalls[s] {
			t.Errorf("syscall %s not found", s)
		}
	}
	if len(tr.syscalls) != 6 || tr.execs != 1 || !tr.families["AF_XDP"] || !slices.Equal(tr.namespaces, []string{"net"}) {
		t.Errorf("parsed %+v", tr)
	}
	want := []string{"/run/xnat/events.log", "/run/xnat/.natd.sock.1.tmp", "/run/xnat/a", "/run/xnat/b"}
	if !slices.Equal(tr.writes, want) {
		t.Errorf("writes %q, want %q", tr.writes, want)
	}
	g := parseSyscallGroups("@a\n    # comment\n    read\n    @b\n\n@b\n    write\n")
	if !slices.Equal(g["@a"], []string{"read", "@b"}) || !slices.Equal(g["@b"], []string{"write"}) {
		t.Errorf("groups %v", g)
	}
}
