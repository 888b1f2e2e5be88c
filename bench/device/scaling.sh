#!/usr/bin/env bash
# Queue scaling on a lent machine: what issue 14's queue targets need
# (xnat at 4 queue pairs >= 3.5x its 1-queue zero-loss rate, >= 0.9x
# l2fwd at every count) and a 2-vCPU machine cannot show.
#
# The one command, from a session that ran `make device-kit` here first:
#
#   run  command: bash bench/device/scaling.sh
#        carry:   [".devkit"]
#        timeout_s: 600
#
# It runs from the top of the checkout, as root, on a machine with no Go,
# no package registry and maybe no ip, nft, ethtool, sysctl or ping: it
# unpacks the kit's Debian packages into a temporary prefix and runs the
# tools from there (with their own libraries; the machine's glibc), checks
# the machine (preflight), then runs
#
#   xnatbench -cells=false -kernelgen 0 -micro=false -queues "$QUEUES" \
#       -natd ... -l2fwd ... -out "$OUT/scaling" $XNATBENCH_ARGS
#
# under a deadline, and writes to $OUT: scaling.log (everything printed)
# and scaling/results.json, scaling/results.md.
#
# Environment (all optional):
#   QUEUES             queue counts, in order (default 1,4: the targets'
#                      two; a second call with QUEUES=2,6
#                      XNATBENCH_ARGS='-trial 1s -queue-trials 6
#                      -queue-runs 1' adds the others if time is left)
#   XNATBENCH_ARGS     more xnatbench flags, split on blanks (default
#                      '-trial 1s -queue-trials 6': with the full mode's
#                      three runs of each DUT at each N, taking turns:
#                      the nine runs at N = 1 took 116 s on the 2-vCPU
#                      machine, so 1 and 4 should take about 250 s;
#                      make bench's trials are 2 s and its search takes
#                      up to 8)
#   OUT                where the results go (default ./devkit-out)
#   SCALING_TOTAL_S    the script's own deadline in seconds (default 540,
#                      under the run tool's 600 s, for the copy back)
#   XNATBENCH_TIMEOUT  xnatbench's budget in seconds (default: what is left
#                      of SCALING_TOTAL_S after the preflight, less
#                      XNATBENCH_KILL_AFTER and a 20 s margin)
#   XNATBENCH_KILL_AFTER  seconds from xnatbench's SIGINT to SIGKILL
#                      (default 100: it gets 60 s to finish its trial and
#                      remove its lab, then tears the lab down within 30 s)
#   DEVKIT_UNPACK      auto (default), dpkg, python or ar: how to unpack
#   DEVKIT_STALE_OK    1: run even if the Go sources differ from the kit's
#
# What the machine must have: bash, coreutils (timeout, sha256sum, ...),
# awk, gzip or python3, a way to unpack a .deb (dpkg-deb, python3 with
# lzma, or ar and tar with xz) and glibc >= 2.36 at
# /lib64/ld-linux-x86-64.so.2 (the packages are Debian 12's).
#
# Nothing outside the namespaces that xnatbench's labs (and the preflight's
# one) create and delete is configured, except what xnatbench itself sets
# for the run and puts back: the kernel DUT's nf_conntrack_max and
# rps_sock_flow_entries, and the nice values of ksoftirqd, the kworkers and
# its own autogroup.
set -u

