#!/usr/bin/env bash
# Inside the VM for tests/bench/scale.sh: writes "SIZE key value" lines to $OUT/scale.txt.
#   scale-guest.sh OUT OFFLOADD
set -u
OUT=$1
OFFLOADD=$2
REPO=$(cd "$(dirname "$0")/../.." && pwd)
exec >"$OUT/scale-guest.log" 2>&1
. "$REPO/tests/lab/topology.sh"
T=$(mktemp -d)
RES=$OUT/scale.txt
: >"$RES"
modprobe -a nf_flow_table_inet nft_flow_offload nf_conntrack_netlink 2>/dev/null
lab_up || { echo "0 lab_failed 1" >>"$RES"; echo complete >"$OUT/done"; exit 0; }
# Room for 1.1M entries, hashed into as many buckets as the kernel allows by default for
# that (a chain of ~4 per bucket), in the guest's own init namespace.
sysctl -qw net.netfilter.nf_conntrack_max=1100000
echo 262144 >/sys/module/nf_conntrack/parameters/hashsize
in_router sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3600
in_router sysctl -qw net.netfilter.nf_conntrack_udp_timeout_stream=3600
in_router sysctl -qw net.netfilter.nf_flowtable_udp_timeout=3600
# Local unreplied UDP entries need a rule that makes conntrack track the router's output.
in_router nft -f - <<'NFT'
table inet benchtrack {
    chain out { type filter hook output priority 0; ct state new counter; }
}
NFT
in_wan python3 "$LAB_DIR/udp_echo.py" server 7777 &
sleep 0.5
now_ms() { echo $(($(date +%s%N) / 1000000)); }
export OFFLOADD_SOCKET=$T/s.sock

