#!/usr/bin/env bash
# The main job on the local default: validate and plan the examples, then
# manufacture the local Kubernetes example (keys, lock, fetch, build with
# the Kubernetes binary `make kube` made, verify, recovery bundle), boot its
# master once checking the PCRs it measured against the signed manifest, and
# bring the three-node cluster up: a hub and one VM per node, each VM's EK
# registered before it boots, every node enrolled through the attestation
# gate, Kubernetes converged on the certificates the hub issued them; then
# an admin kubeconfig and `kubectl get nodes`. State lives in
# ./demo/local-k8s/ so a second run reuses the content-addressed build and
# the running cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
k="$root/bin/kubedos"
$k version
echo
echo "== validate the examples"
$k spec validate examples/reference.yaml
$k spec validate examples/local.yaml
$k spec validate examples/local-k8s.yaml
echo
echo "== a spec with mistakes: every problem at once, with line:column"
$k spec validate internal/spec/testdata/five-mistakes.yaml || echo "(exit status $? — expected)"
echo
echo "== convergence plan of the local Kubernetes cluster (first levels)"
$k plan examples/local-k8s.yaml | sed -n '/^Levels/,$p'
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: building images needs root (mmdebstrap --mode=root); rerun as root for the rest"; exit 1
fi
mkdir -p demo/local-k8s && cd demo/local-k8s
cp ../../examples/local-k8s.yaml cluster.yaml
echo
echo "== keys (made once, never overwritten)"
[ -d keys ] || $k keys init --dir keys --cluster local-k8s >/dev/null
$k keys show --dir keys
echo
echo "== lock, fetch, build (offline from the darksite repo), verify"
$k lock cluster.yaml
$k fetch cluster.yaml --cache cache
b=$($k build cluster.yaml --cache cache --out out)
$k verify "$b" --keys keys
echo
echo "== the recovery bundle: spec, lock, darksite repo, public keys, node binaries, signed records (no private key)"
[ -f "$b.bundle.tar" ] || $k bundle create "$b" --keys keys --cache cache >/dev/null
$k bundle verify "$b.bundle.tar" --keys keys
echo
echo "== boot the master once and check its PCRs against the signed manifest"
$k boot "$b" --role master --keys keys --dir vm-master
echo
echo "== bring the cluster up: hub + one VM per node (OVMF Secure Boot, swtpm), every node through the attestation gate;"
echo "   the hub moves to the master once it has enrolled (CA key sealed to the master's TPM)"
$k cluster up cluster.yaml --build "$b" --keys keys
echo
$k node list --hub "$(cat .kubedos/clusters/local-k8s/hub/hub.addr)" --keys keys
echo
echo "== the web console, served by the hub on the master (https://10.40.0.10:8443/): a one-time login link,"
echo "   minted by the hub for this admin certificate, audited, single use, valid two minutes"
$k console login --spec cluster.yaml --keys keys
echo
echo "== Kubernetes: an admin kubeconfig from the hub (short-lived, audited), then kubectl"
$k kubeconfig cluster.yaml --keys keys --out admin.kubeconfig --force
"$root/bin/kube" kubectl --kubeconfig admin.kubeconfig get nodes -o wide
"$root/bin/kube" kubectl --kubeconfig admin.kubeconfig get pods -A -o wide
echo
echo "demo: ok. The cluster keeps running:"
echo "  cd demo/local-k8s && ../../bin/kubedos cluster status cluster.yaml --keys keys    # VMs, enrollment, node API addresses"
echo "  cd demo/local-k8s && ../../bin/kube kubectl --kubeconfig admin.kubeconfig get pods -A   # the admin kubeconfig lasts an hour"
echo "  cd demo/local-k8s && ../../bin/kubedos node health --node 10.40.0.11:7444 --name cp-1 --keys keys"
echo "  cd demo/local-k8s && ../../bin/kubedos node planes --node 10.40.0.10:7444 --name master --keys keys   # WireGuard peers and handshakes"
echo "  cd demo/local-k8s && ../../bin/kubedos console login --spec cluster.yaml --keys keys   # a one-time link into the web console the master serves on https://10.40.0.10:8443/"
echo "  cd demo/local-k8s && ../../bin/kubedos audit --hub \$(cat .kubedos/clusters/local-k8s/hub/hub.addr) --keys keys"
echo "  cd demo/local-k8s && ../../bin/kubedos cluster down cluster.yaml   # stop every VM and swtpm; remove the LAN namespace"
echo "The nodes share one L2 segment (bridge in network namespace kubedos-local-k8s); this host is its gateway 10.40.0.1;"
echo "the hub is served by the master's kubedosd on 10.40.0.10:7443, the Kubernetes API by cp-1 on 10.40.0.11:6443."
echo "Consoles: demo/local-k8s/.kubedos/clusters/local-k8s/nodes/<node>/serial.log"
echo "Dashboards and alerts: mon's Prometheus scrapes every node, the hub, etcd, the API server and the kubelet over"
echo "  wg-observability; the dashboards are on https://10.40.0.30:7447/ (any cluster certificate, reader or above:"
echo "  curl --cacert keys/ca/ca.crt --cert keys/ca/admin.crt --key keys/ca/admin.key https://10.40.0.30:7447/fleet)"
echo "  cd demo/local-k8s && ../../bin/kubedos node health --node 10.40.0.30:7444 --name mon --keys keys   # targets up, alerts firing"
