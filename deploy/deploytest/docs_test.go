package deploytest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/dataplane/drop"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/client"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

// section returns the Markdown from a heading line to the next heading of
// the same or a higher level.
func section(t *testing.T, md, heading string) string {
	t.Helper()
	start := strings.Index(md, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("%s has no heading %q", operationsDoc, heading)
	}
	level := strings.Count(strings.Fields(heading)[0], "#")
	rest := md[start+len(heading)+2:]
	for _, h := range regexp.MustCompile(`(?m)^#{1,6} `).FindAllStringIndex(rest, -1) {
		if h[1]-h[0]-1 <= level {
			return rest[:h[0]]
		}
	}
	return rest
}

// TestOperationsCoversEveryDropReason checks that the troubleshooting table
// of docs/operations.md has a row for every drop reason natd counts, and
// none for a reason that does not exist.
func TestOperationsCoversEveryDropReason(t *testing.T) {
	table := section(t, string(readRepoFile(t, operationsDoc)), "### Drop reasons")
	row := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\| (.+) \\| (.+) \\|$")
	rows := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		if rows[m[1]] {
			t.Errorf("reason %s has two rows", m[1])
		}
		rows[m[1]] = true
	}
	names := map[string]bool{}
	for r := drop.Reason(1); r < drop.NumReasons; r++ {
		names[r.String()] = true
		if !rows[r.String()] {
			t.Errorf("%s does not explain drop reason %s (%d)", operationsDoc, r, r)
		}
	}
	for r := range rows {
		if !names[r] {
			t.Errorf("%s explains %s, which is not a drop reason", operationsDoc, r)
		}
	}
}

