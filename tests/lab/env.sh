# Sourced by the top-level scripts: root check, PATH for pip-installed tools, and
# whether the running kernel has flowtables.
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (it creates network namespaces): sudo $0" >&2; exit 2; }
# pip may install vng into a scripts directory that is not on PATH.
PATH=$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true):$HOME/.local/bin
export PATH

# True if this kernel can create a flowtable. Checked with `nft -c` (validate, never
# commit) inside a namespace made for the purpose, so the host's own is not touched.
kernel_has_flowtables() {
    local ns=offloadd-probe-$$ rc
    modprobe -q -a nf_flow_table_inet nft_flow_offload 2>/dev/null || true
    ip netns add "$ns" || return 1
    printf 'table inet probe {\n flowtable f {\n  hook ingress priority 0\n }\n}\n' |
        ip netns exec "$ns" nft -c -f - >/dev/null 2>&1
    rc=$?
    ip netns del "$ns"
    return $rc
}
