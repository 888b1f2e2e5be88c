package mgmt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Access is what a caller may do.
type Access uint8

const (
	// ReadOnly callers may call every RPC that changes nothing.
	ReadOnly Access = iota
	// Admin callers may also change configuration and delete sessions.
	Admin
)

func (a Access) String() string {
	if a == Admin {
		return "admin"
	}
	return "read-only"
}

// methodMutates is the access-control table: every RPC of xnat.v1 and
// whether it changes state. The interceptor refuses a mutating RPC to a
// read-only caller; an RPC missing from the table counts as mutating, so a
// new RPC is admin-only until someone decides otherwise (a test checks the
// table covers the whole service).
var methodMutates = map[string]bool{
	xnatv1.NatService_GetStatus_FullMethodName:           false,
	xnatv1.NatService_GetStats_FullMethodName:            false,
	xnatv1.NatService_WatchStats_FullMethodName:          false,
	xnatv1.NatService_ListSessions_FullMethodName:        false,
	xnatv1.NatService_StreamSessions_FullMethodName:      false,
	xnatv1.NatService_DeleteSession_FullMethodName:       true,
	xnatv1.NatService_FlushSessions_FullMethodName:       true,
	xnatv1.NatService_ListPools_FullMethodName:           false,
	xnatv1.NatService_AddPool_FullMethodName:             true,
	xnatv1.NatService_DeletePool_FullMethodName:          true,
	xnatv1.NatService_ListPortForwards_FullMethodName:    false,
	xnatv1.NatService_AddPortForward_FullMethodName:      true,
	xnatv1.NatService_DeletePortForward_FullMethodName:   true,
	xnatv1.NatService_ListStaticMappings_FullMethodName:  false,
	xnatv1.NatService_AddStaticMapping_FullMethodName:    true,
	xnatv1.NatService_DeleteStaticMapping_FullMethodName: true,
	xnatv1.NatService_ApplyChanges_FullMethodName:        true,
	xnatv1.NatService_ReloadConfig_FullMethodName:        true,
	xnatv1.NatService_WatchEvents_FullMethodName:         false,
	// Capture and Trace show subscribers' packets: admin only, audited.
	xnatv1.NatService_Capture_FullMethodName:  true,
	xnatv1.NatService_Trace_FullMethodName:    true,
	xnatv1.NatService_Explain_FullMethodName:  false,
	xnatv1.NatService_GetDrops_FullMethodName: false,
	// --- scale-out (BGP) ---
	xnatv1.NatService_GetBGPStatus_FullMethodName: false,
	xnatv1.NatService_SetDrain_FullMethodName:     true,
	xnatv1.NatService_Lookup_FullMethodName:       false,
}

// Mutates reports whether the RPC fullMethod ("/xnat.v1.NatService/AddPool")
// changes state and so needs admin access. Unknown methods do.
func Mutates(fullMethod string) bool {
	m, ok := methodMutates[fullMethod]
	return m || !ok
}

// Identity is who is calling, as established by the transport when the
// connection was accepted: the peer's uid (SO_PEERCRED) on a unix socket,
// the client certificate's subject with mTLS, the remote address on
// insecure TCP. It is the connection's credentials.AuthInfo.
type Identity struct {
	credentials.CommonAuthInfo
	// Transport is "unix", "mtls" or "insecure".
	Transport string
	// Name is what the audit log records: "uid=0(root) pid=42",
	// "CN=ops,OU=netops", "tcp 192.0.2.1:5555".
	Name string
	// Access is what the connection may do.
	Access Access
	// UID and PID are the unix peer's credentials (-1 otherwise).
	UID, PID int
	// Cert is the verified client certificate (mTLS only).
	Cert *x509.Certificate
	// via names the listener and hint says where to go instead, for
	// refusal messages.
	via, hint string
}

// AuthType implements credentials.AuthInfo.
func (id *Identity) AuthType() string { return id.Transport }

// IdentityFrom returns the caller's identity, or nil if the connection has
// none (which the interceptor refuses).
func IdentityFrom(ctx context.Context) *Identity {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	id, _ := p.AuthInfo.(*Identity)
	return id
}

