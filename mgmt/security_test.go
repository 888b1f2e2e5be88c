package mgmt_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xnat/xnat/bench/lab"
	"github.com/xnat/xnat/dataplane/nat"
	"github.com/xnat/xnat/internal/wait"
	"github.com/xnat/xnat/mgmt"
	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/client"
	"github.com/xnat/xnat/mgmt/mgmttest"
)

func TestSocketPermissions(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		path string
		mode os.FileMode
	}{{e.sock, 0o600}, {e.rosk, 0o660}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != tc.mode {
			t.Errorf("%s: mode %v, want socket %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	// No temporary names are left behind.
	ents, _ := os.ReadDir(filepath.Dir(e.sock))
	if len(ents) != 2 {
		t.Errorf("socket directory holds %d entries, want 2", len(ents))
	}

	// Configurable modes.
	dir := t.TempDir()
	core := newCore(t)
	srv, err := mgmt.NewServer(core, mgmt.ServerOptions{
		SocketPath: filepath.Join(dir, "a.sock"), ReadOnlySocketPath: filepath.Join(dir, "r.sock"),
		ReadOnlySocketMode: 0o666, ReadOnlySocketGroup: fmt.Sprint(os.Getgid()),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "r.sock"))
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("read-only socket mode %v, want 0666", fi.Mode().Perm())
	}
	srv.Close()
	if _, err := os.Stat(filepath.Join(dir, "a.sock")); !os.IsNotExist(err) {
		t.Errorf("Close left the socket: %v", err)
	}
}

func TestSocketStaleAndBusy(t *testing.T) {
	core := newCore(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "natd.sock")
	quiet := slog.New(slog.DiscardHandler)

	// A socket left by a crashed natd is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	srv, err := mgmt.NewServer(core, mgmt.ServerOptions{SocketPath: path, Logger: quiet})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	// A live one is not.
	_, err = mgmt.NewServer(core, mgmt.ServerOptions{SocketPath: path, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "is in use: is another natd running?") {
		t.Errorf("live socket: %v", err)
	}
	srv.Close()
	// Nor is a file that is not a socket.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = mgmt.NewServer(core, mgmt.ServerOptions{SocketPath: path, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("regular file: %v", err)
	}
}

func TestServerOptionErrors(t *testing.T) {
	core := newCore(t)
	for _, tc := range []struct {
		opts mgmt.ServerOptions
		want string
	}{
		{mgmt.ServerOptions{}, "no listener configured"},
		{mgmt.ServerOptions{TCPAddr: "127.0.0.1:0"}, "TCP needs a certificate, a key and a client CA"},
		{mgmt.ServerOptions{TCPAddr: "127.0.0.1:0", Insecure: true, TLSCertFile: "x"}, "exclusive"},
		{mgmt.ServerOptions{TCPAddr: "127.0.0.1:0", Insecure: true, AdminIdentities: []string{"XX=y"}}, `unknown kind "XX"`},
	} {
		tc.opts.Logger = slog.New(slog.DiscardHandler)
		if _, err := mgmt.NewServer(core, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// mutatingCalls makes one valid call of every mutating RPC. Each would
// succeed for an admin (TestAdminMayMutate checks that).
func mutatingCalls(t *testing.T, e *env) map[string]func(c *client.Client) error {
	t.Helper()
	x := ctx(t)
	return map[string]func(c *client.Client) error{
		xnatv1.NatService_DeleteSession_FullMethodName: func(c *client.Client) error {
			r, err := e.ro.ListSessions(x, &xnatv1.ListSessionsRequest{Filter: &xnatv1.SessionFilter{InsidePort: 20000}})
			if err != nil || len(r.Sessions) != 1 {
				t.Fatalf("no session to delete: %v", err)
			}
			_, err = c.DeleteSession(x, &xnatv1.DeleteSessionRequest{Id: r.Sessions[0].Id, Generation: r.Sessions[0].Generation})
			return err
		},
		xnatv1.NatService_FlushSessions_FullMethodName: func(c *client.Client) error {
			_, err := c.FlushSessions(x, &xnatv1.FlushSessionsRequest{})
			return err
		},
		xnatv1.NatService_AddPool_FullMethodName: func(c *client.Client) error {
			_, err := c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: "new", Prefixes: []string{"198.18.6.0/30"}}})
			return err
		},
		xnatv1.NatService_DeletePool_FullMethodName: func(c *client.Client) error {
			_, err := c.DeletePool(x, &xnatv1.DeletePoolRequest{Name: "extra"})
			return err
		},
		xnatv1.NatService_AddPortForward_FullMethodName: func(c *client.Client) error {
			_, err := c.AddPortForward(x, &xnatv1.AddPortForwardRequest{PortForward: &xnatv1.PortForward{
				Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 8443), Inside: ep("10.0.0.50", 443)}})
			return err
		},
		xnatv1.NatService_DeletePortForward_FullMethodName: func(c *client.Client) error {
			_, err := c.DeletePortForward(x, &xnatv1.DeletePortForwardRequest{Protocol: xnatv1.Protocol_PROTOCOL_TCP, Outside: ep("198.18.0.100", 8080)})
			return err
		},
		xnatv1.NatService_AddStaticMapping_FullMethodName: func(c *client.Client) error {
			_, err := c.AddStaticMapping(x, &xnatv1.AddStaticMappingRequest{StaticMapping: &xnatv1.StaticMapping{Inside: "10.0.0.61", Outside: "198.18.0.161"}})
			return err
		},
		xnatv1.NatService_DeleteStaticMapping_FullMethodName: func(c *client.Client) error {
			_, err := c.DeleteStaticMapping(x, &xnatv1.DeleteStaticMappingRequest{Inside: "10.0.0.60"})
			return err
		},
		xnatv1.NatService_ApplyChanges_FullMethodName: func(c *client.Client) error {
			_, err := c.ApplyChanges(x, &xnatv1.ApplyChangesRequest{Changes: []*xnatv1.Change{
				{Change: &xnatv1.Change_AddPool{AddPool: &xnatv1.Pool{Name: "batch", Prefixes: []string{"198.18.7.0/30"}}}}}})
			return err
		},
		xnatv1.NatService_ReloadConfig_FullMethodName: func(c *client.Client) error {
			_, err := c.ReloadConfig(x, &xnatv1.ReloadConfigRequest{})
			return err
		},
		// Capture and trace change nothing but show subscribers' packets:
		// admin only, like the mutating RPCs.
		xnatv1.NatService_Capture_FullMethodName: func(c *client.Client) error {
			st, err := c.Capture(x, &xnatv1.CaptureRequest{Duration: durationpb.New(50 * time.Millisecond)})
			if err != nil {
				return err
			}
			return drainStream(st.Recv)
		},
		xnatv1.NatService_Trace_FullMethodName: func(c *client.Client) error {
			st, err := c.Trace(x, &xnatv1.TraceRequest{Count: 1, Timeout: durationpb.New(50 * time.Millisecond)})
			if err != nil {
				return err
			}
			return drainStream(st.Recv)
		},
		xnatv1.NatService_SetDrain_FullMethodName: func(c *client.Client) error {
			_, err := c.SetDrain(x, &xnatv1.SetDrainRequest{Drain: true})
			return err
		},
	}
}

