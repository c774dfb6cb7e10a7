#!/usr/bin/env bash
# The yardstick for issue 5's boot figures: a plain Debian bookworm with the
# same kernel package kubedos images carry (linux-image-cloud-amd64) and
# Debian's own initramfs, booted under the same QEMU settings as a cluster
# node (q35, TCG, 1 vCPU, 1 GiB, virtio disk) straight from the kernel (no
# firmware, no Secure Boot, no TPM, no verity), timed from QEMU's start to
# systemd reaching multi-user.target and to the login prompt. The kernel
# command line is the images' (console=ttyS0,115200 panic=-1 quiet), plus
# systemd.show_status=1 so the console says when multi-user is reached.
# Usage: sudo bash bench/yardstick.sh [WORKDIR]   (needs root, Debian's mirror)
set -euo pipefail
w=${1:-$(mktemp -d /tmp/kubedos-yardstick-XXXX)}
mkdir -p "$w"; cd "$w"
if [ ! -f root.img ]; then
  rm -rf root
  mmdebstrap --mode=root --variant=minbase --include=systemd-sysv,linux-image-cloud-amd64,udev \
    --customize-hook='echo yardstick > "$1/etc/hostname"' \
    --customize-hook='chroot "$1" passwd -d root' \
    bookworm root http://deb.debian.org/debian >mmdebstrap.log 2>&1
  cp root/boot/vmlinuz-* vmlinuz
  cp root/boot/initrd.img-* initrd.img
  truncate -s 2G root.img
  mkfs.ext4 -q -F -d root root.img
  rm -rf root
fi
runs=${RUNS:-3}
for i in $(seq 1 "$runs"); do
  : > serial.log
  start=$(date +%s.%N)
  qemu-system-x86_64 -machine q35 -accel tcg -m 1024 -smp 1 -display none -monitor none \
    -kernel vmlinuz -initrd initrd.img -append "root=/dev/vda rw console=ttyS0,115200 panic=-1 quiet systemd.show_status=1" \
    -drive file=root.img,if=virtio,format=raw,snapshot=on -net none -serial file:serial.log &
  pid=$!
  mu="" login=""
  for _ in $(seq 1 1200); do
    now=$(date +%s.%N)
    if [ -z "$mu" ] && grep -aq "Reached target.*Multi-User" serial.log; then mu=$(awk -v a="$start" -v b="$now" 'BEGIN{printf "%.1f", b-a}'); fi
    if grep -aq "login:" serial.log; then login=$(awk -v a="$start" -v b="$now" 'BEGIN{printf "%.1f", b-a}'); break; fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  echo "run $i: multi-user ${mu:-?} s, login prompt ${login:-never} s"
done
