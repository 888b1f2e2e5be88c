package mgmt

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	xnatv1 "github.com/xnat/xnat/mgmt/api/xnat/v1"
)

// The access table must name every RPC of the service, so that adding an
// RPC forces a decision about who may call it.
func TestMethodTableCoversService(t *testing.T) {
	sd := xnatv1.File_xnat_v1_xnat_proto.Services().ByName("NatService")
	if sd == nil {
		t.Fatal("NatService not in the file descriptor")
	}
	methods := sd.Methods()
	if methods.Len() != len(methodMutates) {
		t.Errorf("service has %d methods, the table %d", methods.Len(), len(methodMutates))
	}
	for i := 0; i < methods.Len(); i++ {
		full := fmt.Sprintf("/%s/%s", sd.FullName(), methods.Get(i).Name())
		if _, ok := methodMutates[full]; !ok {
			t.Errorf("%s missing from methodMutates", full)
		}
	}
	if !Mutates("/xnat.v1.NatService/SomethingNew") {
		t.Error("an unknown method must count as mutating")
	}
}

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("pool x: %w", ErrInvalid), codes.InvalidArgument, "pool x: invalid argument"},
		{Errorf(ErrInvalid, "prefix %s has host bits set", "198.18.0.5/28"), codes.InvalidArgument, "prefix 198.18.0.5/28 has host bits set"},
		{Errorf(ErrAlreadyExists, "pool %q exists", "main"), codes.AlreadyExists, `pool "main" exists`},
		{fmt.Errorf("outer: %w", Errorf(ErrNotFound, "no session 3")), codes.NotFound, "outer: no session 3"},
		{Errorf(ErrPermission, "nope"), codes.PermissionDenied, "nope"},
		{Errorf(ErrUnavailable, "starting"), codes.Unavailable, "starting"},
		{errors.New("disk on fire"), codes.Internal, "disk on fire"},
		{fmt.Errorf("list: %w", context.Canceled), codes.Canceled, "list: context canceled"},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded"},
		{status.Error(codes.ResourceExhausted, "slow down"), codes.ResourceExhausted, "slow down"},
		// The kind given to Errorf wins over what the message wraps.
		{Errorf(ErrAlreadyExists, "conflict: %w", ErrInvalid), codes.AlreadyExists, "conflict: invalid argument"},
	} {
		s, ok := status.FromError(ToStatus(tc.err))
		if !ok || s.Code() != tc.code || s.Message() != tc.msg {
			t.Errorf("ToStatus(%v) = %v %q, want %v %q", tc.err, s.Code(), s.Message(), tc.code, tc.msg)
		}
	}
	if ToStatus(nil) != nil {
		t.Error("ToStatus(nil) != nil")
	}
}
