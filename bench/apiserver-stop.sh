#!/usr/bin/env bash
# How long kube-apiserver takes to stop on SIGTERM while a watch is open
# (on a node every kubelet, controller and CoreDNS holds watches), with
# Kubernetes' default graceful termination and with the plan's
# --shutdown-send-retry-after=true. Each run: Debian's etcd and the
# `make kube` binary on loopback, a `kubectl get --watch` open, SIGTERM,
# the time to exit. REPEAT=N runs each N times (default 3).
#
# Usage: bash bench/apiserver-stop.sh [KUBE-BINARY]   (default bin/kube)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
kube=$(realpath "${1:-$repo/bin/kube}")
repeat=${REPEAT:-3}
command -v etcd >/dev/null || { echo "etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }
[[ -x $kube ]] || { echo "$kube: no such binary (make kube)" >&2; exit 1; }
w=$(mktemp -d /tmp/kubedos-apistop-XXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$w"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# one_stop FLAGS...: prints the seconds from SIGTERM to exit.
one_stop() {
	local d
	d=$(mktemp -d "$w/run.XXXX")
	local ec ep api
	ec=$(free_port) ep=$(free_port) api=$(free_port)
	etcd --data-dir "$d/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
		--advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
		--initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "default=http://127.0.0.1:$ep" \
		>"$d/etcd.log" 2>&1 &
	local etcd_pid=$!
	pids+=("$etcd_pid")
	openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
	echo "admin-token,admin,1,system:masters" >"$d/tokens.csv"
	"$kube" kube-apiserver --etcd-servers "http://127.0.0.1:$ec" --cert-dir "$d/certs" \
		--secure-port "$api" --bind-address 127.0.0.1 --service-cluster-ip-range 10.96.0.0/16 \
		--service-account-issuer https://kubernetes.default.svc --service-account-key-file "$d/sa.key" \
		--service-account-signing-key-file "$d/sa.key" --authorization-mode RBAC \
		--token-auth-file "$d/tokens.csv" "$@" >"$d/apiserver.log" 2>&1 &
	local api_pid=$!
	pids+=("$api_pid")
	cat >"$d/kubeconfig" <<EOF
{"apiVersion":"v1","kind":"Config","current-context":"k",
"clusters":[{"name":"k","cluster":{"server":"https://127.0.0.1:$api","insecure-skip-tls-verify":true}}],
"users":[{"name":"u","user":{"token":"admin-token"}}],
"contexts":[{"name":"k","context":{"cluster":"k","user":"u"}}]}
EOF
	local ok=
	for _ in $(seq 1 600); do
		if "$kube" kubectl --kubeconfig "$d/kubeconfig" get -n default service kubernetes >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 0.5
	done
	[[ -n $ok ]] || { tail -5 "$d/apiserver.log" >&2; echo "kube-apiserver not up" >&2; exit 1; }
	"$kube" kubectl --kubeconfig "$d/kubeconfig" get configmaps -A --watch >"$d/watch.out" 2>&1 &
	local watch_pid=$!
	pids+=("$watch_pid")
	for _ in $(seq 1 120); do grep -q kube-system "$d/watch.out" && break; sleep 0.5; done
	local t0
	t0=$(date +%s.%N)
	kill -TERM "$api_pid"
	wait "$api_pid" || true
	awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}"
	kill "$watch_pid" "$etcd_pid" 2>/dev/null || true
	wait "$watch_pid" "$etcd_pid" 2>/dev/null || true
}

for flags in "" "--shutdown-send-retry-after=true"; do
	times=()
	for _ in $(seq 1 "$repeat"); do
		# shellcheck disable=SC2086 # the flags are words
		times+=("$(one_stop $flags)")
	done
	echo "stop with a watch open, ${flags:-the defaults}: ${times[*]} s"
done
