#!/usr/bin/env bash
# VM tier, run inside the guest (a kernel with flowtables). Writes one line per check to
# $OUT/results ("ok NAME" or "not ok NAME: why") and "complete" to $OUT/done at the end;
# tests/vm/run.sh judges them on the host. Usage: guest.sh OUT OFFLOADD_BINARY [SECTION]
set -u
OUT=$1
OFFLOADD=$2
REPO=$(cd "$(dirname "$0")/../.." && pwd)
exec >"$OUT/guest.log" 2>&1
. "$REPO/tests/lab/topology.sh"
: >"$OUT/results"
T=$(mktemp -d)

ok() { echo "ok $1" >>"$OUT/results"; echo "ok $1"; }
# mark NAME: the guest's time so far, into $OUT/sections (run.sh prints it, so a run that
# outgrows its time budget says which part grew).
mark() { echo "$(($(date +%s) - GUEST_T0)) s: $1" >>"$OUT/sections"; }
GUEST_T0=$(date +%s)
fail() { echo "not ok $1: $2" >>"$OUT/results"; echo "not ok $1: $2"; }
check() { # check NAME DETAIL CMD...
    local name=$1 detail=$2; shift 2
    if "$@"; then ok "$name"; else fail "$name" "$detail"; fi
}
# judge NAME OBSERVATION CMD...: CMD reads the one captured OBSERVATION on stdin; on
# failure that same observation is printed (never a second, later look).
judge() {
    local name=$1 obs=$2; shift 2
    if printf '%s\n' "$obs" | "$@"; then ok "$name"; else fail "$name" "$(printf '%s' "$obs" | head -c 600)"; fi
}
has_offload() { grep -q '\[OFFLOAD\]'; }
# stdin: a `flow add` rule as nft lists it; prints "iif A B ... oif A B ..." with each
# set's names sorted (nft lists a hash set's elements in the kernel's order).
match_sets() {
    python3 -c '
import re, sys
line = sys.stdin.read()
out = []
for key in ("iifname", "oifname"):
    m = re.search(key + r" \{ ([^}]*) \}", line)
    names = sorted(n.strip().strip(chr(34)) for n in m.group(1).split(",")) if m else []
    out.append(key[:3] + " " + " ".join(names))
print(" ".join(out))'
}
export -f match_sets
# stdin: conntrack lines of one flow; established, on the normal path.
fell_back() { local o; o=$(cat); grep -q ESTABLISHED <<<"$o" && ! grep -q OFFLOAD <<<"$o"; }
table_exists() { in_router nft list table inet offloadd >/dev/null 2>&1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# poll SECONDS CMD...: true as soon as CMD is, false after SECONDS.
poll() {
    local until=$(($(now_ms) + $1 * 1000)); shift
    until "$@"; do [ "$(now_ms)" -lt "$until" ] || return 1; sleep 0.05; done
}
# on_path sw|slow|hw PATTERN: offloadd lists a flow matching PATTERN on that path.
on_path() { "$OFFLOADD" flows --path "$1" 2>/dev/null | grep -q -- "$2"; }
# left_offloaded PATTERN: the daemon answers and keeps no offloaded flow matching PATTERN.
# (`flows --path slow` is a dump of the kernel; this is what the daemon's tracker knows.)
left_offloaded() { local o; o=$("$OFFLOADD" flows --path offloaded 2>&1) || return 1; ! grep -q -- "$1" <<<"$o"; }
export -f flows in_router on_path left_offloaded
export R OFFLOADD OFFLOADD_SOCKET
offloaded() { flows "$1" "$2" | grep -q '\[OFFLOAD\]'; }
# role_is manage|observe: the running daemon's role.
role_is() { "$OFFLOADD" status --json 2>/dev/null | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["role"] != sys.argv[1])' "$1" 2>/dev/null; }
export -f role_is
# log_num NAME: NAME's number in the daemon's log line on stdin (since_change_ms, took_ms).
log_num() { sed -n "s/.*$1=\([0-9]*\).*/\1/p"; }
# Our flowtable as the kernel has it, and a device as the daemon has it (links.sh,
# fw4.sh, policy.sh: each part also runs alone).
ft_devices() { in_router nft list flowtable inet offloadd ft 2>/dev/null | sed -n 's/.*devices = { \(.*\) }.*/\1/p'; }
ft_handle() { in_router nft -a list flowtable inet offloadd ft 2>/dev/null | sed -n 's/.*flowtable ft { # handle \([0-9]*\).*/\1/p'; }
# Handles are numbered per table: a re-created table's first flowtable gets the old
# flowtable's handle again. The table's own handle comes from a per-namespace counter,
# so "table/flowtable" changes whenever either was re-created.
table_handle() { in_router nft -a list table inet offloadd 2>/dev/null | sed -n '1s/.*# handle \([0-9]*\).*/\1/p'; }
ft_identity() { local t f; t=$(table_handle); f=$(ft_handle); [ -n "$t" ] && [ -n "$f" ] && echo "$t/$f"; }
ft_has() { ft_devices | tr -d ' ' | tr ',' '\n' | grep -qx "$1"; }
ft_lacks() { ! ft_has "$1"; }
device_state() { # device_state NAME: the daemon's state for a configured device
    "$OFFLOADD" status --json 2>/dev/null | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["name"] == sys.argv[1]:
        print(d["state"], d.get("why", ""))' "$1"
}
export -f device_state

conf() { # conf FILE HARDWARE [extra lines]
    local f=$1 hw=$2; shift 2
    { echo '[offload]'; echo 'devices = ["lan0", "wan0", "wan1"]'; echo "hardware = \"$hw\""; printf '%s\n' "$@"; } >"$f"
}

modprobe -a nf_flow_table_inet nft_flow_offload nf_conntrack_netlink 2>/dev/null
# SECTION (third argument, from VM_ONLY): "all", "openwrt" for that lab alone, or
# "policy" for the two-veth lab's firewall checks alone, "gateway" for gateway.sh alone,
# "big" for big.sh alone, "ha" for ha.sh, why.sh and top.sh alone, "fw4" for fw4.sh.
if [ "${3:-all}" = policy ] || [ "${3:-all}" = fw4 ]; then
    lab_up || { fail lab_up "could not build the lab"; echo complete >"$OUT/done"; exit 0; }
    add_forward_counter
    start_servers 7777 5060
    . "$REPO/tests/vm/$3.sh"
    lab_down
    echo complete >"$OUT/done"
    exit 0
fi
if [ "${3:-all}" = big ]; then
    lab_up || { fail lab_up "could not build the lab"; echo complete >"$OUT/done"; exit 0; }
    . "$REPO/tests/vm/big.sh"
    lab_down
    echo complete >"$OUT/done"
    exit 0
fi
if [ "${3:-all}" = ha ]; then
    lab_up || { fail lab_up "could not build the lab"; echo complete >"$OUT/done"; exit 0; }
    add_forward_counter
    . "$REPO/tests/vm/ha.sh"
    . "$REPO/tests/vm/why.sh"
    . "$REPO/tests/vm/top.sh"
    lab_down
    echo complete >"$OUT/done"
    exit 0
fi
if [ "${3:-all}" = gateway ]; then
    lab_up || { fail lab_up "could not build the lab"; echo complete >"$OUT/done"; exit 0; }
    start_servers 7777 5353
    . "$REPO/tests/vm/gateway.sh"
    lab_down
    echo complete >"$OUT/done"
    exit 0
fi
if [ "${3:-all}" = all ]; then
lab_up || { fail lab_up "could not build the lab"; echo complete >"$OUT/done"; exit 0; }
add_forward_counter
start_servers 7777 5060

# --- hardware = "auto" on veth: software flowtable, each device's refusal reported.
# The second exclusion (ct mark and input device) matches none of the lab's traffic: it
# shows the kernel takes those expressions, and nft reads them back as written.
conf "$T/auto.toml" auto '[[offload.exclude]]' 'l4proto = "udp"' 'dport = ["5060"]' \
    '[[offload.exclude]]' 'mark = "0x10/0xff"' 'iif = ["lan0"]'
# The plan is valid nft for a kernel with flowtables (nft -c validates without commit).
# Checked before the daemon runs: once it does, its owner-flagged table refuses
# changes from any other process, `nft -c` included (EPERM).
conf "$T/off.toml" off '[[offload.exclude]]' 'l4proto = "udp"' 'dport = ["5060"]' \
    '[[offload.exclude]]' 'mark = "0x10/0xff"' 'iif = ["lan0"]'
in_router "$OFFLOADD" plan --config "$T/off.toml" >"$T/plan-off.nft" 2>&1
check plan_is_valid_nft "$(in_router nft -c -f "$T/plan-off.nft" 2>&1 | head -3)" in_router nft -c -f "$T/plan-off.nft"
# With hardware requested the plan has `flags offload`, which veth refuses: nft says so too.
in_router "$OFFLOADD" plan --config "$T/auto.toml" >"$T/plan-auto.nft" 2>&1
check nft_refuses_hw_on_veth_too "$(in_router nft -c -f "$T/plan-auto.nft" 2>&1 | head -2)" \
    bash -c "grep -q 'flags offload' '$T/plan-auto.nft' && ip netns exec $R nft -c -f '$T/plan-auto.nft' 2>&1 | grep -q 'Operation not supported'"
if start_offloadd "$T/auto.toml" "$OUT/offloadd-auto.log"; then ok start_manage; else fail start_manage "$(tail -3 "$OUT/offloadd-auto.log")"; fi
in_router nft list table inet offloadd >"$OUT/table.nft" 2>&1
check table_has_devices "$(cat "$OUT/table.nft")" grep -q 'devices = { lan0, wan0 }' "$OUT/table.nft"
check table_has_owner_flag "no 'flags owner'" grep -q 'flags owner' "$OUT/table.nft"
check mark_and_device_exclusion_applied "$(grep -E 'mark|iifname|oifname' "$OUT/table.nft")" bash -c \
    "grep -q 'ct mark & 0x000000ff == 0x00000010 ct direction original iifname \"lan0\" return' '$OUT/table.nft' && grep -q 'ct direction reply oifname \"lan0\" return' '$OUT/table.nft'"
check hw_auto_falls_back "flags offload present" bash -c "! grep -q 'flags offload' '$OUT/table.nft'"
# flow add only for flows between configured devices: a flow to any other device (a VPN,
# a Docker bridge) would be marked OFFLOAD and still take the slow path.
judge flow_add_limited_to_configured_devices "$(grep 'flow add' "$OUT/table.nft")" \
    bash -c '[ "$(match_sets)" = "iif lan0 wan0 wan1 oif lan0 wan0 wan1" ]'
check hw_auto_reports_each_device "$(grep -i hardware "$OUT/offloadd-auto.log")" bash -c \
    "grep -q 'device=lan0 reason=driver does not support TC_SETUP_FT (EOPNOTSUPP)' '$OUT/offloadd-auto.log' && grep -q 'device=wan0 reason=driver does not support TC_SETUP_FT (EOPNOTSUPP)' '$OUT/offloadd-auto.log'"
check missing_device_warned "no warning for wan1" grep -q "device=wan1" "$OUT/offloadd-auto.log"

# --- Offload: TCP and two-way UDP reach [OFFLOAD]; the excluded UDP port does not.
# offloadd reports each within one resync interval (default 2 s) of the kernel, and
# `flows --watch` prints the moves as they happen.
"$OFFLOADD" flows --watch >"$OUT/watch.txt" 2>&1 &
WATCH_PID=$!
sleep 0.5
# 14 s: the stream outlives every check below that judges it.
run_tcp 14 "$T/iperf.json"
run_udp 6 7777 40000 "$T/udp7777.log"; P1=$UDP_PID
run_udp 6 5060 40001 "$T/udp5060.log"; P2=$UDP_PID
lag() { # lag PROTO PORT: ms from conntrack's [OFFLOAD] to offloadd listing it as sw
    poll 10 offloaded "$1" "$2" || { echo never; return; }
    local t0; t0=$(now_ms)
    poll 10 on_path sw "198.18.2.2:$2" || { echo never; return; }
    echo $(($(now_ms) - t0))
}
TCP_LAG=$(lag tcp 5201)
UDP_LAG=$(lag udp 7777)
echo "tcp_lag_ms=$TCP_LAG udp_lag_ms=$UDP_LAG" >"$OUT/report-lag.txt"
sleep 1
flows >"$OUT/conntrack-during.txt"
"$OFFLOADD" flows >"$OUT/offloadd-flows-during.txt" 2>&1
"$OFFLOADD" status >"$OUT/status-during.txt" 2>&1
"$OFFLOADD" status --json >"$T/status.json" 2>&1
"$OFFLOADD" metrics >"$OUT/metrics-during.txt" 2>&1
judge tcp_offloaded "$(flows tcp 5201)" has_offload
judge udp_offloaded "$(flows udp 7777)" has_offload
excluded_slow() { local o; o=$(cat); grep -q 'dport=5060' <<<"$o" && ! grep -q OFFLOAD <<<"$o"; }
judge excluded_udp_not_offloaded "$(flows udp 5060)" excluded_slow
check flows_shows_tcp_sw_within_resync "lag ${TCP_LAG} ms" test "$TCP_LAG" != never -a "${TCP_LAG/never/99999}" -le 2500
check flows_shows_udp_sw_within_resync "lag ${UDP_LAG} ms" test "$UDP_LAG" != never -a "${UDP_LAG/never/99999}" -le 2500
judge flows_shows_excluded_slow "$("$OFFLOADD" flows --path slow 2>&1)" grep -q -- "198.18.2.2:5060"
check status_counts_offloaded "$(cat "$OUT/status-during.txt")" python3 -c '
import json, sys
c = json.load(open(sys.argv[1]))["conntrack"]
assert c["sw"] >= 2 and c["transitions"]["slow_to_sw"] >= 2 and c["to_offload_p50_ms"] is not None, c' "$T/status.json"
check metrics_count_sw "$(grep flows "$OUT/metrics-during.txt")" grep -Eq '^offloadd_flows\{path="sw"\} [1-9]' "$OUT/metrics-during.txt"
check watch_prints_transition "$(head -5 "$OUT/watch.txt")" grep -Eq 'tcp 198\.18\.1\.2:[0-9]+ -> 198\.18\.2\.2:5201 slow -> sw' "$OUT/watch.txt"
wait "$TCP_PID" "$P1" "$P2"
fwd=$(forward_packets)
sent=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"]))' "$T/iperf.json" 2>/dev/null || echo 0)
echo "forward hook packets=$fwd iperf3 bytes=$sent" >"$OUT/forward-counter.txt"
# ~1448 bytes a packet: a stream that stayed on the slow path would put tens of
# thousands of packets through the forward hook; offloaded, only the first few pass.
check forward_chain_sees_only_first_packets "forward hook packets=$fwd for $sent bytes" \
    test "$sent" -gt 20000000 -a "$fwd" -lt $((sent / 1448 / 20))

# --- Our table deleted (reload into observe mode) while a stream is offloaded: the
# flow falls back to the slow path and status, flows and --watch say so.
# The earlier streams' ended connections are still listed (slow, TIME_WAIT): follow
# this stream by its own source port.
run_tcp 8 "$T/iperf-obs.json"
poll 10 offloaded tcp 5201
poll 10 on_path sw "198.18.2.2:5201"
SRC=$("$OFFLOADD" flows --path sw | awk '/ tcp .* -> 198\.18\.2\.2:5201 / {print $3; exit}')
STREAM="$SRC -> 198.18.2.2:5201"
check stream_listed_as_sw "$("$OFFLOADD" flows 2>&1)" test -n "$SRC"
{ echo 'mode = "observe"'; echo '[offload]'; echo 'devices = ["lan0", "wan0"]'; } >"$T/observe.toml"
cp "$T/auto.toml" "$T/auto.saved"; cp "$T/observe.toml" "$T/auto.toml"
kill -HUP "$OFFLOADD_PID"
poll 5 bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
# Timed by the daemon itself: from its "switching to observe; removing table" log line
# to the transition it reported on the watch stream (the lab's own polls under TCG took
# 2.6 s on a busy machine for what the daemon did in well under its 2 s resync).
poll 10 left_offloaded "$STREAM"
poll 5 grep -qF "$STREAM sw -> slow" "$OUT/watch.txt"
removed=$(grep 'switching to observe; removing table' "$OUT/offloadd-auto.log" | tail -1 | cut -d' ' -f1)
slow_at=$(grep -F "$STREAM sw -> slow" "$OUT/watch.txt" | tail -1 | cut -d' ' -f1)
SLOW_LAG=never
[ -n "$removed" ] && [ -n "$slow_at" ] &&
    SLOW_LAG=$(( $(date -d "${removed%%T*}T${slow_at}" +%s%3N) - $(date -d "$removed" +%s%3N) ))
echo "stream=$STREAM back_to_slow_ms=$SLOW_LAG (daemon's log: table removed at $removed, transition at $slow_at)" >>"$OUT/report-lag.txt"
"$OFFLOADD" status >"$OUT/status-observe.txt" 2>&1
"$OFFLOADD" status --json >"$T/status-obs.json" 2>&1
check table_removed_on_observe "table still there" bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
check flows_back_to_slow_within_resync "$STREAM after ${SLOW_LAG} ms: $(flows tcp 5201)" bash -c \
    "test $SLOW_LAG != never && test ${SLOW_LAG/never/99999} -le 2500 && on_path slow '$STREAM' && ! on_path sw '$STREAM' && ! (flows tcp 5201 | grep -q OFFLOAD)"
check status_shows_back_to_slow "$(cat "$OUT/status-observe.txt")" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
assert s["role"] == "observe" and s["conntrack"]["transitions"]["to_slow"] >= 1, s' "$T/status-obs.json"
check watch_prints_back_to_slow "$(tail -3 "$OUT/watch.txt")" grep -qF "$STREAM sw -> slow" "$OUT/watch.txt"
wait "$TCP_PID"
kill "$WATCH_PID" 2>/dev/null
cp "$T/auto.saved" "$T/auto.toml"
kill -HUP "$OFFLOADD_PID"; poll 5 table_exists

# --- SIGHUP: a new exclusion is applied; a bad config is refused and the ruleset kept.
conf "$T/auto.toml" auto '[[offload.exclude]]' 'l4proto = "tcp"' 'dport = ["22"]'
kill -HUP "$OFFLOADD_PID"; sleep 2
check reload_applies_change "$(in_router nft list chain inet offloadd forward 2>&1)" \
    bash -c "ip netns exec $R nft list chain inet offloadd forward | grep -q 'meta l4proto tcp ct original proto-dst 22 return'"
ruleset_to "$T/before-bad.nft"
printf '[offload]\ndevices = ["lan0"]\nhardware = "sometimes"\n' >"$T/auto.toml"
kill -HUP "$OFFLOADD_PID"; sleep 2
ruleset_to "$T/after-bad.nft"
check bad_reload_keeps_ruleset "$(ruleset_diff "$T/before-bad.nft" "$T/after-bad.nft")" cmp -s "$T/before-bad.nft" "$T/after-bad.nft"
check bad_reload_names_file_line "$(tail -2 "$OUT/offloadd-auto.log")" grep -q "auto.toml:3: hardware \"sometimes\" is not valid" "$OUT/offloadd-auto.log"
check daemon_survives_bad_reload "daemon exited" kill -0 "$OFFLOADD_PID"
# The whole malformed-TOML corpus, each file sent as a reload: every one is refused with
# its file:line, the daemon stays, the ruleset stays byte-identical.
refused0=$(grep -c 'keeping the running ruleset' "$OUT/offloadd-auto.log")
n=0
for bad in "$REPO"/tests/fixtures/bad-toml/*.toml; do
    cp "$bad" "$T/auto.toml"; kill -HUP "$OFFLOADD_PID"; sleep 0.3; n=$((n + 1))
done
sleep 1
refused=$(($(grep -c 'keeping the running ruleset' "$OUT/offloadd-auto.log") - refused0))
ruleset_to "$T/after-corpus.nft"
check bad_corpus_reloads_refused "$refused of $n refused" test "$refused" -eq "$n" -a "$n" -ge 20
check bad_corpus_keeps_ruleset "$(ruleset_diff "$T/before-bad.nft" "$T/after-corpus.nft")" cmp -s "$T/before-bad.nft" "$T/after-corpus.nft"
check daemon_survives_bad_corpus "daemon exited" kill -0 "$OFFLOADD_PID"

# --- SIGTERM with a flow offloaded: table removed, exit 0, the flow falls back.
conf "$T/auto.toml" auto
kill -HUP "$OFFLOADD_PID"; sleep 1
run_tcp 8 "$T/iperf2.json"
sleep 3
poll 10 offloaded tcp 5201
judge tcp_offloaded_before_stop "$(flows tcp 5201)" has_offload
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"; rc=$?
check sigterm_exit_0 "exit code $rc" test "$rc" -eq 0
check sigterm_removes_table "table still there" bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
sleep 1
judge flows_fall_back_after_stop "$(flows tcp 5201)" fell_back
wait "$TCP_PID"
check stream_survives_stop "$(tail -c 300 "$T/iperf2.json")" python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "error" not in d and d["end"]["sum_received"]["bytes"] > 0' "$T/iperf2.json"

# --- Restart with systemd's notify protocol: READY=1 comes only once the table exists.
python3 - "$T/notify.sock" "$R" >"$T/notify.out" 2>&1 <<'PY' &
import socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
msg = s.recv(64).decode()
have = subprocess.run(["ip", "netns", "exec", sys.argv[2], "nft", "list", "table", "inet", "offloadd"], capture_output=True).returncode == 0
print(msg, "table-present" if have else "table-absent")
PY
NL=$!
# Python starts slowly under TCG: the daemon must not notify before the listener binds.
poll 20 test -S "$T/notify.sock"
NOTIFY_SOCKET=$T/notify.sock start_offloadd "$T/auto.toml" "$OUT/offloadd-kill.log"
check restart_after_stop "no table" table_exists
wait "$NL"
check sd_notify_ready_after_apply "$(cat "$T/notify.out")" grep -q '^READY=1 table-present' "$T/notify.out"

# --- kill -9: the owner flag makes the kernel remove the table with the socket (shortly
# after the close, not synchronously: poll up to 3 s).
kill -KILL "$OFFLOADD_PID"; wait "$OFFLOADD_PID" 2>/dev/null
for _ in $(seq 30); do table_exists || break; sleep 0.1; done
check kill9_leaves_no_table "table still there after 3 s" bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"

# --- hardware = "require" on veth: refuses to start, names the devices, changes nothing.
conf "$T/require.toml" require
ruleset_to "$T/before-req.nft"
in_router "$OFFLOADD" run --config "$T/require.toml" >"$OUT/offloadd-require.log" 2>&1; rc=$?
ruleset_to "$T/after-req.nft"
check hw_require_exits_2 "exit code $rc" test "$rc" -eq 2
check hw_require_names_devices "$(tail -1 "$OUT/offloadd-require.log")" grep -q 'hardware offload refused for lan0, wan0: lan0: driver does not support TC_SETUP_FT' "$OUT/offloadd-require.log"
check hw_require_changes_nothing "$(ruleset_diff "$T/before-req.nft" "$T/after-req.nft")" cmp -s "$T/before-req.nft" "$T/after-req.nft"

# --- Devices that come and go (link watcher, incremental hooks).
mark links
. "$REPO/tests/vm/links.sh"

# --- Another table (a stand-in for fw4's inet fw4) is byte-identical around a full run.
in_router nft -f - <<'NFT'
table inet fw4 {
    chain forward { type filter hook forward priority filter; policy accept; tcp dport 9 drop; }
}
NFT
in_router nft list table inet fw4 >"$T/fw4-before.nft"
start_offloadd "$T/auto.toml" "$OUT/offloadd-fw4.log"
kill -HUP "$OFFLOADD_PID"; sleep 1
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
in_router nft list table inet fw4 >"$T/fw4-after.nft"
check other_table_untouched "inet fw4 changed" cmp -s "$T/fw4-before.nft" "$T/fw4-after.nft"

# --- Faults: kill -9 and restart, concurrent nft -f.
mark faults
. "$REPO/tests/vm/faults.sh"

# --- Firewall changes reach offloaded flows (flush).
mark policy
. "$REPO/tests/vm/policy.sh"

# --- `offloadd flush` (HA: a new VRRP master), and why slow flows are not offloaded.
mark ha
. "$REPO/tests/vm/ha.sh"
mark why
. "$REPO/tests/vm/why.sh"
mark top
. "$REPO/tests/vm/top.sh"

# --- Busy firewalls (set-element churn, a reload that deletes a device) and a big config.
mark busy
. "$REPO/tests/vm/busy.sh"

# --- Soak: device cycles and flow churn, three rounds.
mark soak
. "$REPO/tests/vm/soak.sh"

# --- OpenWrt source and fw4 coexistence.
mark fw4
. "$REPO/tests/vm/fw4.sh"

# --- A Linux gateway: kernel features, no devices, real firewalld (a fresh lab).
lab_up || fail lab_up_gateway "could not build the lab"
start_servers 7777 5353
mark gateway
. "$REPO/tests/vm/gateway.sh"
fi

# --- An OpenWrt-shaped router: DSA-shaped ports, PPPoE, NAT, IPv6, VLAN, WireGuard.
lab_down
mark openwrt
. "$REPO/tests/vm/openwrt.sh"

lab_down
mark end
echo complete >"$OUT/done"
