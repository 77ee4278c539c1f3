#!/usr/bin/env bash
# The packaged unit's own sandbox (issue 26): config/offloadd.service started by systemd's
# own executor, not by a copy of its properties. Usage: tests/sandbox.sh [OFFLOADD_BINARY]
# (default target/release/offloadd, built if missing). Prints "ok NAME" / "not ok NAME: why"
# and ends with "sandbox: N passed, M failed"; exits non-zero on any failure.
#
# The machines that run the tests have no systemd as PID 1, so `systemd-run` has no manager
# to ask. Instead the systemd package's own manager (/lib/systemd/systemd --system) runs as
# PID 1 of throwaway namespaces (PID, mount, UTS, IPC, network and cgroup), with tmpfs on
# /run, /tmp, /var/tmp, /var/lib and /dev, the root file system, /sys and /proc/sys (but
# /proc/sys/net) read-only, and a cgroup of its own that is removed afterwards: nothing
# on this machine changes, and everything ends with the namespaces. The manager loads
# only config/offloadd.service, unchanged, plus a drop-in that says where the test's binary
# and config are, where the log goes (StandardOutput=append:) and which network namespace
# the daemon runs in (NetworkNamespacePath= of one `ip netns add` made inside). The daemon
# runs in mode "observe", so the kernel needs no flowtable support. Checks:
#   sandbox_serves_metrics_and_writes_textfile   the shipped unit: GET /metrics answers
#       offloadd_up 1 and the textfile appears in the shipped ReadWritePaths
#       (/var/lib/prometheus/node-exporter) with mode 0644 despite UMask=0077; the process
#       has the unit's bounding set, no_new_privs and a seccomp filter
#   sandbox_custom_textfile_dir_with_dropin      a directory of one's own works with the
#       drop-in docs/sandbox.md gives ([Service] ReadWritePaths=DIR)
#   sandbox_named_when_family_is_missing         RestrictAddressFamilies=AF_NETLINK AF_UNIX
#       (the unit before issue 26): the log names the sandbox for the refused listener
#   sandbox_named_when_textfile_dir_is_readonly  the custom directory without its drop-in:
#       the log names ReadWritePaths for the refused textfile
# Needs root. With CI=true a prerequisite that is missing fails instead of skipping.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$repo/target/release/offloadd}
unit_src=$repo/config/offloadd.service
ns=offloadd-test       # the network namespace, made inside the mount namespace
port=9811
s=/run/offloadd-test    # the test's files, inside the namespaces' private /run
# (no "sandbox" in these names: the log is searched for that word)
pass=0 failed=0 t0=$(date +%s)

