#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (every `func Fuzz*` in a
# _test.go file) and prints, per target, the executions, the seconds and
# the result. Each target stops at FUZZTIME or at EXECS executions,
# whichever comes first.
#
#   bench/fuzz/run.sh [FUZZTIME [EXECS]]     build into bin/fuzz, run, and copy any
#                                            failing input into the package's testdata
#   bench/fuzz/run.sh build DIR              build one test binary per package with
#                                            fuzz targets into DIR, with its seed
#                                            corpus and this script (needs Go)
#   bench/fuzz/run.sh run DIR [FUZZTIME [EXECS]]
#                                            run what build put in DIR; needs only
#                                            bash and coreutils, so DIR can be
#                                            carried to a machine without Go
#   bench/fuzz/run.sh harvest DIR [MAX]      copy up to MAX (default 20) of the
#                                            smallest new inputs each target found
#                                            into its package's testdata/fuzz
#
# FUZZTIME is a Go duration (90s, 10m, 1h30m; default 10m); EXECS a count
# (default 10000000). Targets run in parallel, as many at a time as there
# are cores, each with its share of the cores as fuzzing workers (-parallel,
# at least 1). The go command stops a target at EXECS by itself
# (-fuzztime=EXECSx); at FUZZTIME this script interrupts it, as Ctrl-C
# would, which the fuzzer treats as a normal end.
#
# DIR layout: DIR/targets ("package-dir target" per line),
# DIR/pkg/<package-dir>/<name>.test with its testdata/ (the fuzzer reads
# seeds from testdata/fuzz/<target>/ and writes failing inputs there),
# DIR/cache/<package-dir>/<target>/ (new interesting inputs), and
# DIR/logs/<target>.log.
set -euo pipefail

die() { echo "run.sh: $*" >&2; exit 2; }

# seconds converts a Go duration of h, m and s parts to whole seconds.
seconds() {
	local d=$1 total=0 n unit
	[[ $d =~ ^([0-9]+[hms])+$ ]] || die "FUZZTIME $d: want a duration such as 90s, 10m or 1h30m"
	while [[ $d =~ ^([0-9]+)([hms])(.*)$ ]]; do
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
		case $unit in
		h) total=$((total + n * 3600)) ;;
		m) total=$((total + n * 60)) ;;
		s) total=$((total + n)) ;;
		esac
	done
	echo "$total"
}

cores() { nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1; }

build() {
	local dir=$1 root
	root=$(cd "$(dirname "$0")/../.." && pwd)
	command -v "${GO:-go}" >/dev/null || die "build needs the go command (or GO=path)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	: >"$dir/targets"
	local pkg file target
	cd "$root"
	# Every package with a Fuzz target, and its targets, from the sources.
	while read -r pkg; do
		mkdir -p "$dir/pkg/$pkg"
		echo "building $pkg" >&2
		# -fuzz instruments the binary for coverage guidance, as go test -fuzz does.
		"${GO:-go}" test -c -fuzz=. -o "$dir/pkg/$pkg/$(basename "$pkg").test" "./$pkg"
		rm -rf "$dir/pkg/$pkg/testdata"
		if [[ -d $pkg/testdata ]]; then
			cp -R "$pkg/testdata" "$dir/pkg/$pkg/testdata"
		fi
		for file in "$pkg"/*_test.go; do
			sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*\*testing\.F).*/\1/p' "$file"
		done | sort | while read -r target; do
			echo "$pkg $target" >>"$dir/targets"
		done
	done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Za-z0-9_]*(.*\*testing\.F)' | xargs -n1 dirname | sort -u)
	cp "$root/bench/fuzz/run.sh" "$dir/run.sh"
	echo "$(wc -l <"$dir/targets") targets in $dir; run them with: $dir/run.sh run $dir [FUZZTIME [EXECS]]" >&2
}

