#!/bin/sh
# protoc plugin wrapper: runs the pinned protoc-gen-go-grpc without a global
# install.
exec go run google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2 "$@"