// tableBytes returns the memory per slot of the engine's tables, as it
// creates them, with UDP and TCP filtered address-dependently if adf (which
// adds the filter-permission table).
func tableBytes(t *testing.T, adf bool) nat.TableMemory {
	c := nat.DefaultConfig()
	c.InsidePrefixes = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Pools = []nat.Pool{{Name: "main", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.0.100/32")}}}
	c.Limits.MaxSessions = 1 << 16
	c.Limits.MaxSubscribers = 1024
	if adf {
		c.Filtering[nat.UDP], c.Filtering[nat.TCP] = nat.FilterAddressDependent, nat.FilterAddressDependent
	}
	e, err := nat.New(c, nat.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	return e.TableMemory()
}

// TestOperationsSizing checks the bytes per session the sizing section
// quotes against the engine's own table layout.
func TestOperationsSizing(t *testing.T) {
	m, adf := tableBytes(t, false), tableBytes(t, true)
	if m.Permissions != 0 || adf.Permissions == 0 {
		t.Fatalf("filter-permission table: %.1f B per slot by default, %.1f with address-dependent filtering", m.Permissions, adf.Permissions)
	}
	doc := section(t, string(readRepoFile(t, operationsDoc)), "### Memory")
	for _, want := range []string{
		fmt.Sprintf("| session table | %.1f B × `limits.max_sessions`", m.Sessions),
		fmt.Sprintf("| binding table | %.1f B × `limits.max_sessions`", m.Bindings),
		fmt.Sprintf("| filter-permission table | %.1f B × `limits.max_sessions`", adf.Permissions),
		fmt.Sprintf("| subscriber table | %.1f B × `limits.max_subscribers`", m.Subscribers),
		fmt.Sprintf("| port table | %.1f × %.1f B × `limits.max_sessions` = %.1f B per session", m.PortsPerSessionSlot, m.Ports/m.PortsPerSessionSlot, m.Ports),
		fmt.Sprintf("%.1f bytes per session slot by the tables' layout", m.PerSessionSlot()),
		fmt.Sprintf("%.1f with address-dependent filtering", adf.PerSessionSlot()),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("the sizing section does not say %q (the engine's tables: %+v)", want, m)
		}
	}
}

// A command line starts a line, an inline code span, or follows a path,
// "&& ", "-- " (kubectl exec) or "sudo ".
const cmdStart = `(?m)(?:^\s*|` + "`" + `|/|&& |-- |sudo )`

var (
	docNatd   = regexp.MustCompile(cmdStart + `natd(?:\.new|\.prev)?((?: +--?[a-z][a-z-]*(?: +[^\s` + "`" + `|-][^\s` + "`" + `|]*)?)+)`)
	docNatctl = regexp.MustCompile(cmdStart + `natctl((?: +[^\s` + "`" + `|#)]+)+)`)
	cobraCmd  = regexp.MustCompile(`(?m)^  ([a-z][a-z-]*) {2,}`)
	cobraFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-zA-Z], )?--([a-z][a-z-]*)`)
)

// TestOperationsCommands checks the natd and natctl command lines of
// docs/operations.md: natd's flags exist, and natctl's commands and their
// flags exist.
func TestOperationsCommands(t *testing.T) {
	doc := string(readRepoFile(t, operationsDoc))
	n := 0
	for _, m := range docNatd.FindAllStringSubmatch(doc, -1) {
		n += checkNatdFlags(t, operationsDoc+": natd"+m[1], m[1])
	}
	if n == 0 {
		t.Errorf("no natd flag found in %s: the check checked nothing", operationsDoc)
	}

	natctl := natctlPath(t)
	help := func(args ...string) string {
		out, err := exec.Command(natctl, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Fatalf("natctl %v --help: %v\n%s", args, err, out)
		}
		return string(out)
	}
	commands := map[string]bool{}
	for _, m := range cobraCmd.FindAllStringSubmatch(help(), -1) {
		commands[m[1]] = true
	}
	checked := 0
	for _, m := range docNatctl.FindAllStringSubmatch(doc, -1) {
		words := strings.Fields(m[1])
		cmd := ""
		for i := 0; i < len(words); i++ {
			w := words[i]
			if strings.HasPrefix(w, "-") {
				if w == "--addr" || w == "--cert" || w == "--key" || w == "--ca" || w == "--socket" || w == "-o" || w == "--server-name" {
					i++ // a global flag's value
				}
				continue
			}
			cmd = w
			break
		}
		if !regexp.MustCompile(`^[a-z]+$`).MatchString(cmd) {
			continue // "natctl ..." in prose
		}
		if !commands[cmd] {
			t.Errorf("%s: natctl has no command %q (in %q)", operationsDoc, cmd, "natctl"+m[1])
			continue
		}
		// The flags are the subcommand's when the line names one
		// ("natctl sessions flush --all"), else the command's.
		path := []string{cmd}
		subs := map[string]bool{}
		for _, m := range cobraCmd.FindAllStringSubmatch(help(cmd), -1) {
			subs[m[1]] = true
		}
		for _, w := range words {
			if subs[w] && w != cmd {
				path = append(path, w)
				break
			}
		}
		flags := map[string]bool{}
		for _, f := range cobraFlag.FindAllStringSubmatch(help(path...), -1) {
			flags[f[1]] = true
		}
		for _, w := range words {
			if f, ok := strings.CutPrefix(w, "--"); ok {
				f, _, _ = strings.Cut(f, "=")
				if !flags[f] {
					t.Errorf("%s: natctl %s has no flag --%s", operationsDoc, strings.Join(path, " "), f)
				}
			}
		}
		checked++
	}
	if checked == 0 {
		t.Errorf("no natctl command found in %s: the check checked nothing", operationsDoc)
	}
	t.Logf("checked %d natd flags and %d natctl command lines", n, checked)
}

// fencedBlocks returns the fenced code blocks of a Markdown file with their
// language.
func fencedBlocks(md string) (langs, bodies []string) {
	re := regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```$")
	for _, m := range re.FindAllStringSubmatch(md, -1) {
		langs = append(langs, m[1])
		bodies = append(bodies, m[2])
	}
	return langs, bodies
}

