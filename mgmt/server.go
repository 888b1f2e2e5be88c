package mgmt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Default socket paths.
const (
	DefaultSocketPath         = "/run/xnat/natd.sock"
	DefaultReadOnlySocketPath = "/run/xnat/natd-ro.sock"
)

// ServerOptions configure the management server's listeners and access
// control. Each listener that is configured gets its own gRPC server with
// the same service and interceptors; the listener decides how callers are
// identified and what they may do.
type ServerOptions struct {
	// SocketPath is the admin unix socket (DefaultSocketPath in natd);
	// "" disables it. Every caller on it is admin: the socket's mode is
	// the access control.
	SocketPath string
	// SocketMode defaults to 0600 (root only).
	SocketMode os.FileMode
	// ReadOnlySocketPath is the read-only unix socket
	// (DefaultReadOnlySocketPath in natd); "" disables it.
	ReadOnlySocketPath string
	// ReadOnlySocketMode defaults to 0660; 0666 lets every local user
	// read status and sessions.
	ReadOnlySocketMode os.FileMode
	// ReadOnlySocketGroup, if set, is the group (name or number) given
	// the read-only socket, e.g. "xnat".
	ReadOnlySocketGroup string

	// TCPAddr ("host:port") enables TCP. It needs TLSCertFile, TLSKeyFile
	// and TLSClientCAFile (mutual TLS: a client certificate signed by that
	// CA is required), or Insecure.
	TCPAddr         string
	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string
	// AdminIdentities lists the client certificates with admin access:
	// "CN=name", "OU=unit", "DNS:name", "URI:uri", "email:addr", or a bare
	// name matching the subject CN or a DNS SAN. Every other certificate
	// the CA signed is read-only.
	AdminIdentities []string
	// Insecure serves plain TCP without authentication, for labs only; a
	// warning is logged. Its callers get InsecureAccess (read-only unless
	// set to Admin).
	Insecure       bool
	InsecureAccess Access

	// Logger receives the audit log and server messages; default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock for uptime; default time.Now.
	Now func() time.Time
}

// Server is the management gRPC server. Create it with NewServer, run it
// with Serve (once, from any goroutine), stop it by cancelling Serve's
// context or with Close (from any goroutine). Handlers run on gRPC's
// goroutines, never on a worker's.
type Server struct {
	core Core
	opts ServerOptions
	log  *slog.Logger
	svc  *service
	done chan struct{}

	listeners []*listener
	closeOnce sync.Once
}

type listener struct {
	desc string // "admin socket /run/xnat/natd.sock"
	ln   net.Listener
	srv  *grpc.Server
	path string // unix socket path to remove on close
}

