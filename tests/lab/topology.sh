# Lab topology, sourced by the lab and the VM tests:
#   lan host (198.18.1.2, fd00:1::2) -- lan0 [router] wan0 -- wan host (198.18.2.2, fd00:2::2)
# Only namespaces this script creates are touched; lab_down removes them.
# LAB (name prefix) may be set by the caller so parallel labs do not collide.

LAB=${LAB:-odlab}
R=$LAB-router
L=$LAB-lan
W=$LAB-wan

# The lab's daemon and CLI calls use their own control socket, never /run/offloadd.sock.
export OFFLOADD_SOCKET=${OFFLOADD_SOCKET:-/run/$LAB-offloadd.sock}

in_router() { ip netns exec "$R" "$@"; }
in_lan() { ip netns exec "$L" "$@"; }
in_wan() { ip netns exec "$W" "$@"; }

lab_down() {
    for ns in "$L" "$R" "$W"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    return 0
}

lab_up() {
    lab_down
    ip netns add "$R" && ip netns add "$L" && ip netns add "$W" || return 1
    ip -n "$R" link add lan0 type veth peer name eth0 netns "$L"
    for ns in "$L" "$R" "$W"; do ip -n "$ns" link set lo up; done
    ip -n "$R" addr add 198.18.1.1/24 dev lan0
    ip -n "$R" addr add fd00:1::1/64 dev lan0 nodad
    ip -n "$R" link set lan0 up
    ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$L" addr add 198.18.1.2/24 dev eth0
    ip -n "$L" addr add fd00:1::2/64 dev eth0 nodad
    ip -n "$L" link set eth0 up
    ip -n "$L" route add default via 198.18.1.1
    ip -n "$L" -6 route add default via fd00:1::1
    wan_link_up
    keep_ingress_key
    in_lan ping -c1 -W2 198.18.2.2 >/dev/null
}

# The first and last ingress hook anywhere flip static keys, which patches kernel text
# live. Under TCG with 2 vCPUs that patching while packets flow has soft-locked the
# guest (ksoftirqd stuck on the int3 in __netif_receive_skb_core, 1 run in 4). A hook
# of the lab's own on the router's lo keeps the keys on, so offloadd's flowtable hooks
# coming and going never flip them. Host and real routers do not need this.
keep_ingress_key() {
    in_router nft -f - <<'NFT'
table netdev labkeep {
    chain keep { type filter hook ingress device "lo" priority 100; policy accept; }
}
NFT
}

# The router's ruleset without counter values (-s): counters are state, not ruleset, and
# a forwarded packet still in flight (a FIN, a retransmit) moves the lab's own counter.
ruleset_to() { in_router nft -s list ruleset >"$1"; }
# "ruleset changed" plus the first lines of the diff, for a check's detail.
ruleset_diff() { echo "ruleset changed: $(diff "$1" "$2" | head -6 | tr '\n' ' ')"; }

# The router's wan0 and the wan host's eth0 (a veth pair: deleting wan0 deletes both).
wan_link_up() { wan_link_add && wan_link_config; }
wan_link_add() { ip -n "$R" link add wan0 type veth peer name eth0 netns "$W"; }
wan_link_config() {
    ip -n "$R" addr add 198.18.2.1/24 dev wan0
    ip -n "$R" addr add fd00:2::1/64 dev wan0 nodad
    ip -n "$R" link set wan0 up
    ip -n "$W" addr add 198.18.2.2/24 dev eth0
    ip -n "$W" addr add fd00:2::2/64 dev eth0 nodad
    ip -n "$W" link set eth0 up
    ip -n "$W" route add default via 198.18.2.1
    ip -n "$W" -6 route add default via fd00:2::1
}

# Starts offloadd in the router with config $1, logging to $2; sets OFFLOADD_PID.
# Waits until the table exists (or the daemon exits).
start_offloadd() {
    local cfg=$1 log=$2
    # `ip netns exec` execs the command, so $! is offloadd itself (not a subshell).
    ip netns exec "$R" "$OFFLOADD" run --config "$cfg" >"$log" 2>&1 &
    OFFLOADD_PID=$!
    for _ in $(seq 1 100); do
        in_router nft list table inet offloadd >/dev/null 2>&1 && return 0
        kill -0 "$OFFLOADD_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Counts forwarded packets that went through the forward hook (offloaded ones skip it),
# in a table of the lab's own so ours stays exactly as offloadd made it.
add_forward_counter() {
    in_router nft -f - <<'NFT'
table inet labcount {
    chain forward_count { type filter hook forward priority filter + 20; policy accept; counter; }
}
NFT
}
forward_packets() {
    in_router nft list chain inet labcount forward_count | awk '/counter packets/ {print $3}'
}

# Traffic: an iperf3 TCP stream (capped: an unlimited stream can soft-lock a TCG guest)
# and UDP echo exchanges, lan -> wan. Servers live until lab_down.
start_servers() {
    in_wan iperf3 -s -D -B 198.18.2.2 >/dev/null
    for port in "$@"; do
        in_wan python3 "$LAB_DIR/udp_echo.py" server "$port" &
        disown
    done
    sleep 0.5
}
# run_tcp SECONDS JSON_OUT [PORT]: iperf3 client in the background; sets TCP_PID.
run_tcp() {
    in_lan iperf3 -c 198.18.2.2 -p "${3:-5201}" -t "$1" -b 100M -J >"$2" 2>&1 &
    TCP_PID=$!
}
# stop_tcp PORT: ends run_tcp's iperf3 itself ($TCP_PID is the in_lan subshell; killing
# it leaves the client streaming until its -t runs out).
stop_tcp() {
    pkill -f "iperf3 -c 198.18.2.2 -p $1 " 2>/dev/null
    wait "$TCP_PID" 2>/dev/null
    poll 3 bash -c "! pgrep -f 'iperf3 -c 198.18.2.2 -p $1 ' >/dev/null"
}
# run_udp SECONDS PORT SPORT LOG: echo client in the background; sets UDP_PID.
run_udp() {
    in_lan python3 "$LAB_DIR/udp_echo.py" client 198.18.2.2 "$2" "$1" "$3" >"$4" 2>&1 &
    UDP_PID=$!
}
# Bytes the wan host has received (to see whether a stream still flows).
wan_rx() { ip -n "$W" -s -j link show eth0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }
# Conntrack entries of the router: `flows` (all) or `flows tcp|udp PORT` (original dport).
flows() {
    if [ $# -ge 2 ]; then
        in_router conntrack -L -p "$1" --dport "$2" 2>/dev/null
    else
        in_router conntrack -L 2>/dev/null
    fi
}
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
