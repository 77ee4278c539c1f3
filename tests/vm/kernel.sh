#!/usr/bin/env bash
# Fetches the Debian kernel the VM tier boots (it has nf_flow_table, which the host
# kernel lacks) and prepares it for virtme-ng. Prints the path of the vmlinuz.
# One pinned version (PIN below); idempotent: a second run reuses what the first
# one unpacked.
set -euo pipefail

root=${OFFLOADD_VM_ROOT:-/opt/offloadd-vm}
mkdir -p "$root"
# The kernel the VM tier was verified on: bookworm's 6.1.192 (DESIGN.md's kernel facts).
# Updating it is this one line (package and version as `apt-cache policy` shows them).
PIN="linux-image-6.1.0-57-amd64=6.1.192-3"
pkg=${PIN%%=*}
version=${PIN#*=}
ver=${pkg#linux-image-}
if [ ! -f "$root/boot/vmlinuz-$ver" ] || [ ! -f "$root/lib/modules/$ver/modules.dep" ]; then
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download -q "$pkg=$version" >&2 2>/dev/null) &&
       ! { apt-get update -qq >&2 && (cd "$tmp" && apt-get download -q "$pkg=$version" >&2); }; then
        # Debian's archive keeps only the current kernel of a release: once a newer one
        # is published the pinned one is gone. Then the current one runs, loudly, so the
        # tier still runs; the pin wants updating.
        # linux-image-amd64 is a metapackage; the real image is its dependency.
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
        [ -n "$pkg" ] || { echo "kernel.sh: $PIN is not in the archive and linux-image-amd64 cannot be resolved (apt-get update?)" >&2; exit 2; }
        ver=${pkg#linux-image-}
        echo "kernel.sh: WARNING: the pinned $PIN is no longer in Debian's archive; using $pkg instead (update PIN in tests/vm/kernel.sh)" >&2
        if [ ! -f "$root/boot/vmlinuz-$ver" ] || [ ! -f "$root/lib/modules/$ver/modules.dep" ]; then
            (cd "$tmp" && apt-get download -q "$pkg" >&2)
        fi
    fi
    if ls "$tmp"/*.deb >/dev/null 2>&1; then dpkg -x "$tmp"/*.deb "$root"; fi
    rm -rf "$tmp"
fi
echo "kernel.sh: VM kernel $pkg ($(ls "$root/boot/vmlinuz-$ver" 2>/dev/null))" >&2
# The guest looks for modules under /lib/modules/<ver> of the (shared) host filesystem.
mkdir -p /lib/modules
if [ ! -e "/lib/modules/$ver" ]; then
    ln -s "$root/lib/modules/$ver" "/lib/modules/$ver"
fi
depmod -b "$root" "$ver"
depmod "$ver" 2>/dev/null || true
echo "$root/boot/vmlinuz-$ver"