# OUT is resolved before the cd, so a relative OUT means the caller's
# directory.
OUT=${OUT:-./devkit-out}
mkdir -p "$OUT" || { echo "scaling.sh: cannot create OUT=$OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/../.." || exit 2
LOG=$OUT/scaling.log

QUEUES=${QUEUES:-1,4}
XNATBENCH_ARGS=${XNATBENCH_ARGS--trial 1s -queue-trials 6}
SCALING_TOTAL_S=${SCALING_TOTAL_S:-540}
XNATBENCH_KILL_AFTER=${XNATBENCH_KILL_AFTER:-100}
DEVKIT_UNPACK=${DEVKIT_UNPACK:-auto}
KIT=.devkit
# The tools bench/lab and bench/harness run (see bench/device/kit.sh).
TOOLS=(ip nft ethtool sysctl ping)
LOADER=/lib64/ld-linux-x86-64.so.2

say() { echo "scaling.sh: $*"; }
die() {
	echo "scaling.sh: ERROR: $*"
	exit 2
}

# unpack_python DEB DEST: an ar archive's data.tar.* (gz, xz or bz2)
# extracted by python3 alone, links kept as they are.
unpack_python() {
	python3 - "$1" "$2" <<'PY'
import io, os, shutil, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
with open(deb, "rb") as f:
    if f.read(8) != b"!<arch>\n":
        sys.exit(deb + ": not an ar archive")
    data = None
    while True:
        h = f.read(60)
        if len(h) < 60:
            break
        name = h[:16].decode().strip().rstrip("/")
        size = int(h[48:58].decode().strip())
        body = f.read(size)
        if size % 2:
            f.read(1)
        if name.startswith("data.tar"):
            data = body
    if data is None:
        sys.exit(deb + ": no data.tar member")
tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
for m in tf:
    rel = os.path.normpath(m.name.lstrip("/"))
    if rel == ".":
        continue
    if rel.startswith(".."):
        sys.exit(deb + ": member outside the archive: " + m.name)
    path = os.path.join(dest, rel)
    if m.isdir():
        os.makedirs(path, exist_ok=True)
        continue
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.lexists(path):
        os.remove(path)
    if m.issym():
        os.symlink(m.linkname, path)
    elif m.islnk():
        shutil.copy2(os.path.join(dest, os.path.normpath(m.linkname.lstrip("/"))), path)
    elif m.isreg():
        with tf.extractfile(m) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(path, m.mode & 0o777)
PY
}

# unpack_ar DEB DEST: the same with binutils' ar and GNU tar (which
# needs the decompressor, xz for Debian's packages).
unpack_ar() {
	local d member
	d=$(mktemp -d) || return 1
	member=$(ar t "$1" | grep '^data\.tar') &&
		ar p "$1" "$member" >"$d/$member" &&
		tar -xf "$d/$member" -C "$2"
	local rc=$?
	rm -rf "$d"
	return $rc
}

# real_tool PREFIX NAME: the unpacked binary NAME, following the
# packages' absolute links (/sbin/ip -> /bin/ip) inside the prefix.
real_tool() {
	local dir f t
	for dir in usr/sbin usr/bin sbin bin; do
		f=$1/$dir/$2
		while [ -L "$f" ]; do
			t=$(readlink "$f")
			case $t in
			/*) f=$1$t ;;
			*) f=$(dirname "$f")/$t ;;
			esac
		done
		if [ -f "$f" ] && [ -x "$f" ]; then
			echo "$f"
			return 0
		fi
	done
	return 1
}

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	if [ -n "${PRE_NS:-}" ] && [ -e "/run/netns/$PRE_NS" ]; then
		ip netns del "$PRE_NS" || say "could not delete the preflight namespace $PRE_NS"
	fi
	[ -n "${PREFIX:-}" ] && rm -rf "$PREFIX"
}

# sweep_labs: namespaces left by a lab whose process is gone (xnatbench
# killed after its grace): their processes killed, the namespaces deleted,
# as the next lab would (bench/lab SweepStale). Only lab names are touched.
sweep_labs() {
	local p n pid left=0
	for p in /run/netns/xn*; do
		n=${p##*/}
		[[ $n =~ ^xn([0-9]+)x[0-9]+- ]] || continue
		pid=${BASH_REMATCH[1]}
		kill -0 "$pid" 2>/dev/null && continue
		left=1
		say "removing the namespace $n of the dead lab process $pid"
		ip netns pids "$n" 2>/dev/null | xargs -r kill -9
		ip netns del "$n" || say "could not delete $n"
	done
	[ $left -eq 0 ] && say "no lab namespaces left behind"
}