// serverCreds authenticates the connections of one listener. It only does
// server handshakes: clients dial with insecure credentials on unix
// sockets and plain TLS credentials with mTLS.
type serverCreds struct {
	transport string // "unix", "mtls", "insecure"
	access    Access // unix and insecure: the listener's access
	via       string // "read-only socket /run/xnat/natd-ro.sock", ...
	hint      string // what a refused caller should use instead
	tls       credentials.TransportCredentials
	admins    []string
	log       *slog.Logger
}

func (c *serverCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	switch c.transport {
	case "unix":
		uid, gid, pid, err := peerCred(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the peer's credentials: %w", err)
		}
		return raw, &Identity{
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
			Transport:      "unix",
			Name:           fmt.Sprintf("uid=%d(%s) gid=%d pid=%d", uid, userName(uid), gid, pid),
			Access:         c.access,
			UID:            uid,
			PID:            pid,
			via:            c.via,
			hint:           c.hint,
		}, nil
	case "mtls":
		conn, info, err := c.tls.ServerHandshake(raw)
		if err != nil {
			// Refused clients (no certificate, unknown CA) are worth a
			// line in the audit trail: they never reach the interceptor.
			c.log.Warn("refused a TLS connection", "remote", raw.RemoteAddr().String(), "err", err)
			return nil, nil, err
		}
		ti, ok := info.(credentials.TLSInfo)
		if !ok || len(ti.State.PeerCertificates) == 0 {
			conn.Close()
			return nil, nil, errors.New("mtls: no verified client certificate")
		}
		cert := ti.State.PeerCertificates[0]
		access := ReadOnly
		if certIsAdmin(cert, c.admins) {
			access = Admin
		}
		return conn, &Identity{
			CommonAuthInfo: ti.CommonAuthInfo,
			Transport:      "mtls",
			Name:           cert.Subject.String(),
			Access:         access,
			UID:            -1,
			PID:            -1,
			Cert:           cert,
			via:            c.via,
			hint:           c.hint,
		}, nil
	default:
		return raw, &Identity{
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
			Transport:      "insecure",
			Name:           "tcp " + raw.RemoteAddr().String(),
			Access:         c.access,
			UID:            -1,
			PID:            -1,
			via:            c.via,
			hint:           c.hint,
		}, nil
	}
}

func (c *serverCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mgmt: server-only credentials")
}

func (c *serverCreds) Info() credentials.ProtocolInfo {
	if c.tls != nil {
		return c.tls.Info()
	}
	return credentials.ProtocolInfo{SecurityProtocol: c.transport}
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	d := *c
	if c.tls != nil {
		d.tls = c.tls.Clone()
	}
	return &d
}

func (c *serverCreds) OverrideServerName(string) error { return nil }

// certIsAdmin reports whether a verified client certificate names an admin
// identity. Entries of the admin list are "CN=name", "OU=unit", "DNS:name",
// "URI:uri", "email:addr", or a bare name, which matches the subject CN or
// any DNS SAN.
func certIsAdmin(cert *x509.Certificate, admins []string) bool {
	for _, a := range admins {
		kind, val, ok := strings.Cut(a, "=")
		if !ok {
			kind, val, ok = strings.Cut(a, ":")
		}
		if !ok {
			if cert.Subject.CommonName == a || slices.Contains(cert.DNSNames, a) {
				return true
			}
			continue
		}
		switch strings.ToUpper(kind) {
		case "CN":
			if cert.Subject.CommonName == val {
				return true
			}
		case "OU":
			if slices.Contains(cert.Subject.OrganizationalUnit, val) {
				return true
			}
		case "DNS":
			if slices.Contains(cert.DNSNames, val) {
				return true
			}
		case "URI":
			for _, u := range cert.URIs {
				if u.String() == val {
					return true
				}
			}
		case "EMAIL":
			if slices.Contains(cert.EmailAddresses, val) {
				return true
			}
		}
	}
	return false
}

