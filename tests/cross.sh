#!/usr/bin/env bash
# Cross tier: builds offloadd for router CPUs and runs its unit tests under qemu-user.
#   aarch64 (MediaTek Filogic, most current routers), armv7 (32-bit ARM routers),
#   s390x (big-endian: catches byte-order mistakes in netlink code before a MIPS BE
#   router does; it is the big-endian target Debian ships libraries for).
# Links Debian's multiarch libnftnl/libmnl of each target; the target-scoped pkg-config
# variables keep nftnl-sys/mnl-sys from linking the host's libraries into the target's
# build. Installs what it needs (as root). Usage: tests/cross.sh [TARGET...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# target  debian-arch  gnu-triplet  qemu
all=(
    "aarch64-unknown-linux-gnu arm64 aarch64-linux-gnu aarch64"
    "armv7-unknown-linux-gnueabihf armhf arm-linux-gnueabihf arm"
    "s390x-unknown-linux-gnu s390x s390x-linux-gnu s390x"
)
want=("$@")

setup() { # setup ARCH TRIPLET
    local arch=$1 triplet=$2 pkgs=() p
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; NEED_UPDATE=1; }
    for p in "gcc-$triplet" "libc6-dev:$arch" "libnftnl-dev:$arch" "libmnl-dev:$arch" qemu-user-static; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
    done
    if [ ${#pkgs[@]} -gt 0 ]; then
        [ -n "${NEED_UPDATE:-}" ] || [ -n "${UPDATED:-}" ] || NEED_UPDATE=1
        if [ -n "${NEED_UPDATE:-}" ]; then apt-get update -qq; NEED_UPDATE=; UPDATED=1; fi
        echo "cross: installing ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
}

failed=0
report=()
for line in "${all[@]}"; do
    read -r target arch triplet qemu <<<"$line"
    if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " == *" $target "* ]]; then continue; fi
    echo "== cross: $target"
    setup "$arch" "$triplet"
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    t=${target//-/_}
    T=${t^^}
    export "CARGO_TARGET_${T}_LINKER=$triplet-gcc"
    export "CARGO_TARGET_${T}_RUNNER=qemu-$qemu-static -L /usr/$triplet"
    export "PKG_CONFIG_LIBDIR_${t}=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig"
    export "PKG_CONFIG_SYSROOT_DIR_${t}=/"
    export "CC_${t}=$triplet-gcc"
    # Unit tests (the library's and the binary's): the root-only tiers need a kernel of
    # the target's architecture, which qemu-user does not give.
    if cargo test --target "$target" --lib --bins 2>&1 | tee "/tmp/offloadd-cross-$target.log" | grep -E '^test result|FAILED|panicked'; then
        :
    fi
    if ! grep -q '^test result: ok' "/tmp/offloadd-cross-$target.log" || grep -q '^test result: FAILED' "/tmp/offloadd-cross-$target.log"; then
        echo "cross: $target unit tests failed (log: /tmp/offloadd-cross-$target.log)"
        tail -20 "/tmp/offloadd-cross-$target.log"
        failed=$((failed + 1))
        continue
    fi
    cargo build --release --target "$target" >/dev/null 2>&1 || { echo "cross: $target release build failed"; failed=$((failed + 1)); continue; }
    bin=target/$target/release/offloadd
    "$triplet-strip" -o "/tmp/offloadd-$target" "$bin"
    size=$(stat -c %s "/tmp/offloadd-$target")
    # The release binary runs: `plan` needs no privileges.
    printf '[offload]\ndevices = ["lo"]\nhardware = "off"\n' >/tmp/offloadd-cross.toml
    if "qemu-$qemu-static" -L "/usr/$triplet" "/tmp/offloadd-$target" plan --config /tmp/offloadd-cross.toml | grep -q 'flow add @ft'; then
        report+=("$target: unit tests passed; stripped release binary $((size / 1024)) KiB; plan runs")
    else
        echo "cross: $target release binary did not plan"; failed=$((failed + 1))
    fi
done
printf 'cross: %s\n' "${report[@]}"
[ "$failed" -eq 0 ]