// NewServer creates the listeners (so that a bad address or a busy socket
// fails here, at start-up) but serves nothing until Serve.
func NewServer(core Core, opts ServerOptions) (*Server, error) {
	if core == nil {
		return nil, errors.New("mgmt: nil Core")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SocketMode == 0 {
		opts.SocketMode = 0o600
	}
	if opts.ReadOnlySocketMode == 0 {
		opts.ReadOnlySocketMode = 0o660
	}
	if opts.SocketPath == "" && opts.ReadOnlySocketPath == "" && opts.TCPAddr == "" {
		return nil, errors.New("mgmt: no listener configured (socket, read-only socket or TCP address)")
	}
	for _, a := range opts.AdminIdentities {
		if err := validAdminEntry(a); err != nil {
			return nil, fmt.Errorf("mgmt: %w", err)
		}
	}
	hasTLS := opts.TLSCertFile != "" || opts.TLSKeyFile != "" || opts.TLSClientCAFile != ""
	if opts.TCPAddr != "" {
		switch {
		case opts.Insecure && hasTLS:
			return nil, errors.New("mgmt: TLS files and Insecure are exclusive")
		case !opts.Insecure && (opts.TLSCertFile == "" || opts.TLSKeyFile == "" || opts.TLSClientCAFile == ""):
			return nil, errors.New("mgmt: TCP needs a certificate, a key and a client CA (mutual TLS), or Insecure for a lab")
		}
	}

	s := &Server{
		core: core,
		opts: opts,
		log:  opts.Logger.With("component", "mgmt"),
		done: make(chan struct{}),
	}
	s.svc = &service{core: core, now: opts.Now, done: s.done}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()

	if opts.SocketPath != "" {
		ln, err := listenUnix(opts.SocketPath, opts.SocketMode, "")
		if err != nil {
			return nil, err
		}
		if opts.SocketMode&0o077 != 0 {
			s.log.Warn("the admin socket is accessible to other users than its owner", "path", opts.SocketPath, "mode", opts.SocketMode)
		}
		desc := "admin socket " + opts.SocketPath
		s.add(desc, ln, opts.SocketPath, &serverCreds{transport: "unix", access: Admin, via: desc})
	}
	if opts.ReadOnlySocketPath != "" {
		ln, err := listenUnix(opts.ReadOnlySocketPath, opts.ReadOnlySocketMode, opts.ReadOnlySocketGroup)
		if err != nil {
			return nil, err
		}
		desc := "read-only socket " + opts.ReadOnlySocketPath
		s.add(desc, ln, opts.ReadOnlySocketPath, &serverCreds{transport: "unix", access: ReadOnly, via: desc, hint: adminHint(opts)})
	}
	if opts.TCPAddr != "" {
		var creds *serverCreds
		var desc string
		if opts.Insecure {
			desc = "insecure TCP " + opts.TCPAddr
			creds = &serverCreds{transport: "insecure", access: opts.InsecureAccess, via: desc, hint: adminHint(opts)}
		} else {
			cfg, err := tlsConfig(opts.TLSCertFile, opts.TLSKeyFile, opts.TLSClientCAFile, os.ReadFile)
			if err != nil {
				return nil, err
			}
			desc = "mTLS " + opts.TCPAddr
			creds = &serverCreds{transport: "mtls", tls: credentials.NewTLS(cfg), admins: opts.AdminIdentities, via: desc, log: s.log,
				hint: "this client certificate is not one of natd's admin identities"}
		}
		ln, err := net.Listen("tcp", opts.TCPAddr)
		if err != nil {
			return nil, fmt.Errorf("mgmt: %w", err)
		}
		if opts.Insecure {
			s.log.Warn("serving the management API on plain TCP without authentication: for labs only",
				"addr", ln.Addr().String(), "access", opts.InsecureAccess.String())
		}
		s.add(desc, ln, "", creds)
	}
	ok = true
	return s, nil
}

// adminHint tells a refused read-only caller where changes are accepted.
func adminHint(opts ServerOptions) string {
	switch {
	case opts.SocketPath != "" && len(opts.AdminIdentities) > 0:
		return "use the admin socket " + opts.SocketPath + " or an admin client certificate"
	case opts.SocketPath != "":
		return "use the admin socket " + opts.SocketPath
	case len(opts.AdminIdentities) > 0:
		return "use an admin client certificate"
	}
	return "natd accepts changes on no listener"
}

func (s *Server) add(desc string, ln net.Listener, path string, creds credentials.TransportCredentials) {
	ic := &interceptors{log: s.log}
	srv := grpc.NewServer(
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(ic.unary),
		grpc.ChainStreamInterceptor(ic.stream),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	xnatv1.RegisterNatServiceServer(srv, s.svc)
	s.listeners = append(s.listeners, &listener{desc: desc, ln: ln, srv: srv, path: path})
}

// TCPAddr returns the TCP listener's address (useful with port 0), or nil.
func (s *Server) TCPAddr() net.Addr {
	for _, l := range s.listeners {
		if l.path == "" {
			return l.ln.Addr()
		}
	}
	return nil
}

// Serve serves every listener until ctx ends, then stops gracefully
// (in-flight unary calls finish; streams end) and returns nil. It returns
// early with an error if a listener fails.
func (s *Server) Serve(ctx context.Context) error {
	select {
	case <-s.done:
		return errors.New("mgmt: server closed")
	default:
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		s.log.Info("serving the management API", "on", l.desc)
		go func() {
			if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- fmt.Errorf("mgmt: %s: %w", l.desc, err)
				return
			}
			errc <- nil
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.shutdown(5 * time.Second)
	return err
}

// shutdown ends streams, waits up to grace for unary calls, then stops.
func (s *Server) shutdown(grace time.Duration) {
	s.closeOnce.Do(func() {
		close(s.done)
		var wg sync.WaitGroup
		for _, l := range s.listeners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stopped := make(chan struct{})
				go func() { l.srv.GracefulStop(); close(stopped) }()
				select {
				case <-stopped:
				case <-time.After(grace):
					l.srv.Stop()
				}
				l.ln.Close()
				if l.path != "" {
					os.Remove(l.path)
				}
			}()
		}
		wg.Wait()
	})
}

// Close stops the server at once and removes its sockets.
func (s *Server) Close() { s.shutdown(0) }

// listenUnix binds a unix socket at path with mode (and group) set before
// it becomes reachable: it binds a temporary name in the same directory,
// sets the mode, and renames it into place, so no client can ever connect
// while the socket has the default, wider permissions. A stale socket left
// by a crashed natd is replaced; a live one is an error.
func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("mgmt: %s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("mgmt: %s is in use: is another natd running?", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("mgmt: probing %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("mgmt: removing the stale socket: %w", err)
		}
	}
	gid := -1
	if group != "" {
		if n, err := strconv.Atoi(group); err == nil {
			gid = n
		} else {
			g, err := user.LookupGroup(group)
			if err != nil {
				return nil, fmt.Errorf("mgmt: socket group: %w", err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	// The listener must not unlink tmp (by then renamed) on close; the
	// server removes path itself.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	if gid >= 0 {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return ln, nil
}
