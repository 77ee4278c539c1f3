#!/usr/bin/env bash
# Bench, inside the VM (a kernel with flowtables): forwarding through a router with a
# 100-rule forward chain, without and with offloadd, and apply latency with the
# flowtable. Writes `key value` lines to $OUT/bench-vm.txt.
#   guest.sh OUT OFFLOADD APPLY_BENCH
set -u
OUT=$1
OFFLOADD=$2
APPLY_BENCH=$3
REPO=$(cd "$(dirname "$0")/../.." && pwd)
exec >"$OUT/bench-guest.log" 2>&1
. "$REPO/tests/lab/topology.sh"
T=$(mktemp -d)
R_OUT=$OUT/bench-vm.txt
: >"$R_OUT"
modprobe -a nf_flow_table_inet nft_flow_offload nf_conntrack_netlink 2>/dev/null
lab_up || { echo "lab_failed 1" >>"$R_OUT"; echo complete >"$OUT/done"; exit 0; }
in_wan iperf3 -s -D -B 198.18.2.2 >/dev/null
sleep 0.5

# A fw4-sized forward chain: 100 rules every forwarded packet walks (none matches the
# bench traffic), then accept.
{
    echo 'table inet fw {'
    echo '  chain forward {'
    echo '    type filter hook forward priority filter; policy accept;'
    for i in $(seq 100); do
        echo "    ip daddr 203.0.113.$i tcp dport $((1000 + i)) counter drop"
    done
    echo '    counter comment "walked all 100 rules"'
    echo '  }'
    echo '}'
} >"$T/fw.nft"
in_router nft -f "$T/fw.nft"

# pps RUN: packets forwarded per second lan -> wan during an 8 s uncapped TCP stream
# (wan host's received packets), median of 3 runs.
wan_rx_packets() { ip -n "$W" -s -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'; }
walked() { in_router nft list chain inet fw forward | awk '/walked all/ {print $3}'; }
# pps LABEL: median packets/s of 3 runs; also how many of the forwarded packets walked
# the whole chain (the per-packet rule cost offload removes).
pps() {
    local runs=() a b w0 w1 fwd=0 walk=0
    for _ in 1 2 3; do
        a=$(wan_rx_packets); w0=$(walked)
        in_lan iperf3 -c 198.18.2.2 -t 8 -J >"$T/iperf-$1.json" 2>&1
        b=$(wan_rx_packets); w1=$(walked)
        runs+=($(((b - a) / 8)))
        fwd=$((fwd + b - a)); walk=$((walk + w1 - w0))
    done
    echo "pps_$1 $(printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p)" >>"$R_OUT"
    echo "walked_$1 $(awk -v w="$walk" -v f="$fwd" 'BEGIN {printf "%.4f", (f > 0 ? w / f : 0)}')" >>"$R_OUT"
}
pps without_offloadd
printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n' >"$T/bench.toml"
start_offloadd "$T/bench.toml" "$T/offloadd.log" || echo "offloadd_failed 1" >>"$R_OUT"
pps with_offloadd
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"

# Apply latency with the flowtable: offloadd's batch vs nft -f of the same change.
printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n[[offload.exclude]]\nl4proto = "udp"\ndport = ["5060", "10000-20000"]\n[[offload.exclude]]\nsaddr = ["192.0.2.10", "2001:db8::/32"]\n' >"$T/apply.toml"
echo "apply_offloadd_ms $(in_router "$APPLY_BENCH" "$T/apply.toml" 21 | awk '{print $2}')" >>"$R_OUT"
in_router "$OFFLOADD" plan --config "$T/apply.toml" | grep -v '^#' >"$T/a.nft"
sed 's|flow add @ft|tcp dport 9 return\n\t\tct state established meta l4proto { tcp, udp } flow add @ft|' "$T/a.nft" >"$T/b.nft"
for f in a b; do { echo 'table inet offloadd'; echo 'delete table inet offloadd'; cat "$T/$f.nft"; } >"$T/$f.full.nft"; done
in_router nft -f "$T/a.full.nft"
times=()
for i in $(seq 21); do
    f=$([ $((i % 2)) -eq 0 ] && echo a || echo b)
    t0=$(date +%s%N); in_router nft -f "$T/$f.full.nft"; t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
done
in_router nft delete table inet offloadd
echo "apply_nft_ms $(printf '%s\n' "${times[@]}" | sort -n | sed -n 11p | awk '{printf "%.2f", $1 / 1000}')" >>"$R_OUT"
lab_down
echo complete >"$OUT/done"
