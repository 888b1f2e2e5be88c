package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// A build is one Build's folder, made once per test process.
type build struct {
	once sync.Once
	dir  string
	err  error
}

var builds sync.Map // the packages, space-separated -> *build

// Build builds the Go packages pkgs (import paths, or paths relative to
// the test's package folder) into one temporary folder, once per test
// process for the same list, and returns the folder; each binary is named
// after its package's last element. The tests that run the daemons and
// tools as processes share it; their TestMain calls RemoveBuilds after
// m.Run.
func Build(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	v, _ := builds.LoadOrStore(strings.Join(pkgs, " "), &build{})
	b := v.(*build)
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "xnat-test-bin-"); b.err != nil {
			return
		}
		b.err = goBuild(b.dir, pkgs)
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.dir
}

// BuildTemp builds pkgs as Build does, but into a folder of tb.TempDir,
// gone when the test ends, for every caller anew: for a test binary that
// builds its program once, with no TestMain to call RemoveBuilds.
func BuildTemp(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := goBuild(dir, pkgs); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// goBuild builds each of pkgs into the existing folder dir.
func goBuild(dir string, pkgs []string) error {
	for _, pkg := range pkgs {
		if out, err := exec.Command("go", "build", "-o", dir, pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// RemoveBuilds removes the folders Build made.
func RemoveBuilds() {
	builds.Range(func(_, v any) bool {
		if b := v.(*build); b.dir != "" {
			os.RemoveAll(b.dir)
		}
		return true
	})
}
