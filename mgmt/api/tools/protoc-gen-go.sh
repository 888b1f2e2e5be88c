#!/bin/sh
# protoc plugin wrapper: runs the pinned protoc-gen-go without a global
# install. Keep the version equal to google.golang.org/protobuf in go.mod.
exec go run google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12 "$@"
