package mgmt

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ToStatus maps an error from Core (or from request decoding) to a gRPC
// status error. It is the only place where Go errors become gRPC codes:
// every handler returns ToStatus(err). The message is err.Error() unchanged,
// so the precise reason a core method gave reaches natctl verbatim.
//
//	ErrInvalid       -> InvalidArgument
//	ErrAlreadyExists -> AlreadyExists
//	ErrNotFound      -> NotFound
//	ErrPermission    -> PermissionDenied
//	ErrUnavailable   -> Unavailable
//	context errors   -> Canceled / DeadlineExceeded
//	anything else    -> Internal
//
// An error that already carries a gRPC status (from an interceptor) keeps
// it.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	c := Code(err)
	if s, ok := status.FromError(err); ok && s.Code() == c {
		return s.Err()
	}
	return status.Error(c, err.Error())
}

// reply answers an RPC: resp, or err as a gRPC status (ToStatus). It is
// the last line of every handler that only changes something.
func reply[R any](resp R, err error) (R, error) {
	if err != nil {
		var zero R
		return zero, ToStatus(err)
	}
	return resp, nil
}

// replyAfter answers a request that changes one thing: do(v), where v
// was converted from the request, unless the conversion failed with
// convErr; the answer is resp or either error, as reply gives it.
func replyAfter[T, R any](resp R, do func(T) error, v T, convErr error) (R, error) {
	if convErr == nil {
		convErr = do(v)
	}
	return reply(resp, convErr)
}

// Errorf returns an error of kind (one of the sentinel errors) whose
// message is exactly the formatted text: the kind selects the gRPC code and
// need not be repeated in the message. %w in format wraps as fmt.Errorf
// does.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// Code returns the gRPC code ToStatus uses for err.
func Code(err error) codes.Code {
	// An error made by Errorf says its kind outright, whatever it wraps.
	var ke *kindError
	if errors.As(err, &ke) && ke.kind != err {
		if c := Code(ke.kind); c != codes.Internal {
			return c
		}
	}
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, ErrAlreadyExists):
		return codes.AlreadyExists
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrPermission):
		return codes.PermissionDenied
	case errors.Is(err, ErrUnavailable):
		return codes.Unavailable
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Internal
}
