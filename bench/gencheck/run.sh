#!/bin/sh
# Generator check: trafficgen vs trafgen into an XDP_DROP sink, recorded
# under bench/results/gencheck (results.json, results.md). Needs root.
set -eu
cd "$(dirname "$0")/../.."
XNAT_BENCH=1 XNAT_BENCH_OUT=bench/results/gencheck \
	go test ./bench/gencheck -run TestGenCheck -v -count=1 -timeout 15m "$@"
