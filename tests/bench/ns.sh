# Sourced by the bench scripts: a throwaway namespace whose conntrack table they fill.
# Touches only the namespace it names.

# bench_ns NS: the namespace, lo up, UDP entries kept an hour, and a rule that makes
# conntrack track it (it only does once some rule needs it).
bench_ns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip netns exec "$1" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=3600
    ip netns exec "$1" nft -f - <<'NFT'
table inet bench {
    chain out { type filter hook output priority 0; ct state new counter; }
}
NFT
}

# bench_fill NS N [FIRST]: N unreplied UDP entries, one per destination (address, port)
# from one socket: 127.0.A.B, 60,000 ports each. FIRST: the index to start at, so a
# second call adds new entries.
bench_fill() {
    ip netns exec "$1" python3 - "$2" "${3:-0}" <<'PY'
import socket, sys
n, first = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(first, first + n):
    s.sendto(b"x", ("127.0.%d.%d" % (i // 60000 // 250, 1 + i // 60000 % 250), 1024 + i % 60000))
PY
}
