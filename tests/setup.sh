#!/usr/bin/env bash
# Installs what the build, the lab and every test tier need on Debian/Ubuntu (as root).
# Idempotent and quiet when everything is there already.
set -euo pipefail
pkgs=(libnftnl-dev libmnl-dev pkg-config nftables conntrack iperf3 iproute2 iputils-ping
      qemu-system-x86 kmod busybox-static python3 python3-pip shellcheck systemd
      pppoe ppp wireguard-tools dpkg-dev rpm lintian rpmlint
      dbus-daemon python3-dbus python3-gi gir1.2-glib-2.0 time)
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
    # A distribution's own Python (Debian 12 and later) refuses pip installs outside a
    # venv (PEP 668): then into the system site-packages after all, as root asked for it.
    pip_log=$(mktemp)
    python3 -m pip install -q --root-user-action=ignore virtme-ng >"$pip_log" 2>&1 ||
        python3 -m pip install -q --root-user-action=ignore --break-system-packages virtme-ng >>"$pip_log" 2>&1 ||
        cat "$pip_log" >&2
    rm -f "$pip_log"
    command -v vng >/dev/null || { echo "setup: virtme-ng did not install (python3 -m pip install virtme-ng); the VM tier needs its vng" >&2; exit 2; }
fi
# firewalld for the VM tier (tests/vm/gateway.sh), unpacked here and never installed:
# Debian's package would enable and start it on this machine, which would take over its
# firewall. The guest runs it from this directory, inside the lab router's namespace,
# on a D-Bus system bus of its own.
fw=/opt/offloadd-firewalld
if [ ! -x "$fw/usr/sbin/firewalld" ]; then
    echo "setup: fetching firewalld, unpacked into $fw (not installed)"
    tmp=$(mktemp -d)
    chmod a+rwx "$tmp"
    (cd "$tmp" && apt-get download -q firewalld python3-firewall python3-nftables >/dev/null) ||
        { apt-get update -qq && (cd "$tmp" && apt-get download -q firewalld python3-firewall python3-nftables >/dev/null); } ||
        { echo "setup: could not download firewalld" >&2; exit 2; }
    mkdir -p "$fw"
    for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$fw"; done
    ls "$tmp" | sed -n 's/^firewalld_\(.*\)_all\.deb$/\1/p' >"$fw/VERSION"
    rm -rf "$tmp"
fi
# Prometheus and promtool for the metrics test (tests/netns_metrics.rs), unpacked the same
# way: the package would start a Prometheus server on this machine.
prom=/opt/offloadd-prometheus
if [ ! -x "$prom/usr/bin/promtool" ]; then
    echo "setup: fetching prometheus, unpacked into $prom (not installed)"
    tmp=$(mktemp -d)
    chmod a+rwx "$tmp"
    (cd "$tmp" && apt-get download -q prometheus >/dev/null) ||
        { apt-get update -qq && (cd "$tmp" && apt-get download -q prometheus >/dev/null); } ||
        { echo "setup: could not download prometheus" >&2; exit 2; }
    mkdir -p "$prom"
    dpkg-deb -x "$tmp"/prometheus_*.deb "$prom"
    rm -rf "$tmp"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (https://rustup.rs)" >&2; exit 2; }
