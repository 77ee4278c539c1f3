# Sourced by the top-level scripts: root check, PATH for pip-installed tools, and
# whether the running kernel has flowtables.
# Not root: the script runs itself again through sudo, with this user's Rust toolchain
# (sudo resets PATH, and rustup's cargo lives under the user's home).
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "$0: run as root (it creates network namespaces)" >&2; exit 2; }
    echo "$0: not root: running again with sudo, keeping this PATH and Rust toolchain" >&2
    exec sudo env PATH="$PATH" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" ${CI:+CI="$CI"} "$0" "$@"
fi
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

# vm_sees PATH: the VM (virtme-ng) sees the host's files except under the directories its
# init mounts an empty tmpfs over: a repository there is "not found" in the guest, which
# then powers off at once ("error changing directory" in its console log).
vm_sees() {
    case "$(realpath "$1")/" in
    /var/tmp/* | /var/log/* | /var/cache/* | /var/spool/rsyslog/* | /var/lib/portables/* | /var/lib/machines/* | /var/lib/private/*)
        echo "$0: $1 is under a directory the VM mounts an empty tmpfs over (/var/tmp, /var/log, /var/cache...), so the guest cannot see it: clone the repository elsewhere (your home, /srv, /tmp) and run it from there" >&2
        return 1
        ;;
    esac
}
