#!/usr/bin/env bash
# Smoke-check the Kubernetes multicall binary: each component starts under
# its own name and as `kube COMPONENT`, reports the pinned version, and,
# if etcd is installed, kube-apiserver serves /readyz against it.
#   bash scripts/kube-smoke.sh bin/kube
set -euo pipefail
kube=$(realpath "${1:?usage: kube-smoke.sh KUBE-BINARY}")
want=${KUBE_VERSION:-v1.35.4}
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

if "$kube" >/dev/null 2>&1; then fail "kube without a component exited 0"; fi
if "$kube" no-such-component >/dev/null 2>&1; then fail "kube no-such-component exited 0"; fi

for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet; do
	ln -s "$kube" "$dir/$c"
	got=$("$dir/$c" --version 2>&1) || fail "$c --version: $got"
	[[ $got == "Kubernetes $want" ]] || fail "$c --version says '$got', want 'Kubernetes $want'"
	got=$("$kube" "$c" --version 2>&1) || fail "kube $c --version: $got"
	[[ $got == "Kubernetes $want" ]] || fail "kube $c --version says '$got'"
	help=$("$dir/$c" --help 2>&1) || fail "$c --help failed"
	grep -q -- "--v Level" <<<"$help" || fail "$c --help lacks its flags"
	echo "ok $c"
done
ln -s "$kube" "$dir/kubectl"
got=$("$dir/kubectl" version --client -o json) || fail "kubectl version: $got"
grep -q "\"gitVersion\": \"$want\"" <<<"$got" || fail "kubectl version --client: $got"
"$kube" kubectl version --client >/dev/null || fail "kube kubectl version"
echo "ok kubectl"

if ! command -v etcd >/dev/null; then
	echo "skip kube-apiserver readyz: no etcd"
	exit 0
fi
etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:23790 \
	--advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
	>"$dir/etcd.log" 2>&1 &
pids+=($!)
openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
start=$(date +%s.%N)
# RBAC, not AlwaysAllow: with AlwaysAllow the apiserver turns anonymous
# requests off, and /readyz is read anonymously here.
"$dir/kube-apiserver" --etcd-servers http://127.0.0.1:23790 --cert-dir "$dir/certs" \
	--secure-port 16443 --bind-address 127.0.0.1 --service-cluster-ip-range 10.96.0.0/16 \
	--service-account-issuer https://kubernetes.default.svc --service-account-key-file "$dir/sa.key" \
	--service-account-signing-key-file "$dir/sa.key" --authorization-mode RBAC \
	>"$dir/apiserver.log" 2>&1 &
apiserver=$!
pids+=($apiserver)
for _ in $(seq 1 600); do
	kill -0 "$apiserver" 2>/dev/null || { tail -5 "$dir/apiserver.log" >&2; fail "kube-apiserver exited"; }
	if [[ $(curl -sk https://127.0.0.1:16443/readyz 2>/dev/null) == ok ]]; then
		echo "ok kube-apiserver readyz after $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s"
		exit 0
	fi
	sleep 0.5
done
tail -20 "$dir/apiserver.log" >&2
fail "kube-apiserver not ready after 300 s"
