package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/xnat/xnat/bench/lab"
)

// root is the repository root: the tests run in deploy/deploytest.
func root(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", dir, err)
	}
	return dir
}

// repoFile returns the path of a file given relative to the repository root.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	return filepath.Join(root(t), filepath.FromSlash(rel))
}

func readRepoFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requireTool returns the path of an external checker. Missing, it skips
// the test, except under CI=true, where the checkers are installed on
// purpose and a missing one is a failure.
func requireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	lab.Unavailable(t, "%s not found (install Debian package %s): %v", name, debianPackage, err)
	return ""
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// TestMain removes the binaries' directory (binaries) after the tests:
// it holds about 60 MB, and every run of the package made a new one.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		if err := os.RemoveAll(binDir); err != nil {
			fmt.Fprintln(os.Stderr, "deploytest: removing the binaries:", err)
		}
	}
	os.Exit(code)
}

// binaries builds natd, natctl and trafficgen once per test process into a
// directory every user may read and search, so that natd can run as an
// unprivileged user in the sandbox tests.
func binaries(t testing.TB) (dir string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "xnat-deploytest-bin-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"./cmd/natd", "./cmd/natctl", "./cmd/trafficgen")
		cmd.Dir = root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func natdPath(t testing.TB) string { return filepath.Join(binaries(t), "natd") }

func natctlPath(t testing.TB) string { return filepath.Join(binaries(t), "natctl") }

// helpFlag matches a flag line of Go's flag.PrintDefaults: "  -name value".
var helpFlag = regexp.MustCompile(`(?m)^  -([a-zA-Z0-9][a-zA-Z0-9-]*)`)

// parseGoFlagHelp returns the flag names a flag.FlagSet's usage lists.
func parseGoFlagHelp(help string) map[string]bool {
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		flags[m[1]] = true
	}
	return flags
}

var (
	natdFlagsOnce sync.Once
	natdFlagSet   map[string]bool
	natdFlagsErr  error
)

// natdFlags is the set of flags `natd --help` lists.
func natdFlags(t testing.TB) map[string]bool {
	t.Helper()
	natd := natdPath(t)
	natdFlagsOnce.Do(func() {
		var out bytes.Buffer
		cmd := exec.Command(natd, "--help")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			natdFlagsErr = fmt.Errorf("natd --help: %v\n%s", err, out.String())
			return
		}
		natdFlagSet = parseGoFlagHelp(out.String())
		if len(natdFlagSet) == 0 {
			natdFlagsErr = fmt.Errorf("natd --help lists no flags:\n%s", out.String())
		}
	})
	if natdFlagsErr != nil {
		t.Fatal(natdFlagsErr)
	}
	return natdFlagSet
}

// cmdFlag matches a flag in a command line: -name or --name, alone or
// followed by =value.
var cmdFlag = regexp.MustCompile(`(?:^|\s|")--?([a-zA-Z][a-zA-Z0-9-]*)`)

// flagsIn returns the flags a command line (or an argv joined with
// spaces) uses.
func flagsIn(cmdline string) []string {
	var out []string
	for _, m := range cmdFlag.FindAllStringSubmatch(cmdline, -1) {
		out = append(out, m[1])
	}
	return out
}

// checkNatdFlags fails the test for every flag of argv (natd's arguments)
// that natd --help does not list, and returns how many flags it checked.
func checkNatdFlags(t *testing.T, where string, args string) int {
	t.Helper()
	known := natdFlags(t)
	fl := flagsIn(args)
	for _, f := range fl {
		if !known[f] {
			t.Errorf("%s: natd has no flag -%s (natd --help lists %s)", where, f, strings.Join(sortedKeys(known), ", "))
		}
	}
	return len(fl)
}

// checkConfig runs natd --check-config on a configuration file.
func checkConfig(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command(natdPath(t), "--config", path, "--check-config").CombinedOutput()
	if err != nil {
		t.Errorf("natd --check-config %s: %v\n%s", path, err, out)
		return
	}
	if !strings.Contains(string(out), "configuration is valid") {
		t.Errorf("natd --check-config %s said:\n%s", path, out)
	}
}

// yamlDocs decodes every document of a YAML stream into generic values.
// yaml.v3 refuses duplicate keys, which a hand-edited manifest may have.
func yamlDocs(data []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// dig walks a decoded YAML or JSON value along map keys and list indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digString(v any, path ...any) string {
	s, _ := dig(v, path...).(string)
	return s
}

func digList(v any, path ...any) []any {
	l, _ := dig(v, path...).([]any)
	return l
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
