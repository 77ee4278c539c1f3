#!/usr/bin/env bash
# Builds the gateway packages from a release build of this machine's architecture:
#   packaging/build.sh deb|rpm|all [--binary FILE] [--out DIR] [--lint]
# writes DIR (default target/packages)/offloadd_VERSION-1_ARCH.deb and/or
# offloadd-VERSION-1.ARCH.rpm. Both hold /usr/sbin/offloadd (stripped), the systemd unit
# (ExecStart /usr/sbin/offloadd), /etc/offloadd/offloadd.toml as a config file that lists
# no devices (nothing is offloaded until the admin names them), README and license. The
# service is installed, not enabled. Dependencies: the .deb's from dpkg-shlibdeps
# (libnftnl11, libmnl0, libc6, libgcc-s1 at the versions the binary needs), the .rpm's
# from rpm's ELF dependency generator (libnftnl.so.11, libmnl.so.0, glibc symbols).
# --lint runs lintian and rpmlint on the result (each prints its findings; errors fail).
# Needs dpkg-dev (dpkg-deb, dpkg-shlibdeps) and rpm (rpmbuild); tests/setup.sh installs them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
what=${1:-all}
shift || true
binary="" out="$repo/target/packages" lint=0
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --lint) lint=1; shift ;;
        *) echo "packaging/build.sh: unknown argument $1 (deb|rpm|all [--binary FILE] [--out DIR] [--lint])" >&2; exit 2 ;;
    esac
done
case $what in deb | rpm | all) ;; *) echo "packaging/build.sh: build what? deb, rpm or all (got $what)" >&2; exit 2 ;; esac
version=$(sed -n '0,/^version = "\(.*\)"/s//\1/p' "$repo/Cargo.toml")
if [ -z "$binary" ]; then
    (cd "$repo" && cargo build --release --locked 2>&1 | tail -1)
    binary=$repo/target/release/offloadd
fi
[ -x "$binary" ] || { echo "packaging/build.sh: $binary is not an executable" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d /tmp/offloadd-pkg.XXXXXX)
trap 'rm -rf "$work"' EXIT

# stage ROOT UNITDIR: the installed tree, as both packages lay it out.
stage() {
    local root=$1 unitdir=$2
    install -D -m 0755 "$binary" "$root/usr/sbin/offloadd"
    strip --strip-unneeded "$root/usr/sbin/offloadd"
    install -d -m 0755 "$root/$unitdir"
    sed 's|^ExecStart=/usr/local/sbin/offloadd |ExecStart=/usr/sbin/offloadd |; s|^# Install: .*|# Installed by the offloadd package; enable it with: systemctl enable --now offloadd|; /^# systemctl daemon-reload && systemctl enable/d' \
        "$repo/config/offloadd.service" >"$root/$unitdir/offloadd.service"
    chmod 0644 "$root/$unitdir/offloadd.service"
    grep -q '^ExecStart=/usr/sbin/offloadd run$' "$root/$unitdir/offloadd.service" ||
        { echo "packaging/build.sh: the unit's ExecStart was not rewritten (config/offloadd.service changed?)" >&2; exit 2; }
    install -d -m 0755 "$root/etc/offloadd"
    sed 's|^devices = \["eth0", "eth1"\]$|devices = []   # none yet: nothing is offloaded until you list your LAN and WAN devices (`ip -br link`), e.g. ["ens1f0np0", "ens1f1np1"]|' \
        "$repo/config/offloadd.toml" >"$root/etc/offloadd/offloadd.toml"
    chmod 0644 "$root/etc/offloadd/offloadd.toml"
    grep -q '^devices = \[\] ' "$root/etc/offloadd/offloadd.toml" ||
        { echo "packaging/build.sh: the default config's devices line was not replaced (config/offloadd.toml changed?)" >&2; exit 2; }
}

build_deb() {
    local root=$work/deb arch deb depends
    arch=$(dpkg --print-architecture)
    stage "$root" lib/systemd/system
    install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/offloadd/README.md"
    install -m 0644 "$repo/packaging/deb/copyright" "$root/usr/share/doc/offloadd/copyright"
    printf 'offloadd (%s-1) unstable; urgency=medium\n\n  * Package built by packaging/build.sh.\n\n -- offloadd developers <offloadd@example.invalid>  %s\n' \
        "$version" "$(date -R -u -d "@$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)")" |
        gzip -9n >"$root/usr/share/doc/offloadd/changelog.Debian.gz"
    chmod 0644 "$root/usr/share/doc/offloadd/changelog.Debian.gz"
    # dpkg-shlibdeps reads debian/control of a source package; a minimal one will do.
    mkdir -p "$work/src/debian"
    printf 'Source: offloadd\n\nPackage: offloadd\nArchitecture: any\n' >"$work/src/debian/control"
    depends=$(cd "$work/src" && dpkg-shlibdeps -O "$root/usr/sbin/offloadd" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    [ -n "$depends" ] || { echo "packaging/build.sh: dpkg-shlibdeps found no dependencies (are libnftnl-dev and libmnl-dev installed?)" >&2; exit 2; }
    install -d -m 0755 "$root/DEBIAN"
    sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@DEPENDS@|$depends|" \
        -e "s|@SIZE@|$(du -sk --exclude=DEBIAN "$root" | cut -f1)|" \
        "$repo/packaging/deb/control.in" >"$root/DEBIAN/control"
    echo /etc/offloadd/offloadd.toml >"$root/DEBIAN/conffiles"
    install -m 0755 "$repo/packaging/deb/postinst" "$repo/packaging/deb/prerm" "$repo/packaging/deb/postrm" "$root/DEBIAN/"
    deb=$out/offloadd_${version}-1_${arch}.deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    echo "packaging: $deb (Depends: $depends)"
    if [ "$lint" = 1 ]; then
        # Our own choices, not defects: no man page yet (`offloadd --help`, docs/cli.md), and
        # no Debian bug closed by a package that is not in Debian.
        lintian --suppress-tags no-manual-page,initial-upload-closes-no-bugs "$deb"
    fi
}

build_rpm() {
    local root=$work/rpm-root arch rpm
    arch=$(uname -m)
    stage "$root" usr/lib/systemd/system
    install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/offloadd/README.md"
    install -D -m 0644 "$repo/LICENSE" "$root/usr/share/licenses/offloadd/LICENSE"
    mkdir -p "$work/rpm/SPECS"
    sed -e "s|@VERSION@|$version|g" -e "s|@ARCH@|$arch|" -e "s|@STAGE@|$root|g" \
        -e "s|@DATE@|$(LC_ALL=C date -u +'%a %b %d %Y')|" \
        "$repo/packaging/rpm/offloadd.spec.in" >"$work/rpm/SPECS/offloadd.spec"
    rpmbuild --quiet -bb --define "_topdir $work/rpm" --define "_rpmdir $work/rpm/RPMS" \
        "$work/rpm/SPECS/offloadd.spec" >/dev/null
    rpm=$out/offloadd-${version}-1.${arch}.rpm
    cp "$work/rpm/RPMS/$arch/offloadd-${version}-1.${arch}.rpm" "$rpm"
    echo "packaging: $rpm (Requires: $(rpm -qRp "$rpm" 2>/dev/null | grep -E 'libnftnl|libmnl' | sort -u | tr '\n' ' '))"
    if [ "$lint" = 1 ]; then
        rpmlint -r "$repo/packaging/rpm/offloadd.rpmlintrc" "$rpm"
    fi
}

case $what in
    deb) build_deb ;;
    rpm) build_rpm ;;
    all) build_deb; build_rpm ;;
esac
