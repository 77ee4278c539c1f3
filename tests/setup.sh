#!/usr/bin/env bash
# Installs what the build, the lab and every test tier need on Debian/Ubuntu (as root).
# Idempotent and quiet when everything is there already.
set -euo pipefail
pkgs=(libnftnl-dev libmnl-dev pkg-config nftables conntrack iperf3 iproute2 iputils-ping
      qemu-system-x86 kmod busybox-static python3 python3-pip shellcheck systemd
      pppoe ppp wireguard-tools dpkg-dev rpm lintian rpmlint)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v vng >/dev/null; then
    echo "setup: installing virtme-ng"
    python3 -m pip install -q virtme-ng 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (https://rustup.rs)" >&2; exit 2; }
