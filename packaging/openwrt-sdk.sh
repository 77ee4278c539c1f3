#!/usr/bin/env bash
# Puts offloadd into an OpenWrt SDK (or buildroot) as a package built from a release
# tarball: the package directory in SDK/package/offloadd, offloadd-VERSION.tar.gz (a
# `git archive` of HEAD, reproducible for the same commit) in SDK/dl, its sha256 in the
# copied Makefile's PKG_HASH. Usage: packaging/openwrt-sdk.sh SDK_DIR
# Then, in SDK_DIR: ./scripts/feeds update packages && ./scripts/feeds install rust libnftnl libmnl
#                   make defconfig && make package/offloadd/compile V=s
set -euo pipefail
sdk=${1:?usage: packaging/openwrt-sdk.sh SDK_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^PKG_VERSION:=//p' "$repo/openwrt-package/Makefile")
cargo_version=$(sed -n '0,/^version = "\(.*\)"/s//\1/p' "$repo/Cargo.toml")
[ "$version" = "$cargo_version" ] || { echo "openwrt-sdk: Makefile PKG_VERSION $version differs from Cargo.toml $cargo_version" >&2; exit 2; }
[ -d "$sdk" ] || { echo "openwrt-sdk: $sdk is not a directory (an unpacked OpenWrt SDK)" >&2; exit 2; }
mkdir -p "$sdk/dl" "$sdk/package"
tarball=$sdk/dl/offloadd-$version.tar.gz
git -C "$repo" archive --format=tar --prefix="offloadd-$version/" HEAD | gzip -n >"$tarball"
hash=$(sha256sum "$tarball" | cut -d' ' -f1)
rm -rf "$sdk/package/offloadd"
cp -r "$repo/openwrt-package" "$sdk/package/offloadd"
sed -i "s/^PKG_HASH:=.*/PKG_HASH:=$hash/" "$sdk/package/offloadd/Makefile"
echo "openwrt-sdk: $tarball ($hash)"
echo "openwrt-sdk: package in $sdk/package/offloadd; build with: make package/offloadd/compile V=s"
