package mgmt

// The gRPC API's Go code is generated from api/xnat/v1/xnat.proto and
// committed, so a plain `go build` needs no protoc. Regenerate with
// `go generate ./mgmt/` (what `make generate` runs). It needs protoc
// (Debian: protobuf-compiler) and the well-known types' .proto files
// (Debian: libprotobuf-dev); the two plugins run through
// `go run module@version` with the versions pinned in api/tools/*.sh.
//go:generate protoc -I api --plugin=protoc-gen-go=api/tools/protoc-gen-go.sh --plugin=protoc-gen-go-grpc=api/tools/protoc-gen-go-grpc.sh --go_out=api --go_opt=paths=source_relative --go-grpc_out=api --go-grpc_opt=paths=source_relative xnat/v1/xnat.proto
