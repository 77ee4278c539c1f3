#!/usr/bin/env bash
# Fetches the Debian kernel the VM tier boots (it has nf_flow_table, which the host
# kernel lacks) and prepares it for virtme-ng. Prints the path of the vmlinuz.
# Idempotent: a second run reuses what the first one unpacked.
set -euo pipefail

root=${OFFLOADD_VM_ROOT:-/opt/offloadd-vm}
mkdir -p "$root"
# linux-image-amd64 is a metapackage; the real image is its dependency.
resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(resolve)
if [ -z "$pkg" ]; then
    apt-get update -qq >&2 && pkg=$(resolve)
fi
if [ -z "$pkg" ]; then
    echo "kernel.sh: cannot resolve linux-image-amd64 (run apt-get update first)" >&2
    exit 2
fi
ver=${pkg#linux-image-}
if [ ! -f "$root/boot/vmlinuz-$ver" ] || [ ! -f "$root/lib/modules/$ver/modules.dep" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q "$pkg" >&2)
    dpkg -x "$tmp"/*.deb "$root"
    rm -rf "$tmp"
fi
# The guest looks for modules under /lib/modules/<ver> of the (shared) host filesystem.
mkdir -p /lib/modules
if [ ! -e "/lib/modules/$ver" ]; then
    ln -s "$root/lib/modules/$ver" "/lib/modules/$ver"
fi
depmod -b "$root" "$ver"
depmod "$ver" 2>/dev/null || true
echo "$root/boot/vmlinuz-$ver"