in_ci() { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
ok() { echo "ok $1"; pass=$((pass + 1)); }
not_ok() { echo "not ok $1: $2"; failed=$((failed + 1)); }
summary() { echo "sandbox: $pass passed, $failed failed in $(($(date +%s) - t0)) s"; }
# A prerequisite that is missing: a skip here, a failure in CI.
unable() {
    if in_ci; then
        not_ok sandbox_prerequisites "$1"
        summary
        exit 1
    fi
    echo "sandbox: skipped: $1"
    exit 0
}

[ "$(id -u)" = 0 ] || unable "needs root (namespaces, mounts, a cgroup); CI runs the tests as root"
systemd_bin=""
for c in /lib/systemd/systemd /usr/lib/systemd/systemd; do
    [ -x "$c" ] && { systemd_bin=$c; break; }
done
[ -n "$systemd_bin" ] || unable "no systemd binary (tests/setup.sh installs the systemd package)"
for t in unshare nsenter ip findmnt systemctl timeout; do
    command -v "$t" >/dev/null || unable "$t is missing"
done
# systemd runs in unified mode on a cgroup2 hierarchy: the host's (hybrid or unified).
cg2=$(findmnt -n -t cgroup2 -o TARGET | head -1)
[ -n "$cg2" ] || unable "no cgroup2 hierarchy is mounted"
if [ ! -x "$bin" ]; then
    [ "$bin" = "$repo/target/release/offloadd" ] || unable "$bin is not an executable"
    (cd "$repo" && cargo build --release --locked 2>&1 | tail -1)
    [ -x "$bin" ] || unable "cargo build --release did not produce $bin"
fi
echo "sandbox: $("$systemd_bin" --version | head -1), unit $unit_src, binary $bin"

work=$(mktemp -d /tmp/offloadd-unit-test.XXXXXX)
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
cg=$cg2${own%/}/offloadd-unit-test-$$
upid="" pid1=""
cleanup() {
    [ -n "$pid1" ] && kill -KILL "$pid1" 2>/dev/null
    [ -n "$upid" ] && wait "$upid" 2>/dev/null
    # The cgroups systemd made inside ours, deepest first, once their processes are gone.
    if [ -d "$cg" ]; then
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$cg" ] || break
            sleep 0.2
        done
        [ -d "$cg" ] && echo "sandbox: could not remove $cg"
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- what the manager loads: the unit as shipped, a drop-in for the test, empty targets
mkdir -p "$work/units/offloadd.service.d"
cp "$unit_src" "$work/units/offloadd.service"
for t in sandbox sysinit basic shutdown network-pre multi-user; do
    printf '[Unit]\nDescription=%s (empty: tests/sandbox.sh)\n' "$t" >"$work/units/$t.target"
done
cat >"$work/units/offloadd.service.d/10-test.conf" <<EOF
# tests/sandbox.sh: the test's binary and config (the binary is copied into /run so that
# ProtectHome= does not hide a checkout under /root), its network namespace, its log.
[Service]
ExecStart=
ExecStart=$s/offloadd run --config $s/offloadd.toml
NetworkNamespacePath=/run/netns/$ns
Restart=no
EOF
cp "$bin" "$work/offloadd"

# --- inside the namespaces: private mounts, then systemd as PID 1
cat >"$work/inner.sh" <<'INNER'
#!/usr/bin/env bash
# Runs as PID 1 of new namespaces; refuses to touch a mount otherwise.
set -euo pipefail
work=$1 host_mnt=$2 s=$3 ns=$4 systemd_bin=$5
[ "$$" = 1 ] && [ "$(readlink /proc/self/ns/mnt)" != "$host_mnt" ] || { echo "inner: not in new namespaces" >&2; exit 97; }
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p "$s"
cp -a "$work/units" "$work/offloadd" "$s/"
: >"$s/console.log"
# /dev: the API nodes of the host bound into a tmpfs; /dev/console is a file (the manager's log).
d=$s/dev
mkdir "$d"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$d"
for n in null zero full random urandom tty; do
    : >"$d/$n"
    mount --bind "/dev/$n" "$d/$n"
done
: >"$d/console"
mount --bind "$s/console.log" "$d/console"
mkdir "$d/pts" "$d/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$d/pts"
ln -s pts/ptmx "$d/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$d/shm"
for f in stdin:0 stdout:1 stderr:2; do ln -s "/proc/self/fd/${f#*:}" "$d/${f%%:*}"; done
ln -s /proc/self/fd "$d/fd"
mount --move "$d" /dev
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/lib
# The shipped textfile directory (Debian's and Fedora's node_exporter) and a custom one.
mkdir -p /var/lib/prometheus/node-exporter /var/lib/offloadd-metrics
# The cgroup namespace's root is the cgroup tests/sandbox.sh made for it.
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
mount -o remount,bind,ro /sys
# Global sysctls stay out of reach (systemd as PID 1 raises fs.file-max, for one);
# /proc/sys/net belongs to the network namespace of whoever opens it.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount --bind /proc/sys/net /proc/sys/net
mount -o remount,bind,rw /proc/sys/net
# The root file system read-only for this mount namespace only (a bind remount changes
# this namespace's mount, not the file system).
mount -o remount,bind,ro /
ip netns add "$ns"
ip -n "$ns" link set lo up
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_UNIT_PATH="$s/units" container=offloadd-test \
    "$systemd_bin" --system --unit=sandbox.target --log-target=console --log-level=notice --show-status=no
INNER

mkdir "$cg" || unable "cannot make a cgroup under $cg2$own"
(
    echo "$BASHPID" >"$cg/cgroup.procs"
    # --kill-child: the namespaces end with unshare, which lives 5 minutes at most, even
    # when this script is killed before its cleanup.
    exec timeout 300 unshare --kill-child=SIGKILL --pid --fork --mount --propagation private --mount-proc \
        --uts --ipc --net --cgroup \
        bash "$work/inner.sh" "$work" "$(readlink /proc/self/ns/mnt)" "$s" "$ns" "$systemd_bin"
) >"$work/unshare.log" 2>&1 &
upid=$!

# inside CMD...: runs CMD in the namespaces' mount and PID namespaces (systemctl reaches
# their manager and sees it as PID 1).
inside() { nsenter -t "$pid1" -m -p -- "$@"; }
root() { echo "/proc/$pid1/root$1"; }

for _ in $(seq 100); do
    # timeout ($upid) -> unshare -> systemd
    u=$(pgrep -P "$upid" | head -1)
    [ -n "$u" ] && pid1=$(pgrep -P "$u" | head -1)
    [ -n "$pid1" ] && [ -S "$(root /run/systemd/private)" ] && break
    kill -0 "$upid" 2>/dev/null || break
    sleep 0.1
done
# The socket exists a moment before the manager answers on it.
state=""
for _ in $(seq 100); do
    if [ -z "$pid1" ] || [ ! -S "$(root /run/systemd/private)" ]; then break; fi
    state=$(inside systemctl is-system-running 2>&1)
    case $state in running | degraded) break ;; esac
    sleep 0.1
done
case $state in
    running | degraded) echo "sandbox: systemd is PID 1 of its namespaces ($state) after $(($(date +%s) - t0)) s" ;;
    *)
        not_ok sandbox_manager_starts "systemd did not come up (state '${state:-none}'); its output:"
        cat "$work/unshare.log"
        [ -n "$pid1" ] && tail -20 "$(root "$s/console.log")" 2>/dev/null
        summary
        exit 1
        ;;