// validAdminEntry checks the syntax of an admin identity entry.
func validAdminEntry(a string) error {
	if a == "" {
		return errors.New("empty admin identity")
	}
	kind, _, ok := strings.Cut(a, "=")
	if !ok {
		kind, _, ok = strings.Cut(a, ":")
	}
	if !ok {
		return nil
	}
	switch strings.ToUpper(kind) {
	case "CN", "OU", "DNS", "URI", "EMAIL":
		return nil
	}
	return fmt.Errorf("admin identity %q: unknown kind %q (want CN=, OU=, DNS:, URI: or email:)", a, kind)
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "?"
}

// tlsConfig builds the server's mTLS configuration: a client certificate
// signed by the configured CA is required.
func tlsConfig(certFile, keyFile, caFile string, pem func(string) ([]byte, error)) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("mgmt: loading the server certificate: %w", err)
	}
	ca, err := pem(caFile)
	if err != nil {
		return nil, fmt.Errorf("mgmt: reading the client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("mgmt: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// authorize refuses a mutating RPC to a read-only caller, and any RPC to a
// connection without an identity.
func authorize(id *Identity, method string) error {
	if id == nil {
		return status.Error(codes.Unauthenticated, "connection has no identity")
	}
	if Mutates(method) && id.Access != Admin {
		return status.Errorf(codes.PermissionDenied,
			"permission denied: this connection (%s) is read-only and %s %s; %s",
			id.via, shortMethod(method), adminWhy(method), id.hint)
	}
	return nil
}

func shortMethod(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// interceptors enforce access control on every RPC in one place and write
// the audit log: every mutating call and every refused call is logged
// with who made it, what it asked, and the result.
type interceptors struct {
	log *slog.Logger
}

// ServedTrailer is a trailer key the server sets on every call it handles,
// success or failure, so that a client can tell natd's own errors from
// transport failures (natd not there, TLS refused) that carry the same
// codes.
const ServedTrailer = "xnat-served"

var servedMD = metadata.Pairs(ServedTrailer, "1")

func (ic *interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	grpc.SetTrailer(ctx, servedMD)
	id := IdentityFrom(ctx)
	start := time.Now()
	if err := authorize(id, info.FullMethod); err != nil {
		ic.audit(id, info.FullMethod, req, err, start)
		return nil, err
	}
	resp, err := handler(ctx, req)
	if Mutates(info.FullMethod) {
		ic.audit(id, info.FullMethod, req, err, start)
	}
	return resp, err
}

func (ic *interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ss.SetTrailer(servedMD)
	id := IdentityFrom(ss.Context())
	start := time.Now()
	if err := authorize(id, info.FullMethod); err != nil {
		ic.audit(id, info.FullMethod, nil, err, start)
		return err
	}
	rs := &auditedStream{ServerStream: ss}
	if Mutates(info.FullMethod) {
		// A long-lived session (capture, trace) is logged when it starts,
		// with its request, and when it ends.
		rs.started = func(req any) { ic.auditStart(id, info.FullMethod, req) }
	}
	err := handler(srv, rs)
	if Mutates(info.FullMethod) {
		ic.audit(id, info.FullMethod, rs.req, err, start)
	}
	return err
}

// audit logs one call. Refusals are warnings.
func (ic *interceptors) audit(id *Identity, method string, req any, err error, start time.Time) {
	who, transport := "unknown", "unknown"
	if id != nil {
		who, transport = id.Name, id.Transport
	}
	st, _ := status.FromError(err)
	level := slog.LevelInfo
	if st.Code() == codes.PermissionDenied || st.Code() == codes.Unauthenticated {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.String("who", who),
		slog.String("transport", transport),
		slog.String("method", shortMethod(method)),
		slog.String("request", summarize(req)),
		slog.String("result", st.Code().String()),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", st.Message()))
	}
	ic.log.LogAttrs(context.Background(), level, "audit", attrs...)
}

// summarize renders a request for the audit log on one line, truncated.
func summarize(req any) string {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return ""
	}
	s := prototext.MarshalOptions{}.Format(m)
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}
