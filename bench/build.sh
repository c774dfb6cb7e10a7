#!/usr/bin/env bash
# Build figures of the Manufacture stage, measured in one run on this machine:
#   floor      plain mmdebstrap + mksquashfs of the same package set (network mirror)
#   cold       kubedos fetch + build of one role with empty caches
#   rebuild    kubedos build again with nothing changed
#   one-role   change one role's packages in a two-role spec: what is rebuilt, how long
#   sizes      root squashfs, UKI, disk (raw apparent/allocated, qcow2)
#   mkosi      Debian's mkosi on a comparable bookworm image, whatever it does
# Usage: sudo bash bench/build.sh [WORKDIR]   (needs root, Debian's mirror)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
w=${1:-$(mktemp -d /tmp/kubedos-bench-XXXX)}
mkdir -p "$w"; cd "$w"
k="$repo/bin/kubedos"
make -C "$repo" build >/dev/null
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

cat > one.yaml <<'YAML'
apiVersion: kubedos.io/v1alpha1
kind: ClusterSpec
metadata: {name: bench}
os: {packages: [wireguard-tools]}
topology:
  nodes:
    - {name: master, role: master, vmid: 100, address: 10.30.0.10}
    - {name: w-1, role: worker, vmid: 101, address: 10.30.0.21}
networking:
  lan: {cidr: 10.30.0.0/24, gateway: 10.30.0.1}
  planes:
    control: {cidr: 10.77.0.0/24}
    observability: {cidr: 10.78.0.0/24}
    kubernetes: {cidr: 10.79.0.0/24}
YAML
[ -d keys ] || "$k" keys init --dir keys --cluster bench >/dev/null
"$k" lock one.yaml --update >/dev/null 2>&1
pkgs=$(cd "$repo" && go run ./bench/requests "$w/one.yaml" master)

echo "## floor: plain mmdebstrap + mksquashfs, same package set (master role)"
rm -rf floor floor.sqfs
t0=$(now)
mmdebstrap --mode=root --variant=required --include="$pkgs" bookworm floor http://deb.debian.org/debian >/dev/null 2>&1
t1=$(now)
mksquashfs floor floor.sqfs -comp zstd -noappend -no-progress -quiet >/dev/null
t2=$(now)
echo "mmdebstrap $(secs $t0 $t1) s, mksquashfs $(secs $t1 $t2) s, floor $(secs $t0 $t2) s"
rm -rf floor

echo "## cold: fetch + build, empty cache and output store (both roles, then per role)"
rm -rf cache out
t0=$(now)
"$k" fetch one.yaml --cache cache >/dev/null 2>&1
t1=$(now)
"$k" build one.yaml --cache cache --out out 2> build.log >/dev/null
t2=$(now)
echo "fetch $(secs $t0 $t1) s, build of 2 roles $(secs $t1 $t2) s"
grep -E "rootfs|squashfs|built roles" build.log | sed 's/^/    /'

echo "## rebuild with nothing changed"
t0=$(now); "$k" build one.yaml --cache cache --out out >/dev/null 2>&1; t1=$(now)
echo "rebuild $(secs $t0 $t1) s"

echo "## change the worker's packages: only the worker is rebuilt"
sed -i 's/^os: {packages: \[wireguard-tools\]}/os: {packages: [wireguard-tools], rolePackages: {worker: [jq]}}/' one.yaml
"$k" lock one.yaml --update >/dev/null 2>&1
"$k" fetch one.yaml --cache cache >/dev/null 2>&1
t0=$(now); "$k" build one.yaml --cache cache --out out -o json > changed.json 2>/dev/null; t1=$(now)
echo "rebuild after a worker change $(secs $t0 $t1) s: $(cat changed.json | tr -d '\n ')"

echo "## sizes (master role)"
d=$(ls -d out/bench/*/ | head -1)
for f in root.squashfs root.verity kubedos.efi initrd.cpio.gz disk.qcow2; do
  printf '%-16s %6.1f MiB\n' "$f" "$(echo "$(stat -c %s "$d/roles/master/$f") / 1048576" | bc -l)"
done
printf '%-16s %6.1f MiB apparent, %6.1f MiB allocated\n' disk.raw \
  "$(echo "$(stat -c %s "$d/roles/master/disk.raw") / 1048576" | bc -l)" "$(du -m "$d/roles/master/disk.raw" | cut -f1)"

echo "## mkosi (Debian's package) on a comparable bookworm image"
if ! command -v mkosi >/dev/null; then apt-get install -y -qq mkosi >/dev/null 2>&1 || true; fi
if command -v mkosi >/dev/null; then
  rm -rf mk; mkdir mk; cd mk
  t0=$(now)
  if timeout 900 mkosi -d debian -r bookworm -t gpt_squashfs --bootable --with-network=never \
       -p linux-image-cloud-amd64,systemd,wireguard-tools --output image.raw build > ../mkosi.log 2>&1; then
    echo "mkosi $(mkosi --version 2>/dev/null) built in $(secs $t0 $(now)) s: $(du -m image.raw | cut -f1) MiB"
  else
    echo "mkosi $(mkosi --version 2>/dev/null) failed after $(secs $t0 $(now)) s; last lines:"
    tail -5 ../mkosi.log | sed 's/^/    /'
  fi
  cd ..
else
  echo "mkosi not installable here"
fi
echo "work directory: $w"