# fill FROM TO: unreplied UDP entries FROM..TO-1 from the router to 127.x addresses.
fill() {
    in_router python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1]), int(sys.argv[2])):
    s.sendto(b"x", ("127.0.%d.%d" % (i // 60000 // 250, 1 + i // 60000 % 250), 1024 + i % 60000))
PY
}
# forwarded FROM TO: two-way UDP flows lan -> wan from source ports FROM..TO-1, one
# exchange each (offloadd offloads a UDP flow on its first reply).
forwarded() {
    in_lan python3 - "$1" "$2" <<'PY'
import socket, sys
socks = []
for p in range(int(sys.argv[1]), int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("198.18.1.2", p))
    s.settimeout(2)
    s.sendto(b"x", ("198.18.2.2", 7777))
    try:
        s.recv(16)
    except OSError:
        pass
    s.close()
PY
}
field() { "$OFFLOADD" status --json | python3 -c "import json,sys; c=json.load(sys.stdin)['conntrack']; print($1)"; }
# measure SIZE OFFLOADED: one daemon run on the table as it is.
measure() {
    local size=$1 want=$2 pid c0 c1 t0 t1 hz
    hz=$(getconf CLK_TCK)
    printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n' >"$T/scale.toml"
    ip netns exec "$R" "$OFFLOADD" --socket "$OFFLOADD_SOCKET" run --config "$T/scale.toml" >"$OUT/offloadd-$size.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do "$OFFLOADD" status --json >/dev/null 2>&1 && break; sleep 0.1; done
    # The offloaded flows: their next packet after the new table is made offloads them;
    # send one more exchange each, then wait until the daemon counts them.
    forwarded 20000 $((20000 + want))
    for _ in $(seq 120); do [ "$(field "c['sw']")" -ge "$want" ] && break; sleep 1; done
    echo "$size conntrack_entries $(in_router conntrack -C)" >>"$RES"
    echo "$size offloaded_counted $(field "c['sw']")" >>"$RES"
    sleep 10
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t0=$(date +%s%N)
    sleep 60
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat"); t1=$(date +%s%N)
    awk -v c=$((c1 - c0)) -v hz="$hz" -v ns=$((t1 - t0)) -v s="$size" 'BEGIN {printf "%s daemon_cpu_pct %.3f\n", s, 100 * c / hz / (ns / 1e9)}' >>"$RES"
    echo "$size daemon_rss_kib $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")" >>"$RES"
    echo "$size recheck_every_ms $(field "c['recheck_every_ms']")" >>"$RES"
    echo "$size last_lookup_flows $(field "c['last_lookup_flows']")" >>"$RES"
    status_lat "$size" status
    local s e
    s=$(now_ms); in_router conntrack -L >/dev/null 2>&1; e=$(now_ms)
    echo "$size conntrack_L_s $(awk -v d=$((e - s)) 'BEGIN {printf "%.2f", d / 1000}')" >>"$RES"
    echo 5 >"/proc/$pid/clear_refs"
    local rss0 fl
    rss0=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    # status while the listing's dump runs (on the dump thread).
    "$OFFLOADD" flows --json >/dev/null 2>&1 &
    local lister=$!
    status_lat "$size" status_during_dump
    wait "$lister"
    # The daemon's own answer time, over the socket (no CLI process start, which under
    # TCG is most of the figure above), alone and while listings' dumps run back to back.
    # The loop stops its listing too: killing only the subshell left one running into
    # the timed listing below, which then shared the dump thread with it.
    socket_lat "$size" status_socket
    ( trap 'kill $c 2>/dev/null; wait $c; exit 0' TERM
      while :; do nice -n 19 "$OFFLOADD" flows --json >/dev/null 2>&1 & c=$!; wait $c; done ) &
    lister=$!
    socket_lat "$size" status_socket_during_dumps
    kill "$lister"; wait "$lister" 2>/dev/null
    if pgrep -f "$OFFLOADD flows" >/dev/null; then echo "$size lister_left_running 1" >>"$RES"; fi
    fl=$( { /usr/bin/time -f '%M %e' "$OFFLOADD" flows --json >/dev/null; } 2>&1 | tail -1)
    echo "$size flows_client_peak_kib ${fl% *}" >>"$RES"
    echo "$size flows_s ${fl#* }" >>"$RES"
    echo "$size daemon_extra_peak_kib $(( $(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status") - rss0 ))" >>"$RES"
    s=$(now_ms); "$OFFLOADD" flows --path offloaded >"$T/off.txt" 2>&1; e=$(now_ms)
    echo "$size flows_offloaded_s $(awk -v d=$((e - s)) 'BEGIN {printf "%.2f", d / 1000}')" >>"$RES"
    echo "$size flows_offloaded_listed $(wc -l <"$T/off.txt")" >>"$RES"
    kill -TERM "$pid"; wait "$pid" 2>/dev/null
}
# socket_lat SIZE KEY: p50 and p99 of status answers over the control socket, 10 a second for 20 s.
socket_lat() {
    python3 "$REPO/tests/bench/status_latency.py" "$OFFLOADD_SOCKET" 20 0.1 "$2_" |
        awk -v s="$1" '$1 ~ /_p(50|99)_ms$/ {print s, $1, $2}' >>"$RES"
}
# status_lat SIZE KEY: p50 and p99 of 50 status calls (process start included).
status_lat() {
    local v
    v=$(for _ in $(seq 50); do
        s=$(date +%s%N); "$OFFLOADD" status --json >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000))
    done | sort -n | awk '{v[NR] = $1} END {printf "%.1f %.1f", v[int(NR / 2) + 1] / 1000, v[int(NR * 0.99)] / 1000}')
    echo "$1 ${2}_p50_ms ${v% *}" >>"$RES"
    echo "$1 ${2}_p99_ms ${v#* }" >>"$RES"
}

t=$(now_ms); fill 0 99000; echo "100000 fill_s $((($(now_ms) - t) / 1000))" >>"$RES"
measure 100000 1000
t=$(now_ms); fill 99000 990000; echo "1000000 fill_s $((($(now_ms) - t) / 1000))" >>"$RES"
measure 1000000 10000
lab_down
echo complete >"$OUT/done"
