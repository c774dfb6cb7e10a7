#!/usr/bin/env bash
# The main job on the local default: validate and plan the examples, then
# manufacture the local example (keys, lock, fetch, build, verify, recovery
# bundle), boot its
# master once checking the PCRs it measured against the signed manifest, and
# bring the three-node cluster up: a hub and one VM per node, each VM's EK
# registered before it boots, every node enrolled through the attestation
# gate. State lives in ./demo/ so a second run reuses the content-addressed
# build and the running cluster (seconds, not minutes).
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
echo "== convergence plan of the local cluster (first levels)"
$k plan examples/local.yaml | sed -n '/^Levels/,$p'
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: building images needs root (mmdebstrap --mode=root); rerun as root for the rest"; exit 1
fi
mkdir -p demo && cd demo
cp ../examples/local.yaml cluster.yaml
echo
echo "== keys (made once, never overwritten)"
[ -d keys ] || $k keys init --dir keys --cluster local >/dev/null
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
$k node list --hub "$(cat .kubedos/clusters/local/hub/hub.addr)" --keys keys
echo
echo "demo: ok. The cluster keeps running:"
echo "  cd demo && ../bin/kubedos cluster status cluster.yaml --keys keys    # VMs, enrollment, node API addresses"
echo "  cd demo && ../bin/kubedos node health --node 10.20.0.10:7444 --name master --keys keys"
echo "  cd demo && ../bin/kubedos node planes --node 10.20.0.10:7444 --name master --keys keys   # WireGuard peers and handshakes"
echo "  cd demo && ../bin/kubedos audit --hub \$(cat .kubedos/clusters/local/hub/hub.addr) --keys keys"
echo "  cd demo && ../bin/kubedos cluster down cluster.yaml                  # stop every VM (the master keeps the hub) and swtpm; remove the LAN namespace"
echo "The nodes share one L2 segment (bridge in network namespace kubedos-local); this host is its gateway 10.20.0.1;"
echo "the hub is served by the master's kubedosd on 10.20.0.10:7443."
echo "Consoles: demo/.kubedos/clusters/local/nodes/<node>/serial.log"
