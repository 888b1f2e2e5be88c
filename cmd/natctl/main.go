// Command natctl is the operator's view of a running natd: status, live
// statistics, sessions, configuration (pools, port forwards, static
// mappings) and the event stream, over natd's management API (xnat.v1). It
// sits outside the pipeline entirely: every command is one or a few RPCs,
// each wrapping one method of natd's mgmt.Core.
//
// By default it talks to the admin unix socket /run/xnat/natd.sock
// (--socket, or $XNAT_SOCKET); --addr with --cert/--key/--ca talks to a
// remote natd over mutual TLS. Output is an aligned table for people, or
// with -o json a stable JSON format for scripts (docs/api.md).
//
// Exit codes: 0 success, 2 usage error, 3 natd unreachable (or the
// connection refused), 4 natd refused or failed the request, 1 anything
// else (docs/api.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
	"github.com/xnat/xnat/mgmt/client"
)

// Exit codes.
const (
	exitOK         = 0
	exitOther      = 1
	exitUsage      = 2
	exitConnection = 3
	exitServer     = 4
)

// DefaultSocket is natd's admin socket; $XNAT_SOCKET overrides it.
const DefaultSocket = "/run/xnat/natd.sock"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newApp(os.Stdout, os.Stderr, os.Getenv))
	stop()
	os.Exit(code)
}

// app is natctl's environment: where output goes, the clock, whether
// stdout is a terminal. Tests replace its fields.
type app struct {
	out, errOut io.Writer
	getenv      func(string) string
	now         func() time.Time
	isTTY       func() bool

	opts    client.Options
	output  string
	timeout time.Duration
	cl      *client.Client
}

func newApp(out, errOut io.Writer, getenv func(string) string) *app {
	return &app{
		out: out, errOut: errOut, getenv: getenv, now: time.Now,
		isTTY: func() bool { return isTerminal(os.Stdout) },
	}
}

// usageError is a mistake in the command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// run executes natctl with args and returns the exit code.
func run(ctx context.Context, args []string, a *app) int {
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	err := root.ExecuteContext(ctx)
	if a.cl != nil {
		a.cl.Close()
	}
	if err == nil {
		return exitOK
	}
	msg, code := describe(err)
	fmt.Fprintln(a.errOut, "natctl: "+msg)
	if code == exitUsage {
		fmt.Fprintln(a.errOut, "Run 'natctl --help' for usage.")
	}
	return code
}

// describe turns an error into a message and an exit code.
func describe(err error) (string, int) {
	var ce *client.ConnError
	var ue *usageError
	switch {
	case errors.As(err, &ce):
		return ce.Error(), exitConnection
	case errors.As(err, &ue):
		return ue.Error(), exitUsage
	case errors.Is(err, context.Canceled):
		return "interrupted", exitOther
	}
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		switch s.Code() {
		case codes.PermissionDenied:
			if !strings.HasPrefix(msg, "permission denied") {
				msg = "permission denied: " + msg
			}
		case codes.InvalidArgument:
			msg = "invalid: " + msg
		case codes.AlreadyExists:
			msg = "conflict: " + msg
		case codes.NotFound:
			msg = "not found: " + msg
		case codes.Unavailable:
			msg = "natd is unavailable: " + msg
		default:
			msg = strings.ToLower(s.Code().String()) + ": " + msg
		}
		return msg, exitServer
	}
	var le *localError
	if errors.As(err, &le) {
		return le.Error(), exitOther
	}
	// Errors cobra makes itself (unknown command or flag, wrong number of
	// arguments) are usage errors.
	return err.Error(), exitUsage
}

// localError is a failure on natctl's side (writing output, reading a
// certificate) that is neither usage nor natd's answer.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// client dials natd on first use.
func (a *app) client() (*client.Client, error) {
	if a.cl != nil {
		return a.cl, nil
	}
	o := a.opts
	if o.Addr == "" && (o.CertFile != "" || o.KeyFile != "" || o.CAFile != "" || o.Insecure) {
		return nil, usagef("--cert, --key, --ca and --insecure need --addr")
	}
	if o.Addr != "" && !o.Insecure && (o.CertFile == "" || o.KeyFile == "" || o.CAFile == "") {
		return nil, usagef("--addr needs --cert, --key and --ca (mutual TLS), or --insecure for a lab natd")
	}
	if o.Addr != "" && o.Insecure && o.CertFile != "" {
		return nil, usagef("--insecure and --cert are exclusive")
	}
	if o.Addr != "" {
		o.Socket = ""
	}
	cl, err := client.Dial(o)
	if err != nil {
		return nil, &localError{err}
	}
	a.cl = cl
	return cl, nil
}

// call returns a context for one unary call.
func (a *app) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// unary dials natd and makes one call under --timeout: the set-up every
// one-shot command shares. rpc is a method expression such as
// xnatv1.NatServiceClient.GetStats.
func unary[Q, R any](ctx context.Context, a *app, rpc func(xnatv1.NatServiceClient, context.Context, Q, ...grpc.CallOption) (R, error), req Q) (R, error) {
	cl, err := a.client()
	if err != nil {
		var zero R
		return zero, err
	}
	cctx, cancel := a.call(ctx)
	defer cancel()
	return rpc(cl, cctx, req)
}

// stream dials natd and opens a server stream, which runs until it ends
// or ctx does: --timeout does not bound it.
func stream[Q, S any](ctx context.Context, a *app, rpc func(xnatv1.NatServiceClient, context.Context, Q, ...grpc.CallOption) (S, error), req Q) (S, error) {
	cl, err := a.client()
	if err != nil {
		var zero S
		return zero, err
	}
	return rpc(cl, ctx, req)
}

// optDuration is d for the API, or nil (unset) when d is zero.
func optDuration(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}
