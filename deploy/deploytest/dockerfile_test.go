package deploytest

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const (
	dockerfile = "deploy/container/Dockerfile"
	// imageNatd is where the image installs natd (the DaemonSet runs it).
	imageNatd = "/usr/local/bin/natd"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
	line int
}

func parseDockerfile(data string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(strings.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(strings.TrimSpace(s))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

// dockerignore matches paths (relative to the context, slash-separated)
// with the patterns of a .dockerignore file: *, ?, and ** for any number
// of directories. A pattern that matches a directory excludes everything
// below it. Exceptions (!pattern) are not used and not supported.
type dockerignore []*regexp.Regexp

func parseDockerignore(t *testing.T, data string) dockerignore {
	var d dockerignore
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf("dockerignore exception %q: not supported by this check", line)
		}
		var re strings.Builder
		re.WriteString("^")
		p := strings.TrimPrefix(path.Clean(line), "/")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(?:.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(?:/.*)?$")
		d = append(d, regexp.MustCompile(re.String()))
	}
	return d
}

func (d dockerignore) excluded(rel string) bool {
	for _, re := range d {
		if re.MatchString(rel) {
			return true
		}
	}
	return false
}

// copyTree copies src (a file or directory of the repository) to dst,
// leaving out what the dockerignore excludes.
func copyTree(t *testing.T, repo, rel, dst string, ign dockerignore) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(repo, rel), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, _ := filepath.Rel(repo, p)
		r = filepath.ToSlash(r)
		if ign.excluded(r) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		sub, _ := filepath.Rel(filepath.Join(repo, rel), p)
		target := filepath.Join(dst, sub)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, in)
		n++
		return err
	})
	if err != nil {
		t.Fatalf("copy %s: %v", rel, err)
	}
	return n
}

var goDirective = regexp.MustCompile(`(?m)^go (\d+\.\d+)`)

// TestDockerfile replays the image build without a container engine: the
// build stage's COPY sources are copied (through Dockerfile.dockerignore)
// into a scratch directory standing for /src and its RUN commands run
// there, so a package missing from the COPY list fails the build here. The
// final stage must copy the three binaries the build made, its entry point
// must be natd with flags natd has, and the binaries must be static for
// the distroless base.
func TestDockerfile(t *testing.T) {
	repo := root(t)
	ins := parseDockerfile(string(readRepoFile(t, dockerfile)))
	ign := parseDockerignore(t, string(readRepoFile(t, dockerfile+".dockerignore")))
	if !ign.excluded("flowtable/flowtable.test") || !ign.excluded("bench/results/x/y.json") || ign.excluded("flowtable/table.go") {
		t.Fatalf("the dockerignore matcher is wrong")
	}

	args := map[string]string{}
	stage := -1
	var stages []string
	scratch := t.TempDir()
	src := filepath.Join(scratch, "src")
	out := filepath.Join(scratch, "out")
	workdir := "/"
	installed := map[string]string{} // image path -> file in scratch
	var entrypoint, cmdArgs []string
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { return args[k] })
	}
	// The build stage's absolute paths live under scratch.
	hostPath := func(p string) string {
		p = expand(p)
		if !path.IsAbs(p) {
			p = path.Join(workdir, p)
		}
		switch {
		case p == "/src" || strings.HasPrefix(p, "/src/"):
			return filepath.Join(src, strings.TrimPrefix(p, "/src"))
		case p == "/out" || strings.HasPrefix(p, "/out/"):
			return filepath.Join(out, strings.TrimPrefix(p, "/out"))
		}
		t.Fatalf("build stage path %s outside /src and /out", p)
		return ""
	}
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			if _, set := args[k]; !set || v != "" {
				args[k] = v
			}
		case "FROM":
			stage++
			f := strings.Fields(expand(in.args))
			name := ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				name = f[2]
			}
			stages = append(stages, name)
			if strings.HasPrefix(f[0], "golang:") {
				m := goDirective.FindStringSubmatch(string(readRepoFile(t, "go.mod")))
				if m == nil || !strings.HasPrefix(strings.TrimPrefix(f[0], "golang:"), m[1]) {
					t.Errorf("line %d: %s does not match go.mod's go %v", in.line, f[0], m)
				}
			}
			workdir = "/"
		case "WORKDIR":
			workdir = expand(in.args)
		case "COPY":
			f := strings.Fields(in.args)
			from := ""
			if strings.HasPrefix(f[0], "--from=") {
				from = strings.TrimPrefix(f[0], "--from=")
				f = f[1:]
			}
			dst := expand(f[len(f)-1])
			for _, s := range f[:len(f)-1] {
				s = expand(s)
				if from != "" {
					if !slices.Contains(stages, from) {
						t.Errorf("line %d: COPY --from=%s names no stage", in.line, from)
					}
					file := hostPath(s)
					if _, err := os.Stat(file); err != nil {
						t.Errorf("line %d: the build stage made no %s", in.line, s)
						continue
					}
					installed[path.Join(dst, path.Base(s))] = file
					continue
				}
				rel := path.Clean(strings.TrimPrefix(s, "./"))
				if _, err := os.Stat(filepath.Join(repo, rel)); err != nil {
					t.Errorf("line %d: COPY source %s does not exist in the repository", in.line, s)
					continue
				}
				if stage == 0 {
					target := hostPath(dst)
					if fi, err := os.Stat(filepath.Join(repo, rel)); err == nil && !fi.IsDir() {
						target = filepath.Join(target, path.Base(rel))
					}
					copyTree(t, repo, rel, target, ign)
				}
			}
		case "RUN":
			if stage != 0 {
				t.Errorf("line %d: RUN in the final stage (distroless has no shell)", in.line)
				continue
			}
			script := expand(in.args)
			script = strings.ReplaceAll(script, "/out/", out+"/")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = hostPath(workdir)
			if o, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("line %d: RUN %s: %v\n%s", in.line, in.args, err, o)
			}
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(in.args), &v); err != nil {
				t.Errorf("line %d: %s %s is not an exec-form JSON array: %v", in.line, in.cmd, in.args, err)
			}
			if in.cmd == "ENTRYPOINT" {
				entrypoint = v
			} else {
				cmdArgs = v
			}
		}
	}

	for _, bin := range []string{"natd", "natctl", "trafficgen"} {
		file, ok := installed["/usr/local/bin/"+bin]
		if !ok {
			t.Errorf("the image does not install /usr/local/bin/%s", bin)
			continue
		}
		f, err := elf.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: the distroless static base has no C library", bin)
			}
		}
		f.Close()
	}
	if len(entrypoint) != 1 || entrypoint[0] != imageNatd {
		t.Errorf("ENTRYPOINT %v, want [%s]", entrypoint, imageNatd)
	}
	if checkNatdFlags(t, "Dockerfile CMD", strings.Join(cmdArgs, " ")) == 0 {
		t.Errorf("CMD passes natd no flag")
	}
	if natd, ok := installed[imageNatd]; ok {
		if o, err := exec.Command(natd, "--version").CombinedOutput(); err != nil || !strings.Contains(string(o), "natd dev") {
			t.Errorf("the image's natd --version: %v: %s", err, o)
		}
	}
}

func TestParseDockerfile(t *testing.T) {
	ins := parseDockerfile("# c\nFROM a AS b\nRUN x \\\n  # inner\n  y\nCOPY a b\n")
	if len(ins) != 3 || ins[1].cmd != "RUN" || ins[1].args != "x y" || ins[1].line != 3 || ins[2].line != 6 {
		t.Errorf("parsed %+v", ins)
	}
}