esac

# run_case NAME TEXTFILE DROPIN: writes the config and the case's drop-in, starts the unit,
# leaves its log in $log and its main PID (in the namespaces) in $main.
log="" main=""
run_case() {
    local name=$1 textfile=$2 dropin=$3
    log=$s/$name.log
    printf 'mode = "observe"\n[offload]\ndevices = ["lo"]\n[metrics]\nlisten = "127.0.0.1:%s"\ntextfile = "%s"\ninterval = "1s"\n' \
        "$port" "$textfile" >"$(root "$s/offloadd.toml")"
    printf '# tests/sandbox.sh case %s\n[Service]\nStandardOutput=append:%s\nStandardError=inherit\n%b' \
        "$name" "$log" "$dropin" >"$(root "$s/units/offloadd.service.d/20-case.conf")"
    inside systemctl daemon-reload
    inside systemctl reset-failed offloadd.service 2>/dev/null
    main=""
    if inside timeout 20 systemctl start offloadd.service; then
        main=$(inside systemctl show -p MainPID --value offloadd.service)
    fi
}
stop_case() { inside timeout 10 systemctl stop offloadd.service; }
# scrape: GET /metrics from inside the daemon's network namespace.
scrape() {
    inside ip netns exec "$ns" timeout 5 bash -c \
        "exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>&1
}
# wait_for FILE: up to 5 s for a non-empty file (in the namespaces).
wait_for() {
    for _ in $(seq 50); do
        [ -s "$(root "$1")" ] && return 0
        sleep 0.1
    done
    return 1
}
# log_has ABOUT REGEX: up to 5 s for a line of the case's log that contains ABOUT (a fixed
# string: the address or the path the error is about) to match REGEX.
# The line is kept in $line; show_line prints it without its timestamp.
line=""
show_line() {
    local l=${line#* }
    echo "  the log: ${l#"${l%%[! ]*}"}"
}
log_has() {
    for _ in $(seq 50); do
        line=$(grep -F "$1" "$(root "$log")" 2>/dev/null | grep -E "$2" | head -1)
        [ -n "$line" ] && return 0
        sleep 0.1
    done
    return 1
}
said() { echo "--- daemon log:"; cat "$(root "$log")" 2>/dev/null; inside systemctl status --no-pager offloadd.service 2>&1 | head -12; }

# 1. The unit as shipped.
textfile=/var/lib/prometheus/node-exporter/offloadd.prom
run_case shipped "$textfile" ""
if [ -z "$main" ] || [ "$main" = 0 ]; then
    not_ok sandbox_serves_metrics_and_writes_textfile "the unit did not start"
    said
else
    why=""
    body=$(scrape)
    grep -q '^offloadd_up 1$' <<<"$body" || why="GET /metrics did not answer offloadd_up 1: $(head -c 300 <<<"$body")"
    [ -z "$why" ] && { wait_for "$textfile" || why="no textfile at $textfile"; }
    [ -z "$why" ] && { grep -q '^offloadd_up ' "$(root "$textfile")" || why="$textfile holds no offloadd_up"; }
    # Readable by node_exporter's user although the unit's UMask=0077 narrows new files.
    mode=$(stat -c %a "$(root "$textfile")" 2>/dev/null)
    [ -z "$why" ] && [ "$mode" != 644 ] && why="$textfile has mode $mode, not 644 (UMask=0077 narrowed it?)"
    # The unit's sandbox on the process itself: CapabilityBoundingSet (CAP_NET_ADMIN 12 and
    # CAP_NET_BIND_SERVICE 10), NoNewPrivileges, and SystemCallFilter's seccomp mode 2.
    status=$(inside cat "/proc/$main/status")
    bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' <<<"$status")
    [ -z "$why" ] && [ "$bnd" != 0000000000001400 ] && why="CapBnd is $bnd, not CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (0000000000001400)"
    [ -z "$why" ] && ! grep -q '^NoNewPrivs:[[:space:]]*1$' <<<"$status" && why="NoNewPrivs is not set"
    [ -z "$why" ] && ! grep -q '^Seccomp:[[:space:]]*2$' <<<"$status" && why="no seccomp filter"
    if [ -z "$why" ]; then ok sandbox_serves_metrics_and_writes_textfile; else
        not_ok sandbox_serves_metrics_and_writes_textfile "$why"
        said
    fi
fi
stop_case

# 2. A directory of one's own with the documented drop-in.
textfile=/var/lib/offloadd-metrics/offloadd.prom
run_case custom_dir "$textfile" 'ReadWritePaths=/var/lib/offloadd-metrics\n'
if [ -n "$main" ] && [ "$main" != 0 ] && wait_for "$textfile"; then
    ok sandbox_custom_textfile_dir_with_dropin
else
    not_ok sandbox_custom_textfile_dir_with_dropin "no textfile at $textfile with ReadWritePaths=/var/lib/offloadd-metrics"
    said
fi
stop_case
rm -f "$(root "$textfile")"

# 3. The unit before issue 26: no AF_INET/AF_INET6. The listener fails (EAFNOSUPPORT);
# the log must say that the sandbox refused it, not blame the port.
run_case no_inet "/var/lib/prometheus/node-exporter/offloadd.prom" 'RestrictAddressFamilies=\nRestrictAddressFamilies=AF_NETLINK AF_UNIX\n'
if [ -z "$main" ] || [ "$main" = 0 ]; then
    not_ok sandbox_named_when_family_is_missing "the unit did not start"
    said
elif log_has "127.0.0.1:$port" 'RestrictAddressFamilies|sandbox'; then
    ok sandbox_named_when_family_is_missing
    show_line
else
    not_ok sandbox_named_when_family_is_missing "the log does not name the sandbox (RestrictAddressFamilies) for the refused listener"
    said
fi
stop_case

# 4. The custom directory without its drop-in: ProtectSystem=strict refuses it (EROFS).
run_case readonly_dir "/var/lib/offloadd-metrics/offloadd.prom" ""
if [ -z "$main" ] || [ "$main" = 0 ]; then
    not_ok sandbox_named_when_textfile_dir_is_readonly "the unit did not start"
    said
elif log_has /var/lib/offloadd-metrics/offloadd.prom 'ReadWritePaths'; then
    ok sandbox_named_when_textfile_dir_is_readonly
    show_line
else
    not_ok sandbox_named_when_textfile_dir_is_readonly "the log does not name ReadWritePaths for the refused textfile"
    said
fi
stop_case

summary
[ "$failed" -eq 0 ]
