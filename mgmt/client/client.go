// Package client dials natd's management API (xnat.v1) over its unix
// socket or over TCP with mutual TLS. natctl and the tests use it; it adds
// to the generated client only what a command-line tool needs: dialling
// with the right credentials, and telling "natd is not there" (a
// *ConnError) apart from "natd said no" (a gRPC status error).
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// servedTrailer is mgmt.ServedTrailer (not imported, to keep the client
// free of the server's dependencies).
const servedTrailer = "xnat-served"

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
// xnatv1.NatServiceClient's; a call that never reached natd fails with a
// *ConnError. Like grpc.ClientConn, it is safe for concurrent use.
type Client struct {
	xnatv1.NatServiceClient
	conn   *grpc.ClientConn
	target string
	tls    bool

	mu      sync.Mutex
	dialErr error
}

// ConnError is a call that failed because natd could not be reached or
// the connection was refused before natd handled the call. It wraps the
// gRPC status error.
type ConnError struct {
	Target string
	// Cause is a short explanation: "connection refused", "no such file
	// or directory", "permission denied", a TLS failure.
	Cause string
	// Hint suggests what to do, or is "".
	Hint string
	Err  error
}

func (e *ConnError) Error() string {
	msg := fmt.Sprintf("cannot reach natd at %s: ", e.Target)
	if e.Hint != "" {
		return msg + e.Hint + " (" + e.Cause + ")"
	}
	return msg + e.Cause
}

func (e *ConnError) Unwrap() error { return e.Err }

// Dial prepares a connection; like grpc.NewClient, it connects lazily, so
// an unreachable natd shows up as the first call's *ConnError.
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
			c.tls = true
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
	dopts = append(dopts, grpc.WithUnaryInterceptor(c.unary), grpc.WithStreamInterceptor(c.stream))
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.conn = conn
	c.NatServiceClient = xnatv1.NewNatServiceClient(conn)
	return c, nil
}

// dialer connects to addr and remembers the last failure, so that a
// connection error can be explained by its cause.
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

func (c *Client) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var tr metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&tr))...)
	return c.classify(err, tr)
}

func (c *Client) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, c.classify(err, nil)
	}
	return &clientStream{ClientStream: s, c: c}, nil
}

type clientStream struct {
	grpc.ClientStream
	c        *Client
	received bool
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.received = true
	}
	if err == nil || err == io.EOF || s.received {
		// Once natd has sent something it was reachable, whatever ends
		// the stream later.
		return err
	}
	return s.c.classify(err, s.ClientStream.Trailer())
}

// classify turns a failure that natd did not produce (no served trailer)
// into a *ConnError.
func (c *Client) classify(err error, tr metadata.MD) error {
	if err == nil || len(tr.Get(servedTrailer)) > 0 {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
	default:
		return err
	}
	ce := &ConnError{Target: c.target, Err: err}
	dialErr := c.DialError()
	switch {
	case errors.Is(dialErr, syscall.ECONNREFUSED):
		ce.Cause, ce.Hint = "connection refused", "is natd running?"
	case errors.Is(dialErr, syscall.ENOENT):
		ce.Cause, ce.Hint = "no such file or directory", "is natd running?"
	case errors.Is(dialErr, syscall.EACCES), errors.Is(dialErr, syscall.EPERM):
		ce.Cause = "permission denied"
		ce.Hint = "this user may not open the socket; use sudo for the admin socket, or the read-only socket to look"
	case dialErr != nil:
		ce.Cause = dialErr.Error()
		var oe *net.OpError
		if errors.As(dialErr, &oe) && oe.Err != nil {
			ce.Cause = oe.Err.Error()
		}
	case st.Code() == codes.DeadlineExceeded:
		ce.Cause = "timed out"
	case c.tls:
		ce.Cause = st.Message()
		ce.Hint = "natd refused the TLS connection: is --cert signed by natd's client CA, and --ca the CA of natd's certificate?"
	default:
		ce.Cause = st.Message()
	}
	return ce
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
