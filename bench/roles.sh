#!/usr/bin/env bash
# Issue 16's build figure: the build of all eight roles of
# examples/reference.yaml, cold, against the build of one role (the same
# spec with its master alone: Kubernetes and observability off), on this
# machine. Both builds start from an empty --out (no role cache) with the
# same lock, darksite repo and keys; each is timed (wall and CPU), and the
# eight-role build's per-step progress is kept for where the time went.
#
# Usage: sudo bash bench/roles.sh [WORKDIR]
#   needs root, Debian's mirror (once, for lock and fetch), bin/kubedos and
#   bin/kube (make build kube coredns; KUBEDOS, KUBE, NODE_BINARIES
#   point elsewhere). REPEAT=N runs each build N times.
#   Run it on an otherwise idle machine: the figure is a ratio of two
#   wall times.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
w=${1:-$(mktemp -d /tmp/kubedos-roles-XXXX)}
k=${KUBEDOS:-$repo/bin/kubedos}
kube=${KUBE:-$repo/bin/kube}
bins=${NODE_BINARIES:-$repo/bin}
for f in "$k" "$kube"; do
	[ -x "$f" ] || { echo "roles: $f is missing (make build kube coredns)" >&2; exit 1; }
done
mkdir -p "$w"
cd "$w"

cp "$repo/examples/reference.yaml" all.yaml
# One role: the master's node alone, nothing that needs other roles.
sed -E '/^    - \{name: /{/role: master,/!d}; /^  apiVIP:/d;
	/^  kubernetes:$/,/^  observability:/ s/^    enabled: true/    enabled: false/;
	s/^    prometheus: true/    prometheus: false/; s/^    grafana: true/    grafana: false/' all.yaml >one.yaml
"$k" spec validate all.yaml >/dev/null
"$k" spec validate one.yaml | grep -q '1 node' || { echo "roles: one.yaml is not the master alone" >&2; exit 1; }
[ -d keys ] || "$k" keys init --dir keys --cluster reference >/dev/null
"$k" lock all.yaml >/dev/null
"$k" fetch all.yaml --cache cache >/dev/null

rm -f one.walls all.walls
echo "| build | wall (s) | CPU user + sys (s) | build-id |"
echo "| --- | --- | --- | --- |"
for i in $(seq "${REPEAT:-1}"); do
	for which in one all; do
		rm -rf "out-$which"
		/usr/bin/time -f '%e %U %S' -o "$which.time" \
			"$k" build "$which.yaml" --lock kubedos.lock --cache cache --out "out-$which" \
			--node-binaries "$bins" --kube "$kube" >"$which.out" 2>"$which.log"
		read -r wall user sys <"$which.time"
		id=$(basename "$(tail -n 1 "$which.out")")
		echo "$wall" >>"$which.walls"
		printf '| %s | %s | %.1f | %s |\n' "$which" "$wall" "$(echo "$user + $sys" | bc)" "$id"
	done
done
one=$(sort -n one.walls | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
all=$(sort -n all.walls | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "all roles / one role (median wall): $(echo "scale=2; $all / $one" | bc)× ($all s / $one s); progress in $w/all.log"
