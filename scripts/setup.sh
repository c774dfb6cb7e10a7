#!/usr/bin/env bash
# Installs what kubedos needs on a fresh Debian machine. Idempotent: a second
# run installs nothing. Needs root for apt-get (skipped when all is present).
set -euo pipefail

need_go="1.26"
if ! command -v go >/dev/null 2>&1; then
  echo "setup: Go $need_go or newer is required (https://go.dev/doc/install); Debian's golang package is too old" >&2
  exit 1
fi

# Debian packages used by later stages (build, boot checks); listed here so
# one command prepares the machine. prometheus brings promtool, which checks
# the generated Prometheus configuration and tests the alert rules. chromium
# runs the web console's real-browser check (integration tag). haproxy and
# keepalived check the load balancers' generated configurations (their Debian
# defaults bind nothing and, with no configuration, keepalived does not start).
# etcd-server backs the kube-apiserver that make coredns-smoke (and
# scripts/kube-smoke.sh) run CoreDNS against, on loopback ports of their own.
pkgs=(git make gcc binutils cpio fdisk dosfstools mtools e2fsprogs squashfs-tools cryptsetup-bin
      mmdebstrap systemd-boot-efi sbsigntool efitools ovmf swtpm swtpm-tools qemu-system-x86 qemu-utils
      osslsigncode pesign openssl dpkg-dev apt util-linux gpgv
      systemd libtss2-esys-3.0.2-0 libtss2-rc0 bc libssl-dev socat procps iproute2 nftables
      prometheus prometheus-alertmanager chromium haproxy keepalived etcd-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

go mod download
echo "setup: ok ($(go version))"