// TestOperationsYAMLBlocks parses every YAML block of the document; a
// management snippet must be a valid management section of natd.yaml.
func TestOperationsYAMLBlocks(t *testing.T) {
	langs, bodies := fencedBlocks(string(readRepoFile(t, operationsDoc)))
	n := 0
	for i, lang := range langs {
		if lang != "yaml" {
			continue
		}
		n++
		var v map[string]any
		if err := yaml.Unmarshal([]byte(bodies[i]), &v); err != nil {
			t.Errorf("YAML block %d does not parse: %v\n%s", n, err, bodies[i])
			continue
		}
		if _, ok := v["management"]; ok {
			// Complete it into a configuration natd must accept.
			cfg := "interfaces:\n  inside: {name: in0}\n  outside: {name: out0}\nnat:\n  inside_prefixes: [10.0.0.0/8]\n  pools: [{name: p, addresses: [198.51.100.1]}]\n" + bodies[i]
			path := filepath.Join(t.TempDir(), "natd.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			checkConfig(t, path)
		}
	}
	if n == 0 {
		t.Errorf("no YAML block found")
	}
}

// TestOperationsCertificates runs the document's certificate commands and
// serves the management API with what they made, with the admin
// identities of deploy/examples/cgnat.yaml: the admin client may change the
// configuration, the read-only one may only look, and a certificate from
// another CA is refused.
func TestOperationsCertificates(t *testing.T) {
	requireTool(t, "openssl", "openssl")
	langs, bodies := fencedBlocks(string(readRepoFile(t, operationsDoc)))
	script := ""
	for i, lang := range langs {
		if lang == "sh" && strings.HasPrefix(bodies[i], "# issue-certificates") {
			script = bodies[i]
		}
	}
	if script == "" {
		t.Fatalf("%s has no ```sh block starting with # issue-certificates", operationsDoc)
	}
	dir := t.TempDir()
	run := func(d, s string) {
		cmd := exec.Command("sh", "-eu", "-c", s)
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the certificate commands failed: %v\n%s", err, out)
		}
	}
	run(dir, script)
	other := t.TempDir() // a second CA, for a client natd must refuse
	run(other, script)
	f := func(name string) string { return filepath.Join(dir, name) }

	var example struct {
		Management struct {
			AdminIdentities []string `yaml:"admin_identities"`
		} `yaml:"management"`
	}
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/examples/cgnat.yaml"), &example); err != nil {
		t.Fatal(err)
	}
	core := mgmttest.Start(t, mgmttest.Options{})
	srv, err := mgmt.NewServer(core, mgmt.ServerOptions{
		TCPAddr: "127.0.0.1:0", TLSCertFile: f("server.crt"), TLSKeyFile: f("server.key"), TLSClientCAFile: f("ca.crt"),
		AdminIdentities: example.Management.AdminIdentities,
	})
	if err != nil {
		t.Fatalf("natd's management server refuses the certificates: %v", err)
	}
	mgmttest.Serve(t, srv.Serve)

	addPool := func(certDir, who string) error {
		c, err := client.Dial(client.Options{
			Addr:     srv.TCPAddr().String(),
			CertFile: filepath.Join(certDir, who+".crt"), KeyFile: filepath.Join(certDir, who+".key"),
			CAFile: f("ca.crt"), ServerName: "nat1.example.net",
		})
		if err != nil {
			return err
		}
		defer c.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		if _, err := c.GetStatus(cctx, &xnatv1.GetStatusRequest{}); err != nil {
			return fmt.Errorf("GetStatus: %w", err)
		}
		_, err = c.AddPool(cctx, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "by-" + who, Prefixes: []string{"198.18.7.0/30"}}})
		return err
	}
	if err := addPool(dir, "alice"); err != nil {
		t.Errorf("the admin certificate (alice, OU=netops) could not add a pool: %v", err)
	}
	err = addPool(dir, "noc")
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("the read-only certificate (noc): AddPool returned %v, want PermissionDenied", err)
	}
	err = addPool(other, "alice")
	var ce *client.ConnError
	if err == nil || !errors.As(err, &ce) {
		t.Errorf("a certificate from another CA: %v, want a refused connection", err)
	}
}
