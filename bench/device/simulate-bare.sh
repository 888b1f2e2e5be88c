#!/usr/bin/env bash
# simulate-bare.sh runs scaling.sh here as on a lent machine that lacks
# ip, nft, ethtool, sysctl, ping, dpkg-deb, dpkg, git and Go: in a private
# mount namespace, each of those binaries is bind-mounted over by a stub
# that prints "hidden" and exits 127, and PATH holds only the system
# directories. As root; the environment (QUEUES, XNATBENCH_ARGS, OUT...)
# passes through, e.g.
#
#   QUEUES=1,2 XNATBENCH_ARGS=-quick OUT=/tmp/bare bench/device/simulate-bare.sh
#
# The lab's namespaces are made inside that mount namespace; their names
# (/run/netns files) and the lab's processes are visible outside as usual.
set -u
cd "$(dirname "$0")/../.." || exit 2
if [ "${1:-}" != --inside ]; then
	exec unshare -m --propagation private "$0" --inside
fi
stub=$(mktemp /tmp/xnat-hidden.XXXXXX) || exit 2
trap 'rm -f "$stub"' EXIT
printf '#!/bin/sh\necho hidden >&2\nexit 127\n' >"$stub"
chmod 755 "$stub"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for t in ip nft ethtool sysctl ping dpkg-deb dpkg git; do
	f=$(command -v "$t") || continue
	mount --bind "$stub" "$f" || exit 2
done
for t in ip nft ethtool sysctl ping dpkg-deb git go; do
	if "$t" --version >/dev/null 2>&1; then
		echo "simulate-bare.sh: $t still runs" >&2
		exit 2
	fi
done
echo "simulate-bare.sh: ip, nft, ethtool, sysctl, ping, dpkg-deb, dpkg, git and go are gone"
bash bench/device/scaling.sh
