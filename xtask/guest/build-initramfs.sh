#!/bin/bash
# Build the initramfs of the Linux test peer: busybox, iproute2's own `ip`
# (busybox's cannot make gre links) with its libraries, and the modules of
# the unpacked Debian kernel in $1 for virtio-net and ip_gre, and for xgre
# itself (veth, clsact, cls_bpf), which tests run in the guest too.
# Usage: build-initramfs.sh KERNEL_ROOT OUT.cpio.gz
set -euo pipefail
kroot=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,sbin,lib/modules,lib64,proc,sys,dev,tmp}
cp /bin/busybox "$work/bin/busybox"
ip=$(command -v ip)
cp "$ip" "$work/sbin/ip"
for lib in $(ldd "$ip" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
  mkdir -p "$work$(dirname "$lib")"
  cp -L "$lib" "$work$lib"
done
mods=$(find "$kroot/lib/modules" -name '*.ko' \( -name 'virtio*.ko' -o -name 'failover.ko' -o -name 'net_failover.ko' -o -name 'gre.ko' -o -name 'ip_tunnel.ko' -o -name 'ip_gre.ko' -o -name 'veth.ko' -o -name 'sch_ingress.ko' -o -name 'cls_bpf.ko' \))
for m in $mods; do cp "$m" "$work/lib/modules/"; done
cp "$here/init" "$work/init"
chmod +x "$work/init"
(cd "$work" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) > "$out"
