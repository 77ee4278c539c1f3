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

# Linking uses Debian's cross toolchain (gcc-TRIPLET and its libc under /usr/TRIPLET).
# Running uses a sysroot of ours, unpacked from the target's own .debs: its C library,
# libgcc, libnftnl and libmnl, handed to qemu with -L. Two things this avoids, both seen
# here: installing them as multiarch packages needs the host's exact versions, which the
# mirror's s390x does not always have; and under qemu -L /usr/TRIPLET (the cross
# toolchain's glibc 2.36-8cross1) any Rust program hangs at 100% CPU in its first
# thread spawn (a 3-line program does it; with Debian's own libc6 of the target, 2.36-9,
# it runs), which is what made the unit tests "hang in their first test".
root=/opt/offloadd-cross
setup() { # setup ARCH TRIPLET
    local arch=$1 triplet=$2 pkgs=() p
    for p in "gcc-$triplet" qemu-user-static; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
    done
    if [ ${#pkgs[@]} -gt 0 ]; then
        echo "cross: installing ${pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    [ -f "$root/$arch/done" ] && return 0
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt-get update -qq; }
    local dl debs=()
    dl=$(mktemp -d); chmod 755 "$dl"
    for p in libc6 libgcc-s1 libnftnl11 libnftnl-dev libmnl0 libmnl-dev; do debs+=("$p:$arch"); done
    (cd "$dl" && apt-get download -qq "${debs[@]}") 2>/dev/null \
        || { apt-get update -qq && (cd "$dl" && apt-get download -qq "${debs[@]}"); }
    rm -rf "${root:?}/$arch"; mkdir -p "$root/$arch"
    for p in "$dl"/*.deb; do dpkg-deb -x "$p" "$root/$arch"; done
    rm -rf "$dl"
    touch "$root/$arch/done"
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
    sysroot=$root/$arch
    libs=$sysroot/usr/lib/$triplet
    export "CARGO_TARGET_${T}_LINKER=$triplet-gcc"
    export "CARGO_TARGET_${T}_RUSTFLAGS=-C link-arg=-Wl,-rpath-link,$libs"
    export "CARGO_TARGET_${T}_RUNNER=qemu-$qemu-static -L $sysroot"
    export "PKG_CONFIG_LIBDIR_${t}=$libs/pkgconfig"
    export "PKG_CONFIG_SYSROOT_DIR_${t}=$sysroot"
    export "CC_${t}=$triplet-gcc"
    # Unit tests (the library's and the binary's): the root-only tiers need a kernel of
    # the target's architecture, which qemu-user does not give. The two ethtool tests ask
    # the host kernel about `lo` with SIOCETHTOOL, which qemu-user does not translate
    # (ENOTTY, seen with qemu 7.2 and 10.0): they run in the native unit tier.
    # The verdict is read from the log below (set -e must not stop at a failing test).
    cargo test --target "$target" --lib --bins -- --skip link::ethtool::tests::loopback_ 2>&1 \
        | tee "/tmp/offloadd-cross-$target.log" | grep -E '^test result|FAILED|panicked' || true
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
    # Captured whole, then judged: `| grep -q` closes the pipe at the first match, and a
    # writer still printing then dies of SIGPIPE (which pipefail counts as a failure).
    rc=0
    planned=$("qemu-$qemu-static" -L "$sysroot" "/tmp/offloadd-$target" plan --config /tmp/offloadd-cross.toml 2>&1) || rc=$?
    if [ "$rc" -eq 0 ] && grep -q 'flow add @ft' <<<"$planned"; then
        report+=("$target: unit tests passed; stripped release binary $((size / 1024)) KiB; plan runs")
    else
        echo "cross: $target release binary did not plan (exit $rc): $(head -c 400 <<<"$planned")"; failed=$((failed + 1))
    fi
done
printf 'cross: %s\n' "${report[@]}"
[ "$failed" -eq 0 ]
