#!/usr/bin/env bash
# The lab itself, on a kernel with flowtables. Usage: scenario.sh OFFLOADD [REPORT_FILE]
set -u
OFFLOADD=$1
if [ -n "${2:-}" ]; then exec >"$2" 2>&1; fi
. "$(dirname "$0")/topology.sh"
T=$(mktemp -d)
trap 'lab_down; rm -rf "$T"' EXIT
say() { printf '\n== %s\n' "$*"; }

modprobe -q -a nf_flow_table_inet nft_flow_offload nf_conntrack_netlink 2>/dev/null
lab_up || { echo "RESULT: failed (could not build the lab)"; exit 1; }
cat >"$T/offloadd.toml" <<'TOML'
[offload]
devices = ["lan0", "wan0"]
hardware = "auto"          # veth has no hardware offload: watch it fall back
[[offload.exclude]]        # SIP never offloaded
l4proto = "udp"
dport = ["5060"]
TOML
say "lab: lan 198.18.1.2 -- lan0 [router] wan0 -- wan 198.18.2.2 (kernel $(uname -r))"
say "config"
cat "$T/offloadd.toml"
add_forward_counter
start_offloadd "$T/offloadd.toml" "$T/offloadd.log" || { cat "$T/offloadd.log"; echo "RESULT: failed (offloadd did not start)"; exit 1; }
say "offloadd log"
cat "$T/offloadd.log"
say "what offloadd applied (nft list table inet offloadd)"
in_router nft list table inet offloadd

start_servers 7777 5060
say "traffic for 6 s: iperf3 TCP at 100 Mbit/s, UDP echo to port 7777 and to excluded port 5060"
run_tcp 6 "$T/iperf.json"
run_udp 6 7777 40000 "$T/udp1.log"; U1=$UDP_PID
run_udp 6 5060 40001 "$T/udp2.log"; U2=$UDP_PID
sleep 3
say "router conntrack during the traffic (conntrack -L)"
flows | grep -E 'dport=(5201|7777|5060) ' | sed -E 's/ +/ /g'
say "the same, as offloadd reports it (offloadd flows)"
"$OFFLOADD" flows
say "offloadd status"
"$OFFLOADD" status
tcp_ok=0; udp_ok=0; excl_ok=0
flows tcp 5201 | grep -q OFFLOAD && tcp_ok=1
flows udp 7777 | grep -q OFFLOAD && udp_ok=1
flows udp 5060 | grep -q 'dport=5060' && ! flows udp 5060 | grep -q OFFLOAD && excl_ok=1
wait "$TCP_PID" "$U1" "$U2"
cat "$T/udp1.log" "$T/udp2.log"
bytes=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"]))' "$T/iperf.json" 2>/dev/null || echo 0)
fwd=$(forward_packets)
say "report"
printf '  TCP stream (iperf3):          %s\n' "$([ $tcp_ok = 1 ] && echo '[OFFLOAD] software fast path' || echo 'NOT offloaded')"
printf '  UDP echo to 7777:             %s\n' "$([ $udp_ok = 1 ] && echo '[OFFLOAD] software fast path' || echo 'NOT offloaded')"
printf '  UDP echo to 5060 (excluded):  %s\n' "$([ $excl_ok = 1 ] && echo 'normal path, as configured' || echo 'UNEXPECTED')"
excluded=$(awk '{print $5 + $7}' "$T/udp2.log")
printf '  iperf3 sent %s MB (about %s packets); packets through the forward hook: %s,\n' \
    "$((bytes / 1000000))" "$((bytes / 1448))" "$fwd"
printf '  of which %s are the excluded UDP exchange: offloaded flows skip the firewall after\n' "$excluded"
printf '  their first packets.\n'
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"; rc=$?
say "offloadd stopped (SIGTERM, exit $rc): table inet offloadd removed"
in_router nft list tables
if [ $tcp_ok = 1 ] && [ $udp_ok = 1 ] && [ $excl_ok = 1 ] && [ "$rc" = 0 ]; then
    echo "RESULT: ok"
else
    echo "RESULT: failed"
    exit 1
fi