main() {
	local start=$SECONDS
	say "$(date -u +%FT%TZ) start; QUEUES=$QUEUES XNATBENCH_ARGS='$XNATBENCH_ARGS' OUT=$OUT"
	[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, XDP)"
	if [ ! -d "$KIT/bin" ] || [ ! -d "$KIT/debs" ]; then
		die "no $KIT/ here: run 'make device-kit' and carry [\".devkit\"]"
	fi
	say "kit built from $(tr '\n' ' ' <"$KIT/REVISION" 2>/dev/null)"
	# For results.json: xnatbench reads the revision from git, which
	# the lent machine lacks (bench/harness ReadMachine).
	XNATBENCH_GIT_REVISION=$(head -n 1 "$KIT/REVISION" 2>/dev/null)
	export XNATBENCH_GIT_REVISION
	if ! sha256sum -c --quiet "$KIT/SOURCES.sha256" >/dev/null 2>&1; then
		if [ "${DEVKIT_STALE_OK:-0}" = 1 ]; then
			say "WARNING: the Go sources differ from the kit's (DEVKIT_STALE_OK=1: running anyway)"
		else
			sha256sum -c --quiet "$KIT/SOURCES.sha256" 2>&1 | head -5
			die "the Go sources differ from the kit's: run 'make device-kit' again (or DEVKIT_STALE_OK=1)"
		fi
	fi

	PREFIX=$(mktemp -d /tmp/xnat-devkit.XXXXXX) || die "mktemp failed"
	trap cleanup EXIT

	# Unpack the packages.
	local how=$DEVKIT_UNPACK deb
	if [ "$how" = auto ]; then
		if dpkg-deb --version >/dev/null 2>&1; then
			how=dpkg
		elif python3 -c 'import lzma, tarfile' >/dev/null 2>&1; then
			how=python
		elif ar --version >/dev/null 2>&1 && tar --version >/dev/null 2>&1; then
			how="ar"
		else
			die "cannot unpack .deb files: no working dpkg-deb, python3 (with lzma) or ar and tar"
		fi
	fi
	local debs=("$KIT"/debs/*.deb)
	[ -f "${debs[0]}" ] || die "no packages in $KIT/debs: run 'make device-kit'"
	for deb in "${debs[@]}"; do
		case $how in
		dpkg) dpkg-deb -x "$deb" "$PREFIX" ;;
		python) unpack_python "$deb" "$PREFIX" ;;
		ar) unpack_ar "$deb" "$PREFIX" ;;
		*) die "DEVKIT_UNPACK=$how: want auto, dpkg, python or ar" ;;
		esac || die "unpacking $deb ($how) failed"
	done
	say "unpacked ${#debs[@]} packages with $how into $PREFIX"

	# The Go binaries.
	mkdir -p "$PREFIX/xnat" "$PREFIX/kitbin" || die "mkdir failed"
	local b
	for b in xnatbench natd l2fwd; do
		[ -f "$KIT/bin/$b.gz" ] || die "no $KIT/bin/$b.gz: run 'make device-kit'"
		if gzip --version >/dev/null 2>&1; then
			gzip -dc "$KIT/bin/$b.gz" >"$PREFIX/xnat/$b"
		else
			python3 -c 'import gzip, shutil, sys; shutil.copyfileobj(gzip.open(sys.argv[1]), sys.stdout.buffer)' \
				"$KIT/bin/$b.gz" >"$PREFIX/xnat/$b"
		fi || die "unpacking $b failed"
		chmod 755 "$PREFIX/xnat/$b"
	done

	# The tools run by the machine's dynamic loader with the kit's
	# libraries. Through the loader rather than an exported
	# LD_LIBRARY_PATH: the machine's own programs (its sh, coreutils,
	# python3) never see Debian 12's libraries, which may be older than
	# what they were built against; and nothing the tools start inherits
	# them.
	[ -x "$LOADER" ] || die "no $LOADER (not x86-64 glibc?)"
	local libpath="" dir t real
	for dir in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu lib usr/lib; do
		[ -d "$PREFIX/$dir" ] && libpath=${libpath:+$libpath:}$PREFIX/$dir
	done
	for t in "${TOOLS[@]}"; do
		real=$(real_tool "$PREFIX" "$t") || die "$t is in none of the kit's packages"
		# shellcheck disable=SC2016 # $0 and $@ are the wrapper's
		printf '#!/bin/sh\nexec %s --library-path %s --argv0 "$0" %s "$@"\n' "'$LOADER'" "'$libpath'" "'$real'" >"$PREFIX/kitbin/$t"
		chmod 755 "$PREFIX/kitbin/$t"
	done
	export PATH="$PREFIX/kitbin:$PREFIX/xnat:$PATH"
	say "PATH=$PATH"
	say "kit library path: $libpath"

	# Preflight.
	say "---- preflight"
	say "kernel $(uname -r), $(nproc) CPUs, $(awk '/MemAvailable/ {printf "%.1f GiB available", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
	for t in "${TOOLS[@]}"; do
		say "$t -> $(command -v "$t" || echo MISSING)"
	done
	ip -V || die "ip does not run"
	nft -v || die "nft does not run"
	ethtool --version || die "ethtool does not run"
	sysctl --version || die "sysctl does not run"
	ping -V || die "ping does not run"
	PRE_NS=xkpre$$
	ip netns add "$PRE_NS" || die "ip netns add failed"
	ip -n "$PRE_NS" link add name xk0 numtxqueues 4 numrxqueues 4 type veth peer name xk1 numtxqueues 4 numrxqueues 4 ||
		die "no multi-queue veth pair (ip link add ... numtxqueues 4 numrxqueues 4 type veth)"
	local nq
	nq=$(ip netns exec "$PRE_NS" sh -c 'ls -d /sys/class/net/xk0/queues/rx-* | wc -l')
	[ "$nq" = 4 ] || die "the veth has $nq rx queues, not 4"
	ip netns exec "$PRE_NS" ethtool -K xk0 tx off tso off gso off gro off >/dev/null || die "ethtool -K failed"
	for t in lo xk0 xk1; do
		ip -n "$PRE_NS" link set "$t" up || die "ip link set $t up failed"
	done
	ip netns exec "$PRE_NS" sysctl -q -w net.ipv4.ip_forward=1 || die "sysctl in a namespace failed"
	ip netns exec "$PRE_NS" nft add table ip xkpre || die "nft in a namespace failed"
	ip netns exec "$PRE_NS" ping -c 1 -W 1 127.0.0.1 >/dev/null || die "ping in a namespace failed"
	ip netns del "$PRE_NS" || die "ip netns del failed"
	PRE_NS=
	say "preflight ok: a 4-queue veth pair, ethtool, sysctl, nft and ping in a throwaway namespace ($((SECONDS - start)) s so far)"

	# The run.
	local budget
	if [ -n "${XNATBENCH_TIMEOUT:-}" ]; then
		budget=$XNATBENCH_TIMEOUT
		[ "$budget" -ge 1 ] 2>/dev/null || die "XNATBENCH_TIMEOUT=$budget: want whole seconds"
	else
		budget=$((SCALING_TOTAL_S - (SECONDS - start) - XNATBENCH_KILL_AFTER - 20))
		[ "$budget" -ge 60 ] || die "only $budget s left for xnatbench (SCALING_TOTAL_S=$SCALING_TOTAL_S, XNATBENCH_KILL_AFTER=$XNATBENCH_KILL_AFTER)"
	fi
	local extra=()
	read -r -a extra <<<"$XNATBENCH_ARGS"
	local cmd=(xnatbench -cells=false -kernelgen 0 -micro=false -queues "$QUEUES"
		-natd "$PREFIX/xnat/natd" -l2fwd "$PREFIX/xnat/l2fwd" -out "$OUT/scaling" "${extra[@]}")
	say "---- $(date -u +%T) ${cmd[*]}"
	say "SIGINT after ${budget} s, SIGKILL ${XNATBENCH_KILL_AFTER} s later"
	# --foreground: the signal goes to xnatbench alone, which stops after
	# its trial, removes its lab and writes what it measured.
	timeout --foreground -s INT -k "$XNATBENCH_KILL_AFTER" "$budget" "${cmd[@]}"
	local rc=$?
	case $rc in
	0) say "xnatbench finished" ;;
	124) say "xnatbench ran out of its ${budget} s: the results are partial" ;;
	137) say "xnatbench was killed ${XNATBENCH_KILL_AFTER} s after its SIGINT: no results written" ;;
	*) say "xnatbench exited with status $rc" ;;
	esac
	sweep_labs

	local n
	n=$(find "$OUT" -type f | wc -l)
	say "$(date -u +%T) done in $((SECONDS - start)) s; $n files in OUT (at most 8 come back):"
	(cd "$OUT" && find . -type f | sort)
	[ "$n" -le 8 ] || say "WARNING: $n files in $OUT: only 8 come back"
	return $rc
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
