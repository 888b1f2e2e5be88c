package deploytest

import (
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestManifestsAreYAML parses every YAML file under deploy/ (every
// document of multi-document files) and the dashboard's JSON.
func TestManifestsAreYAML(t *testing.T) {
	n := 0
	err := filepath.WalkDir(repoFile(t, "deploy"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		docs, err := yamlDocs(data)
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if len(docs) == 0 {
			t.Errorf("%s holds no YAML document", p)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d YAML files found under deploy/", n)
	}
	t.Logf("%d YAML files parsed", n)
}

// TestExampleConfigs runs natd --check-config on every example.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob(repoFile(t, "deploy/examples/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
		checkConfig(t, f)
	}
	for _, want := range []string{"lab.yaml", "home.yaml", "cgnat.yaml"} {
		if !slices.Contains(names, want) {
			t.Errorf("deploy/examples/%s is missing", want)
		}
	}
}

// natdYAML is the part of natd.yaml the deployment checks look at.
type natdYAML struct {
	Interfaces struct {
		Inside, Outside struct {
			Name   string `yaml:"name"`
			Queues []int  `yaml:"queues"`
		}
	} `yaml:"interfaces"`
	Workers []struct {
		CPU int `yaml:"cpu"`
	} `yaml:"workers"`
	XDP struct {
		Frames    int `yaml:"frames"`
		FrameSize int `yaml:"frame_size"`
	} `yaml:"xdp"`
	NAT struct {
		InsidePrefixes []string `yaml:"inside_prefixes"`
		Pools          []struct {
			Addresses []string `yaml:"addresses"`
			Interface string   `yaml:"interface"` // masquerade: one address, the interface's
		} `yaml:"pools"`
		PortForwards []any             `yaml:"port_forwards"`
		Limits       map[string]int    `yaml:"limits"`
		Filtering    map[string]string `yaml:"filtering"`
		OnExhaustion string            `yaml:"on_exhaustion"`
	} `yaml:"nat"`
	Management struct {
		Socket         string `yaml:"socket"`
		ReadOnlySocket string `yaml:"readonly_socket"`
	} `yaml:"management"`
	Metrics struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	Events struct {
		File string `yaml:"file"`
	} `yaml:"events"`
}

func (c *natdYAML) poolAddresses(t *testing.T) int {
	n := 0
	for _, p := range c.NAT.Pools {
		if p.Interface != "" {
			n++
		}
		for _, a := range p.Addresses {
			if !strings.Contains(a, "/") {
				a += "/32"
			}
			pf, err := netip.ParsePrefix(a)
			if err != nil {
				t.Fatalf("pool address %q: %v", a, err)
			}
			n += 1 << (32 - pf.Bits())
		}
	}
	return n
}

// perAddress and registry are the Go heap of the external addresses
// (docs/operations.md, "Memory per pool address", measured by
// dataplane/nat's TestMemoryPerPoolAddress): about 154 bytes per address,
// beside the registry's fixed 1 MiB of slots.
const (
	perAddress = 154
	registry   = 1 << 20
)

// memoryEstimate is the sizing formula of docs/operations.md: the
// filter-permission table counts with address-dependent filtering, the
// rule session table with limits.inbound_sessions_per_rule.
func (c *natdYAML) memoryEstimate(t *testing.T) float64 {
	adf := false
	for _, f := range c.NAT.Filtering {
		adf = adf || f == "address-dependent"
	}
	m := tableBytes(t, adf)
	sessions, subs := c.NAT.Limits["max_sessions"], c.NAT.Limits["max_subscribers"]
	if sessions == 0 {
		sessions = 1 << 20
	}
	if subs == 0 {
		subs = 1 << 16
	}
	frames, size := c.XDP.Frames, c.XDP.FrameSize
	if frames == 0 {
		frames = 8192
	}
	if size == 0 {
		size = 2048
	}
	workers := max(len(c.Interfaces.Inside.Queues), 1)
	rules := 0.0
	if c.NAT.Limits["inbound_sessions_per_rule"] != 0 {
		in, ok := c.NAT.Limits["inbound_sessions"]
		if !ok {
			in = 1 << 18 // the default
		}
		if in == 0 || in > sessions {
			in = sessions + 1
		}
		rules = tableBytes(t, true).Permissions * float64(in+workers) // a count table, as the permissions'
	}
	return rules + m.PerSessionSlot()*float64(sessions) + m.Subscribers*float64(subs) + float64(workers*2*frames*size) +
		float64(c.poolAddresses(t))*perAddress + registry + 19*1024*1024
}

func loadExample(t *testing.T, name string) *natdYAML {
	t.Helper()
	var c natdYAML
	if err := yaml.Unmarshal(readRepoFile(t, "deploy/examples/"+name), &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestExampleShapes keeps the home and CGNAT examples what the issue asks
// them to be.
func TestExampleShapes(t *testing.T) {
	home := loadExample(t, "home.yaml")
	if n := home.poolAddresses(t); n != 1 {
		t.Errorf("home.yaml: %d public addresses, want one", n)
	}
	if len(home.NAT.PortForwards) < 2 {
		t.Errorf("home.yaml: %d port forwards, want a few", len(home.NAT.PortForwards))
	}
	if s := home.NAT.Limits["max_sessions"]; s == 0 || s > 1<<16 {
		t.Errorf("home.yaml: max_sessions %d, want a small table", s)
	}

	cg := loadExample(t, "cgnat.yaml")
	if !slices.Contains(cg.NAT.InsidePrefixes, "100.64.0.0/10") {
		t.Errorf("cgnat.yaml: inside prefixes %v, want 100.64.0.0/10 (RFC 6598)", cg.NAT.InsidePrefixes)
	}
	if n := cg.poolAddresses(t); n < 128 {
		t.Errorf("cgnat.yaml: %d pool addresses, want many", n)
	}
	for _, l := range []string{"sessions_per_subscriber", "ports_per_subscriber"} {
		if cg.NAT.Limits[l] == 0 {
			t.Errorf("cgnat.yaml: no per-subscriber limit %s", l)
		}
	}
	if cg.NAT.OnExhaustion == "" || cg.NAT.OnExhaustion == "none" {
		t.Errorf("cgnat.yaml: on_exhaustion %q", cg.NAT.OnExhaustion)
	}
	if len(cg.Interfaces.Inside.Queues) < 2 || len(cg.Workers) != len(cg.Interfaces.Inside.Queues) {
		t.Errorf("cgnat.yaml: %d queues and %d workers, want several of each", len(cg.Interfaces.Inside.Queues), len(cg.Workers))
	}
	t.Logf("estimated memory: home.yaml %.0f MiB, cgnat.yaml %.2f GiB", home.memoryEstimate(t)/(1<<20), cg.memoryEstimate(t)/(1<<30))
}

const k8sDir = "deploy/kubernetes"

type k8sObjects map[string][]map[string]any // kind -> objects

func loadKubernetes(t *testing.T) (k8sObjects, map[string]any) {
	t.Helper()
	kust, err := yamlDocs(readRepoFile(t, k8sDir+"/kustomization.yaml"))
	if err != nil || len(kust) != 1 {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	objs := k8sObjects{}
	var listed []string
	for _, r := range digList(kust[0], "resources") {
		name, _ := r.(string)
		listed = append(listed, name)
		docs, err := yamlDocs(readRepoFile(t, k8sDir+"/"+name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, d := range docs {
			kind, api := digString(d, "kind"), digString(d, "apiVersion")
			if kind == "" || api == "" || digString(d, "metadata", "name") == "" {
				t.Errorf("%s: an object without kind, apiVersion or name", name)
			}
			if kind != "Namespace" && digString(d, "metadata", "namespace") != digString(kust[0], "namespace") {
				t.Errorf("%s: %s %s is not in namespace %s", name, kind, digString(d, "metadata", "name"), digString(kust[0], "namespace"))
			}
			objs[kind] = append(objs[kind], d)
		}
	}
	files, _ := filepath.Glob(repoFile(t, k8sDir+"/*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(listed, b) {
			t.Errorf("%s is not listed in kustomization.yaml", b)
		}
	}
	return objs, kust[0]
}

func one(t *testing.T, objs k8sObjects, kind string) map[string]any {
	t.Helper()
	if len(objs[kind]) != 1 {
		t.Fatalf("%d objects of kind %s, want one", len(objs[kind]), kind)
	}
	return objs[kind][0]
}

func labelsMatch(selector, labels any) bool {
	sel, _ := selector.(map[string]any)
	lab, _ := labels.(map[string]any)
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if lab[k] != v {
			return false
		}
	}
	return true
}

// quantity parses the Kubernetes memory quantities the manifests use.
func quantity(t *testing.T, q string) float64 {
	for suffix, mult := range map[string]float64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 1e3, "M": 1e6, "G": 1e9} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * mult
		}
	}
	v, err := strconv.ParseFloat(q, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return v
}

// TestKubernetesManifests checks the DaemonSet against natd (flags,
// configuration, capabilities, probes, memory) and the Service and
// ServiceMonitor against the DaemonSet and the alert rules.
func TestKubernetesManifests(t *testing.T) {
	objs, kust := loadKubernetes(t)
	ds := one(t, objs, "DaemonSet")
	cm := one(t, objs, "ConfigMap")
	svc := one(t, objs, "Service")
	sm := one(t, objs, "ServiceMonitor")
	pod := dig(ds, "spec", "template", "spec")

	if dig(pod, "hostNetwork") != true {
		t.Errorf("the DaemonSet does not use the host network")
	}
	if !labelsMatch(dig(ds, "spec", "selector", "matchLabels"), dig(ds, "spec", "template", "metadata", "labels")) {
		t.Errorf("the DaemonSet's selector does not match its pods")
	}
	var c map[string]any
	for _, x := range digList(pod, "containers") {
		if digString(x, "name") == "natd" {
			c, _ = x.(map[string]any)
		}
	}
	if c == nil {
		t.Fatalf("no container natd")
	}

	// The command: natd's path in the image, its flags, its config file.
	var argv []string
	for _, a := range append(digList(c, "command"), digList(c, "args")...) {
		s, _ := a.(string)
		argv = append(argv, s)
	}
	if len(argv) == 0 || argv[0] != imageNatd {
		t.Fatalf("the container runs %v, not %s", argv, imageNatd)
	}
	if checkNatdFlags(t, "DaemonSet natd", strings.Join(argv[1:], " ")) == 0 {
		t.Errorf("the container passes natd no flag")
	}
	i := slices.Index(argv, "--config")
	if i < 0 || i+1 >= len(argv) {
		t.Fatalf("the container does not pass --config")
	}
	configPath := argv[i+1]

	// The configuration comes from the ConfigMap, mounted as a directory.
	mounts := map[string]string{} // mount path -> volume
	for _, m := range digList(c, "volumeMounts") {
		mounts[digString(m, "mountPath")] = digString(m, "name")
	}
	vol := mounts[path.Dir(configPath)]
	var cmVolume bool
	for _, v := range digList(pod, "volumes") {
		if digString(v, "name") == vol && digString(v, "configMap", "name") == digString(cm, "metadata", "name") {
			cmVolume = true
		}
	}
	if !cmVolume {
		t.Errorf("%s is not on a volume of ConfigMap %s", path.Dir(configPath), digString(cm, "metadata", "name"))
	}
	data := digString(cm, "data", path.Base(configPath))
	if data == "" {
		t.Fatalf("ConfigMap %s has no key %s", digString(cm, "metadata", "name"), path.Base(configPath))
	}
	tmp := filepath.Join(t.TempDir(), "natd.yaml")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, tmp)
	var cfg natdYAML
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatal(err)
	}
	for what, p := range map[string]string{"management.socket": cfg.Management.Socket, "management.readonly_socket": cfg.Management.ReadOnlySocket, "events.file": cfg.Events.File} {
		if p != "" && mounts[path.Dir(p)] == "" {
			t.Errorf("%s %s is not on a volume: the root file system is read-only", what, p)
		}
	}

	// Capabilities: the unit's, plus IPC_LOCK in place of LimitMEMLOCK.
	sc := dig(c, "securityContext")
	if dig(sc, "privileged") == true || dig(sc, "allowPrivilegeEscalation") != false || dig(sc, "readOnlyRootFilesystem") != true {
		t.Errorf("securityContext %v: want privileged false, allowPrivilegeEscalation false, readOnlyRootFilesystem true", sc)
	}
	if d := digList(sc, "capabilities", "drop"); len(d) != 1 || d[0] != "ALL" {
		t.Errorf("capabilities.drop = %v, want [ALL]", d)
	}
	var add []string
	for _, a := range digList(sc, "capabilities", "add") {
		s, _ := a.(string)
		add = append(add, "CAP_"+s)
	}
	want := append(loadUnit(t).words("Service", "AmbientCapabilities"), "CAP_IPC_LOCK")
	slices.Sort(add)
	slices.Sort(want)
	if !slices.Equal(add, slices.Compact(want)) {
		t.Errorf("capabilities.add %v, want the unit's plus CAP_IPC_LOCK: %v", add, want)
	}

	// Probes and scraping reach natd's metrics listener.
	host, portStr, ok := strings.Cut(cfg.Metrics.Listen, ":")
	if !ok || (host != "0.0.0.0" && host != "") {
		t.Errorf("metrics.listen %q is not reachable from the kubelet and Prometheus", cfg.Metrics.Listen)
	}
	port, _ := strconv.Atoi(portStr)
	portName := ""
	for _, p := range digList(c, "ports") {
		if n, _ := dig(p, "containerPort").(int); n == port {
			portName = digString(p, "name")
		}
	}
	if portName == "" {
		t.Fatalf("no container port %d (metrics.listen)", port)
	}
	for probe, path := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := digString(c, probe, "httpGet", "path"); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		if p := dig(c, probe, "httpGet", "port"); p != portName && p != port {
			t.Errorf("%s port %v is not the metrics port", probe, p)
		}
	}
	if a := digString(ds, "spec", "template", "metadata", "annotations", "prometheus.io/port"); a != portStr {
		t.Errorf("prometheus.io/port %q, want %s", a, portStr)
	}

	// Memory: the limit covers the sizing formula for this configuration.
	limit := quantity(t, digString(c, "resources", "limits", "memory"))
	if req := digString(c, "resources", "requests", "memory"); quantity(t, req) != limit {
		t.Errorf("memory request %s != limit: not Guaranteed QoS", req)
	}
	if est := cfg.memoryEstimate(t); est > limit {
		t.Errorf("memory limit %.0f MiB is below the sizing estimate %.0f MiB", limit/(1<<20), est/(1<<20))
	} else {
		t.Logf("memory limit %.0f MiB, estimate %.0f MiB", limit/(1<<20), est/(1<<20))
	}

	// Service -> pods, ServiceMonitor -> Service, job label -> alert rules.
	if !labelsMatch(dig(svc, "spec", "selector"), dig(ds, "spec", "template", "metadata", "labels")) {
		t.Errorf("the Service does not select natd's pods")
	}
	svcPort := ""
	for _, p := range digList(svc, "spec", "ports") {
		if dig(p, "targetPort") == portName || dig(p, "targetPort") == port {
			svcPort = digString(p, "name")
		}
	}
	if svcPort == "" {
		t.Errorf("the Service has no port to natd's metrics port")
	}
	if !labelsMatch(dig(sm, "spec", "selector", "matchLabels"), dig(svc, "metadata", "labels")) {
		t.Errorf("the ServiceMonitor does not select the Service")
	}
	if ep := digString(sm, "spec", "endpoints", 0, "port"); ep != svcPort {
		t.Errorf("the ServiceMonitor scrapes port %q, the Service names it %q", ep, svcPort)
	}
	job := digString(svc, "metadata", "labels", digString(sm, "spec", "jobLabel"))
	if !strings.Contains(string(readRepoFile(t, alertsFile)), `job="`+job+`"`) {
		t.Errorf("the ServiceMonitor's job is %q, which the alert rules do not select", job)
	}

	// The image the DaemonSet runs is the one kustomize rewrites.
	image, _, _ := strings.Cut(digString(c, "image"), ":")
	if digString(kust, "images", 0, "name") != image {
		t.Errorf("kustomization images[0] is %q, the DaemonSet runs %q", digString(kust, "images", 0, "name"), image)
	}
}
