#!/usr/bin/env bash
# kit.sh builds .devkit/ at the top of the checkout (`make device-kit`):
# what bench/device/scaling.sh needs on a lent machine that has no Go
# toolchain, no package registry and maybe no ip, nft, ethtool, sysctl
# or ping:
#
#   .devkit/bin/      xnatbench, natd, l2fwd: static (CGO_ENABLED=0),
#                     without symbol table and DWARF (-s -w; panics still
#                     name their functions, perf would not), gzipped
#                     (NAME.gz): about 20 MB instead of 72 MB, for the
#                     64 MiB that a run may carry
#   .devkit/debs/     Debian 12 packages of those five tools and of every
#                     library they load except glibc's own (the device's
#                     glibc is newer, so the binaries run on it with their
#                     own libraries; scaling.sh unpacks them)
#   .devkit/REVISION  the commit the binaries were built from (-dirty if
#                     the tracked files were modified)
#   .devkit/SOURCES.sha256  the checksums of the Go sources built, so that
#                     scaling.sh can tell a stale kit from a fresh one
#
# It needs Go, gzip, apt-get (Debian 12; as root it runs `apt-get update` when
# the package lists are missing), dpkg-deb and readelf (for the check that
# the packages hold every library the tools need).
set -euo pipefail

cd "$(dirname "$0")/../.."
GO=${GO:-go}
KIT=.devkit
NEW=$KIT.new

# The tools the benchmark's lab runs (bench/lab, bench/harness): ip
# (netns, link, addr, route), ethtool -K (offloads), sysctl (in the
# namespaces), nft (the nftables DUT), ping (neighbour resolution).
TOOLS=(ip nft ethtool sysctl ping)
# Their packages, then the libraries those load (the closure of their
# ELF NEEDED entries, checked below), without libc6's own.
DEBS=(
	iproute2 ethtool nftables procps iputils-ping
	libbpf1 libelf1 zlib1g libmnl0 libxtables12 libcap2 libbsd0 libmd0
	libnftables1 libnftnl11 libjansson4 libgmp10 libedit2 libtinfo6
	libidn2-0 libunistring2
)
# What the device's glibc provides.
GLIBC_LIBS=" ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libresolv.so.2 libdl.so.2 libpthread.so.0 librt.so.1 "

rm -rf "$NEW"
mkdir -p "$NEW/bin" "$NEW/debs"

version=$(git describe --always --dirty 2>/dev/null || echo dev)
for c in xnatbench:./bench/harness/cmd/xnatbench natd:./cmd/natd l2fwd:./cmd/l2fwd; do
	name=${c%%:*} pkg=${c#*:}
	echo "kit: go build $pkg"
	CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w -X main.version=$version" -o "$NEW/bin/$name" "$pkg"
	# A static binary has no program interpreter (PT_INTERP).
	if readelf -l "$NEW/bin/$name" | grep -q 'Requesting program interpreter'; then
		echo "kit: $name is dynamically linked (does a package need cgo?)" >&2
		exit 1
	fi
	gzip -9 -n "$NEW/bin/$name"
done

echo "kit: apt-get download ${DEBS[*]}"
download() { (cd "$NEW/debs" && apt-get download "${DEBS[@]}"); }
if ! download; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "kit: apt-get download failed; run 'apt-get update' as root and retry" >&2
		exit 1
	fi
	echo "kit: apt-get download failed: apt-get update, then again"
	apt-get update -qq
	download
fi

# Check the closure: every library a tool loads, and every library those
# load, is in the packages or is glibc's.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in "$NEW"/debs/*.deb; do dpkg-deb -x "$d" "$tmp"; done
queue=()
for t in "${TOOLS[@]}"; do
	found=
	for dir in usr/sbin usr/bin sbin bin; do
		f=$tmp/$dir/$t
		if [ -f "$f" ] && [ ! -L "$f" ]; then found=$f; break; fi
	done
	if [ -z "$found" ]; then
		echo "kit: no $t in the packages" >&2
		exit 1
	fi
	queue+=("$found")
done
declare -A seen=()
bad=0
while [ ${#queue[@]} -gt 0 ]; do
	f=${queue[0]}
	queue=("${queue[@]:1}")
	for lib in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		[ -n "${seen[$lib]:-}" ] && continue
		seen[$lib]=1
		hit=$(find "$tmp/lib" "$tmp/usr/lib" -name "$lib" 2>/dev/null | head -1)
		if [ -n "$hit" ]; then
			queue+=("$(readlink -f "$hit")")
		elif [[ $GLIBC_LIBS != *" $lib "* ]]; then
			echo "kit: $lib (needed by ${f#"$tmp"/}) is in no package of the kit" >&2
			bad=1
		fi
	done
done
[ $bad -eq 0 ] || exit 1
echo "kit: libraries the tools load: ${!seen[*]}"

# REVISION: the commit, "-dirty" appended if tracked files differ from it
# (as xnatbench records it; scaling.sh passes it on, the lent machine has
# no repository), then git describe's name.
rev=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then rev=$rev-dirty; fi
printf '%s\n%s\n' "$rev" "$version" >"$NEW/REVISION"
git ls-files -z -- '*.go' go.mod go.sum | xargs -0 sha256sum >"$NEW/SOURCES.sha256"

rm -rf "$KIT"
mv "$NEW" "$KIT"
debs=("$KIT"/debs/*.deb)
echo "kit: $(du -sh "$KIT" | cut -f1) in $KIT ($(du -sb "$KIT" | cut -f1) bytes): $(cd "$KIT/bin" && echo *) and ${#debs[@]} packages"