# runone runs one target and prints "target executions seconds result".
runone() {
	local dir=$1 pkg=$2 target=$3 limit=$4 execs=$5 par=$6
	local log=$dir/logs/$target.log bin start rc=0 pid n elapsed result
	bin=$(ls "$dir/pkg/$pkg"/*.test)
	mkdir -p "$dir/cache/$pkg"
	start=$SECONDS
	(
		cd "$dir/pkg/$pkg"
		exec "$bin" -test.run='^$' -test.fuzz="^${target}\$" -test.fuzztime="${execs}x" \
			-test.parallel="$par" -test.fuzzcachedir="$dir/cache/$pkg" -test.timeout=0
	) >"$log" 2>&1 &
	pid=$!
	# At the time limit, interrupt the fuzzer as Ctrl-C would (it stops its
	# workers and reports); one still there a minute later is killed.
	local sent=0
	while kill -0 "$pid" 2>/dev/null; do
		if ((!sent && SECONDS - start >= limit)); then
			kill -INT "$pid" 2>/dev/null || true
			sent=$SECONDS
		elif ((sent && SECONDS - sent >= 60)); then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 1
	done
	wait "$pid" || rc=$?
	elapsed=$((SECONDS - start))
	# The fuzzer's status lines: "fuzz: elapsed: 3s, execs: 123 (41/sec), ...".
	n=$(sed -n 's/.*fuzz: elapsed: [^,]*, execs: \([0-9]*\).*/\1/p' "$log" | tail -n1)
	if [[ $rc -eq 0 ]] && grep -q '^PASS' "$log"; then
		result=PASS
	elif grep -q 'Failing input written to' "$log"; then
		result="FAIL:$dir/pkg/$pkg/$(sed -n 's/.*Failing input written to \(.*\)/\1/p' "$log" | tail -n1)"
	elif grep -q -- '--- FAIL' "$log"; then
		result="FAIL(an input already in testdata/fuzz; see $log)"
	else
		result="ERROR(rc=$rc,log=$log)"
	fi
	printf '%-24s %12s %8d %s\n' "$target" "${n:-0}" "$elapsed" "$result"
}

run() {
	local dir=$1 fuzztime=${2:-10m} execs=${3:-10000000}
	[[ -f $dir/targets ]] || die "$dir/targets missing: run '$0 build $dir' first"
	dir=$(cd "$dir" && pwd)
	[[ $execs =~ ^[0-9]+$ && $execs -gt 0 ]] || die "EXECS $execs: want a positive count"
	local limit ncpu ntargets jobs par
	limit=$(seconds "$fuzztime")
	ncpu=$(cores)
	ntargets=$(wc -l <"$dir/targets")
	jobs=$((ncpu < ntargets ? ncpu : ntargets))
	par=$((ncpu / ntargets))
	((par >= 1)) || par=1
	mkdir -p "$dir/logs"
	echo "# $ntargets targets, $jobs at a time, $par fuzzing workers each; each stops at $fuzztime or $execs executions" >&2
	local out=$dir/logs/table pkg target running=0
	: >"$out"
	while read -r pkg target; do
		runone "$dir" "$pkg" "$target" "$limit" "$execs" "$par" >>"$out" &
		running=$((running + 1))
		if ((running >= jobs)); then
			wait -n || true
			running=$((running - 1))
		fi
	done <"$dir/targets"
	wait
	printf '%-24s %12s %8s %s\n' target executions seconds result
	sort "$out"
	! grep -qv ' PASS$' "$out"
}

# harvest copies the smallest new inputs from the fuzz cache into the
# packages' testdata, skipping inputs already there.
harvest() {
	local dir=$1 max=${2:-20} root pkg target f n
	root=$(cd "$(dirname "$0")/../.." && pwd)
	dir=$(cd "$dir" && pwd)
	while read -r pkg target; do
		[[ -d $dir/cache/$pkg/$target ]] || continue
		mkdir -p "$root/$pkg/testdata/fuzz/$target"
		n=0
		while read -r f; do
			[[ -e $root/$pkg/testdata/fuzz/$target/$(basename "$f") ]] && continue
			((n < max)) || break
			cp "$f" "$root/$pkg/testdata/fuzz/$target/"
			n=$((n + 1))
		done < <(ls -Sr "$dir/cache/$pkg/$target" | sed "s|^|$dir/cache/$pkg/$target/|")
		echo "$target: $n inputs copied into $pkg/testdata/fuzz/$target" >&2
	done <"$dir/targets"
}

case ${1:-} in
build)
	[[ $# -eq 2 ]] || die "usage: $0 build DIR"
	build "$2"
	;;
run)
	[[ $# -ge 2 && $# -le 4 ]] || die "usage: $0 run DIR [FUZZTIME [EXECS]]"
	run "$2" "${3:-}" "${4:-}"
	;;
harvest)
	[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 harvest DIR [MAX]"
	harvest "$2" "${3:-20}"
	;;
*)
	root=$(cd "$(dirname "$0")/../.." && pwd)
	dir=$root/bin/fuzz
	build "$dir"
	rc=0
	run "$dir" "${1:-10m}" "${2:-10000000}" || rc=$?
	# Failing inputs go where `go test` replays them.
	while read -r pkg target; do
		for f in "$dir/pkg/$pkg/testdata/fuzz/$target"/*; do
			[[ -e $f && ! -e $root/$pkg/testdata/fuzz/$target/$(basename "$f") ]] || continue
			mkdir -p "$root/$pkg/testdata/fuzz/$target"
			cp "$f" "$root/$pkg/testdata/fuzz/$target/"
			echo "failing input: $pkg/testdata/fuzz/$target/$(basename "$f") (go test ./$pkg -run '$target/$(basename "$f")')" >&2
		done
	done <"$dir/targets"
	exit "$rc"
	;;
esac
