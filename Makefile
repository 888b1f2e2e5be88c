# xnat — see README.md. Every target runs from a fresh clone; `make test`
# and `make demo` need root (network namespaces, XDP).

GO      ?= go
BIN     := bin
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test lint generate demo demo-scaleout bench bench-quick bench-micro bench-instr fuzz device-kit clean

all: build

## build: natd, natctl, trafficgen, l2fwd and xnatlab into bin/
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

## test: vet, then every test with the race detector where it runs, then
## the tests too big or too timing-bound for it. Privileged tests build
## their own namespace labs; without root they skip, except under CI=true,
## where they fail.
test:
	$(GO) vet ./...
	$(GO) test -race -timeout 40m ./...
	$(GO) test -count=1 -run 'TestRFCSuiteInEveryMode|TestCGNLogVolume' ./dataplane/nat/
	$(GO) test -timeout 10m -run 'TestTenMillionSessions' ./flowtable/
	$(GO) test -timeout 5m -run 'TestScaleOut' ./bench/lab/scaleoutlab/

## lint: gofmt, go vet and staticcheck must all be clean, and go.mod and
## go.sum must be tidy (go mod tidy would change nothing).
lint:
	$(GO) mod tidy -diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## generate: the XDP program (bpf2go, needs clang) and the gRPC API (protoc).
generate:
	$(GO) generate ./dataplane/xdpprog/ ./mgmt/

## demo: build, then run natd in the built-in lab and show what it does.
demo: build
	./$(BIN)/xnatlab demo -natd $(BIN)/natd -natctl $(BIN)/natctl -config deploy/examples/lab.yaml

## demo-scaleout: build, then three natd appliances behind BIRD routers,
## 300 subscribers, failovers and a drain (docs/scaleout.md; about 90 s).
demo-scaleout: build
	./$(BIN)/xnatlab scaleout -natd $(BIN)/natd -natctl $(BIN)/natctl

## bench-micro: the Go benchmarks of the packet core, against their baselines.
bench-micro:
	$(GO) test -run XXX -bench . -benchmem -count 5 ./checksum/ ./ring/ ./flowtable/ ./dataplane/nat/ ./dataplane/header/

## bench-instr: instructions per packet of each engine benchmark case
## (established-1k, established-1m, new-session) under valgrind's callgrind,
## which the machine's load does not change, the locked ones among them
## (on amd64), and each pipeline stage's share; about a minute. See
## bench/instr and docs/engineering.md.
bench-instr:
	$(GO) run ./bench/instr

## bench: the end-to-end benchmark (root; about 30 minutes on 2 vCPUs):
## l2fwd, xnat and nftables in the namespace lab (1, 1k, 100k, 1M flows;
## 64-byte and IMIX frames), the kernel-generator scenario (trafgen, 4
## repetitions), scaling across 1, 2 (and on bigger machines 4, 6...) queue
## pairs, then the micro-benchmarks. Writes
## bench/results/latest/ (results.json, results.md, throughput.png,
## latency.png). See bench/harness.
bench: build
	$(GO) run ./bench/harness/cmd/xnatbench -out bench/results/latest -natd $(BIN)/natd -l2fwd $(BIN)/l2fwd

## bench-quick: a subset of bench in about 3 minutes (1k and 1M flows,
## 64-byte frames, 0.5 s trials, 1 and 2 queue pairs with 4096 flows, one
## 300k-frame trafgen run, one short micro-benchmark run). Writes
## bench/results/quick/ (not committed).
bench-quick: build
	$(GO) run ./bench/harness/cmd/xnatbench -quick -out bench/results/quick -natd $(BIN)/natd -l2fwd $(BIN)/l2fwd

## fuzz: every Go fuzz target in the repository (not part of test), each
## until FUZZEXECS executions or FUZZTIME, whichever first, as many at a
## time as there are cores; prints executions per target and copies any
## failing input into its package's testdata/fuzz. For example
## `make fuzz FUZZTIME=30s`. See bench/fuzz/run.sh and docs/engineering.md.
FUZZTIME  ?= 10m
FUZZEXECS ?= 10000000
fuzz:
	GO=$(GO) bench/fuzz/run.sh $(FUZZTIME) $(FUZZEXECS)

## device-kit: .devkit/ for bench/device/scaling.sh, the queue-scaling run
## on a lent machine without Go or a package registry: static xnatbench,
## natd and l2fwd (gzipped) and the Debian 12 packages of ip, nft,
## ethtool, sysctl and ping with their libraries (about 25 MB; needs
## apt-get). See bench/results/README.md.
device-kit:
	GO=$(GO) bench/device/kit.sh

clean:
	rm -rf $(BIN)
