// Package client dials natd's management API (xnat.v1) over its unix
// socket or over TCP with mutual TLS. natctl and the tests use it; it adds
// to the generated client only what a command-line tool needs: dialling
// with the right credentials, and telling "natd is not there" apart from
// "natd said no".
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// Options say where natd is and how to authenticate.
type Options struct {
	// Socket is the unix socket path; used when Addr is "".
	Socket string
	// Addr is natd's TCP address ("host:port").
	Addr string
	// CertFile, KeyFile and CAFile are the client certificate, its key and
	// the CA that signed natd's certificate, for mutual TLS.
	CertFile, KeyFile, CAFile string
	// ServerName overrides the name checked in natd's certificate
	// (default: the host part of Addr).
	ServerName string
	// Insecure dials Addr with plain TCP (lab servers started with
	// --insecure).
	Insecure bool
}

// Client is a connection to natd. Its methods are the generated
// xnatv1.NatServiceClient's.
type Client struct {
	xnatv1.NatServiceClient
	conn   *grpc.ClientConn
	target string

	mu      sync.Mutex
	dialErr error
}

// Dial prepares a connection; like grpc.NewClient, it connects lazily, so
// an unreachable natd shows up as the first call's error (see IsUnreachable).
func Dial(opts Options) (*Client, error) {
	c := &Client{}
	var dopts []grpc.DialOption
	var target string
	switch {
	case opts.Addr != "":
		c.target = opts.Addr
		target = "passthrough:///" + opts.Addr
		if opts.Insecure {
			dopts = append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))
		} else {
			cfg, err := tlsConfig(opts)
			if err != nil {
				return nil, err
			}
			dopts = append(dopts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		}
		dopts = append(dopts, grpc.WithContextDialer(c.dialer("tcp", opts.Addr)))
	case opts.Socket != "":
		if opts.CertFile != "" || opts.Insecure {
			return nil, errors.New("client: --cert and --insecure apply to --addr, not to a unix socket")
		}
		c.target = opts.Socket
		// The authority is a placeholder: the dialer ignores it.
		target = "passthrough:///natd"
		dopts = append(dopts,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(c.dialer("unix", opts.Socket)))
	default:
		return nil, errors.New("client: no socket or address")
	}
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.conn = conn
	c.NatServiceClient = xnatv1.NewNatServiceClient(conn)
	return c, nil
}

// dialer connects to addr and remembers the last failure, so that an
// Unavailable error can be explained by its cause (no socket, connection
// refused, permission denied on the socket).
func (c *Client) dialer(network, addr string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		c.mu.Lock()
		c.dialErr = err
		c.mu.Unlock()
		return conn, err
	}
}

func tlsConfig(opts Options) (*tls.Config, error) {
	if opts.CertFile == "" || opts.KeyFile == "" || opts.CAFile == "" {
		return nil, errors.New("client: TCP needs --cert, --key and --ca (mutual TLS), or --insecure for a lab natd")
	}
	cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("client: loading the client certificate: %w", err)
	}
	pem, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("client: %s holds no PEM certificate", opts.CAFile)
	}
	name := opts.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(opts.Addr)
		if err != nil {
			return nil, fmt.Errorf("client: address %q: %w", opts.Addr, err)
		}
		name = host
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   name,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// Target is the socket path or address dialled.
func (c *Client) Target() string { return c.target }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// DialError is the last error connecting to natd, or nil.
func (c *Client) DialError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialErr
}

// IsUnreachable reports whether err means natd could not be reached at all
// (as opposed to natd answering with an error).
func (c *Client) IsUnreachable(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		// A server-side Unavailable (natd shutting down, a core method
		// reporting ErrUnavailable) arrives on a working connection;
		// only a failed dial means natd is not there.
		return c.DialError() != nil
	}
	return false
}

// Cause describes why natd could not be reached: "connection refused",
// "no such file or directory", "permission denied", or the dial error.
func (c *Client) Cause() string {
	err := c.DialError()
	switch {
	case err == nil:
		return "unknown error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENOENT):
		return "no such file or directory"
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "permission denied"
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}
