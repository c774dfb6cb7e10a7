#!/usr/bin/env bash
# What an enrolled, converged node costs its host while nothing happens:
# examples/local.yaml (master, two workers, prometheus) built and brought
# up under QEMU, then each VM's emulator CPU-seconds (from /proc) sampled
# over MINUTES minutes (default 3) and printed per node as CPU-seconds a
# minute. Under TCG on few cores that idle cost is taken from every node
# that still has work: the 16-node reference has fifteen idle neighbours
# for each busy one.
#
# Usage: sudo bash bench/idle.sh [WORKDIR]
#   NODE_BINARIES=DIR builds the images with another kubedosd (default the
#   repo's bin/), to compare two; needs root, Debian's mirror, make build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
w=${1:-$(mktemp -d /tmp/kubedos-idle-XXXX)}
kubedos=${KUBEDOS:-$repo/bin/kubedos}
bins=${NODE_BINARIES:-$repo/bin}
minutes=${MINUTES:-3}
mkdir -p "$w"
cd "$w"
cp "$repo/examples/local.yaml" cluster.yaml
[ -d keys ] || "$kubedos" keys init --dir keys --cluster local >/dev/null
"$kubedos" lock cluster.yaml >/dev/null
"$kubedos" fetch cluster.yaml --cache cache >/dev/null
build=$("$kubedos" build cluster.yaml --cache cache --out out --node-binaries "$bins" | tail -n 1)
echo "idle: kubedosd $(sha256sum "$bins/kubedosd" | cut -c1-12), build $build"
trap '"$kubedos" cluster down cluster.yaml --purge >/dev/null 2>&1 || true' EXIT
"$kubedos" cluster up cluster.yaml --build "$build" --keys keys --timeout 1h >up.log 2>&1 ||
	{ tail -n 30 up.log >&2; exit 1; }
# Settle: the last plane handshakes and the first scrapes.
sleep 60

tck=$(getconf CLK_TCK)
sample() {
	for pid in $(pgrep -f '^qemu-system' || true); do
		name=$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -A1 -x -- -name | tail -n 1) || continue
		read -r -a st <"/proc/$pid/stat" || continue
		echo "$name $(( st[13] + st[14] ))"
	done | sort
}
sample >before.txt
sleep $((minutes * 60))
sample >after.txt
join before.txt after.txt | awk -v k="$tck" -v m="$minutes" '
	{ d = ($3 - $2) / k / m; sum += d; printf "idle: %-8s %6.2f CPU-s a minute\n", $1, d }
	END { printf "idle: all      %6.2f CPU-s a minute (%d nodes)\n", sum, NR }'