// prepare gives every mutating call something to act on.
func prepare(t *testing.T, e *env) {
	t.Helper()
	openUDP(t, e, 3, 20000)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.core.AddPool(nat.Pool{Name: "extra", Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.9.0/30")}}))
	must(e.core.AddPortForward(nat.PortForward{Proto: nat.TCP, Outside: netip.MustParseAddrPort("198.18.0.100:8080"), Inside: netip.MustParseAddrPort("10.0.0.50:80")}))
	must(e.core.AddStaticMapping(nat.StaticMapping{Inside: netip.MustParseAddr("10.0.0.60"), Outside: netip.MustParseAddr("198.18.0.160")}))
	cfg := e.core.Config()
	e.core.SetReload(&cfg, nil)
	e.core.EnableBGP()
}

// mutatingMethods lists the service's RPCs that the access table marks
// as mutating.
func mutatingMethods() []string {
	sd := xnatv1.File_xnat_v1_xnat_proto.Services().ByName("NatService")
	var out []string
	for i := 0; i < sd.Methods().Len(); i++ {
		full := fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(i).Name())
		if mgmt.Mutates(full) {
			out = append(out, full)
		}
	}
	return out
}

func TestReadOnlyCannotMutate(t *testing.T) {
	e := newEnv(t, nil)
	prepare(t, e)
	x := ctx(t)
	st0, _ := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	calls := mutatingCalls(t, e)
	var tried []string
	for m, call := range calls {
		tried = append(tried, m)
		err := call(e.ro)
		why := "changes state"
		if m == xnatv1.NatService_Capture_FullMethodName || m == xnatv1.NatService_Trace_FullMethodName {
			why = "shows subscribers' packets"
		}
		wantCode(t, err, codes.PermissionDenied, "permission denied: this connection (read-only socket "+e.rosk+") is read-only and "+m[strings.LastIndexByte(m, '/')+1:]+" "+why+"; use the admin socket "+e.sock)
	}
	slices.Sort(tried)
	want := mutatingMethods()
	slices.Sort(want)
	if !slices.Equal(tried, want) {
		t.Fatalf("tried %v, but the mutating RPCs are %v", tried, want)
	}
	// Nothing changed.
	st1, _ := e.ro.GetStatus(x, &xnatv1.GetStatusRequest{})
	if st1.Status.ConfigGeneration != st0.Status.ConfigGeneration || st1.Status.SessionsInUse != 3 {
		t.Errorf("generation %d -> %d, sessions %d", st0.Status.ConfigGeneration, st1.Status.ConfigGeneration, st1.Status.SessionsInUse)
	}
	// Every refusal is in the audit log, as a warning naming the caller.
	n := 0
	for _, line := range strings.Split(e.log.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "audit" {
			continue
		}
		n++
		who, _ := rec["who"].(string)
		if rec["level"] != "WARN" || rec["result"] != "PermissionDenied" || rec["transport"] != "unix" ||
			!strings.HasPrefix(who, fmt.Sprintf("uid=%d(", os.Getuid())) || !strings.HasSuffix(who, fmt.Sprintf(" gid=%d pid=%d", os.Getgid(), os.Getpid())) {
			t.Errorf("audit record %v", rec)
		}
	}
	if n != len(calls) {
		t.Errorf("%d audit records for %d refusals", n, len(calls))
	}
}

func TestAdminMayMutate(t *testing.T) {
	e := newEnv(t, nil)
	prepare(t, e)
	calls := mutatingCalls(t, e)
	// Order matters a little: delete the session before flushing.
	for _, m := range []string{xnatv1.NatService_DeleteSession_FullMethodName} {
		if err := calls[m](e.admin); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		delete(calls, m)
	}
	for m, call := range calls {
		if err := call(e.admin); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	// Mutations are audit-logged with the request and the result.
	log := e.log.String()
	for _, want := range []string{`"method":"AddPool"`, `"result":"OK"`, `198.18.6.0/30`, fmt.Sprintf(`"who":"uid=%d(`, os.Getuid())} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
}

// ---- mTLS ----

type pki struct {
	dir string
}

func (p *pki) write(name string, der []byte, key *ecdsa.PrivateKey) (certFile, keyFile string) {
	certFile = filepath.Join(p.dir, name+".crt")
	keyFile = filepath.Join(p.dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

var serial int64

func newCA(t *testing.T, p *pki, name string) *ca {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	f, _ := p.write(name, der, key)
	return &ca{cert: cert, key: key, file: f}
}

func (c *ca) issue(t *testing.T, p *pki, name string, subj pkix.Name, server bool) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: subj,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(name, der, key)
}

func TestMTLS(t *testing.T) {
	p := &pki{dir: t.TempDir()}
	good := newCA(t, p, "xnat-ca")
	rogue := newCA(t, p, "rogue-ca")
	srvCert, srvKey := good.issue(t, p, "server", pkix.Name{CommonName: "natd"}, true)
	adminCert, adminKey := good.issue(t, p, "admin", pkix.Name{CommonName: "ops-admin"}, false)
	unitCert, unitKey := good.issue(t, p, "unit", pkix.Name{CommonName: "alice", OrganizationalUnit: []string{"netops"}}, false)
	viewCert, viewKey := good.issue(t, p, "viewer", pkix.Name{CommonName: "grafana"}, false)
	rogueCert, rogueKey := rogue.issue(t, p, "rogue", pkix.Name{CommonName: "ops-admin"}, false)

	core := newCore(t)
	logs := &lab.LogBuffer{}
	srv := mgmttest.Server(t, core, mgmt.ServerOptions{
		TCPAddr: "127.0.0.1:0", TLSCertFile: srvCert, TLSKeyFile: srvKey, TLSClientCAFile: good.file,
		AdminIdentities: []string{"CN=ops-admin", "OU=netops"},
		Logger:          slog.New(slog.NewJSONHandler(logs, nil)),
	})
	addr := srv.TCPAddr().String()
	dial := func(cert, key string) *client.Client {
		c, err := client.Dial(client.Options{Addr: addr, CertFile: cert, KeyFile: key, CAFile: good.file})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	x := ctx(t)
	addPool := func(c *client.Client, name string) error {
		_, err := c.AddPool(x, &xnatv1.AddPoolRequest{Pool: &xnatv1.Pool{Name: name, Prefixes: []string{"198.18." + fmt.Sprint(len(name)) + ".0/30"}}})
		return err
	}

	// Admin by CN and by OU.
	for _, c := range []*client.Client{dial(adminCert, adminKey), dial(unitCert, unitKey)} {
		if _, err := c.GetStatus(x, &xnatv1.GetStatusRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := addPool(dial(adminCert, adminKey), "a"); err != nil {
		t.Errorf("admin cert: %v", err)
	}
	if err := addPool(dial(unitCert, unitKey), "bb"); err != nil {
		t.Errorf("OU=netops cert: %v", err)
	}
	// Another certificate of the CA reads but may not change anything.
	viewer := dial(viewCert, viewKey)
	if _, err := viewer.GetStatus(x, &xnatv1.GetStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, addPool(viewer, "ccc"), codes.PermissionDenied, "this client certificate is not one of natd's admin identities")
	if !strings.Contains(logs.String(), `"who":"CN=grafana"`) || !strings.Contains(logs.String(), `"who":"CN=ops-admin"`) {
		t.Errorf("audit log lacks the certificate subjects:\n%s", logs)
	}

	// A certificate from another CA is refused, whatever its name.
	rc := dial(rogueCert, rogueKey)
	_, err := rc.GetStatus(x, &xnatv1.GetStatusRequest{})
	if err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}
	var ce *client.ConnError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "natd refused the TLS connection") {
		t.Errorf("unknown CA: %v is not a connection error", err)
	}
	t.Logf("unknown CA: %v", err)

	// crypto/tls does not even send a certificate the server's CA list
	// does not name; force it to, and the server still refuses it.
	pool := x509.NewCertPool()
	pool.AddCert(good.cert)
	rogueKP, err := tls.LoadX509KeyPair(rogueCert, rogueKey)
	if err != nil {
		t.Fatal(err)
	}
	forced, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &rogueKP, nil },
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer forced.Close()
	_, err = xnatv1.NewNatServiceClient(forced).GetStatus(x, &xnatv1.GetStatusRequest{})
	if err == nil {
		t.Fatal("a certificate from an unknown CA was accepted")
	}
	t.Logf("unknown CA, certificate sent: %v", err)

	// A client without a certificate is refused.
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cx, cancel := context.WithTimeout(x, 5*time.Second)
	defer cancel()
	_, err = xnatv1.NewNatServiceClient(conn).GetStatus(cx, &xnatv1.GetStatusRequest{})
	if err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	t.Logf("no certificate: %v", err)
	// The server logs a refused handshake on its own goroutine, after the
	// client has already seen the failure: wait for the log line.
	refused := func() int { return strings.Count(logs.String(), `"msg":"refused a TLS connection"`) }
	wait.For(10*time.Second, func() bool { return refused() >= 3 })
	if n := refused(); n < 3 {
		t.Errorf("%d refused TLS connections logged, want at least 3:\n%s", n, logs)
	}

	// Plain TCP to the mTLS port gets nowhere either.
	plain, err := client.Dial(client.Options{Addr: addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.GetStatus(cx, &xnatv1.GetStatusRequest{}); err == nil {
		t.Fatal("plain TCP was accepted on the mTLS port")
	}
}

func TestInsecureTCPIsReadOnlyAndWarns(t *testing.T) {
	core := newCore(t)
	logs := &lab.LogBuffer{}
	srv := mgmttest.Server(t, core, mgmt.ServerOptions{TCPAddr: "127.0.0.1:0", Insecure: true, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"serving the management API on plain TCP without authentication: for labs only"`) {
		t.Errorf("no warning:\n%s", logs)
	}
	c, err := client.Dial(client.Options{Addr: srv.TCPAddr().String(), Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	x := ctx(t)
	if _, err := c.GetStatus(x, &xnatv1.GetStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReloadConfig(x, &xnatv1.ReloadConfigRequest{})
	wantCode(t, err, codes.PermissionDenied, "(insecure TCP 127.0.0.1:0) is read-only")
}

func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	c, err := client.Dial(client.Options{Socket: filepath.Join(dir, "natd.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetStatus(ctx(t), &xnatv1.GetStatusRequest{})
	var ce *client.ConnError
	if !errors.As(err, &ce) || err.Error() != "cannot reach natd at "+filepath.Join(dir, "natd.sock")+": is natd running? (no such file or directory)" {
		t.Errorf("missing socket: %v", err)
	}
	if s, _ := status.FromError(err); s.Code() != codes.Unavailable {
		t.Errorf("a ConnError must keep its status: %v", s.Code())
	}
	// A socket nobody listens on.
	path := filepath.Join(dir, "dead.sock")
	ln, _ := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	ln.SetUnlinkOnClose(false)
	ln.Close()
	c2, _ := client.Dial(client.Options{Socket: path})
	defer c2.Close()
	st, err := c2.WatchEvents(ctx(t), &xnatv1.WatchEventsRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if !errors.As(err, &ce) || ce.Cause != "connection refused" {
		t.Errorf("dead socket: %v", err)
	}
	// natd's own Unavailable is not a connection error.
	e := newEnv(t, nil)
	_, err = e.admin.ReloadConfig(ctx(t), &xnatv1.ReloadConfigRequest{})
	if errors.As(err, &ce) {
		t.Errorf("natd's Unavailable taken for a connection error: %v", err)
	}
}

// drainStream receives until the stream ends; io.EOF is success.
func drainStream[T any](recv func() (T, error)) error {
	for {
		if _, err := recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
