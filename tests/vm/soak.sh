# VM tier, sourced by guest.sh: the soak (issue 8), an hour of a busy router compressed.
# Five rounds, each: 250 delete/add cycles of a configured device (wan1) while 4
# clients open short TCP and UDP flows lan -> wan through the router without pause.
# After each round the daemon's flow list must equal the kernel's conntrack table
# (proto, addresses, ports, offloaded or not), the flowtable must hold exactly the
# configured devices, and then, with conntrack flushed, RSS is read (rss_settled). A
# leak grows every round: the lesser RSS of the last two rounds must be within 512 KiB
# of the lesser of the first two (the first warms up; at least 500 device cycles and
# thousands of flows lie between them). A one-round bump that is gone in the next is not a leak.
# Uses links.sh's ft_devices and rss_settled.

SOAK_ROUNDS=5 SOAK_CYCLES=250
in_wan python3 "$LAB_DIR/churn.py" server 7070 &
disown
# Nothing of the churn may expire during a round, from conntrack or from the flowtable,
# so the two lists can be compared exactly once it stops; conntrack -F clears them
# between rounds. (A flow leaving the flowtable by its timeout clears the OFFLOAD bit
# without an event: offloadd sees it at its next resync, and a comparison in that
# window differs. The first run of this test, with the 30 s flowtable timeout, met
# exactly that.)
SOAK_SYSCTLS="nf_conntrack_tcp_timeout_time_wait nf_conntrack_tcp_timeout_close nf_conntrack_udp_timeout nf_conntrack_udp_timeout_stream nf_flowtable_tcp_timeout nf_flowtable_udp_timeout"
for k in $SOAK_SYSCTLS; do
    eval "soak_old_$k=\$(in_router sysctl -n net.netfilter.$k)"
    in_router sysctl -qw "net.netfilter.$k=600"
done
in_router conntrack -F 2>/dev/null
conf "$T/soak.toml" off
start_offloadd "$T/soak.toml" "$OUT/offloadd-soak.log"
in_router ip link add wan1 type veth peer name wan1p

# soak_compare: true when what offloadd keeps and counts is the kernel's: the offloaded
# flows it keeps (`flows --path offloaded`, from its tracker, unlike a full `flows`,
# which is a dump) are exactly the kernel's offloaded TCP/UDP entries, and its counts
# (slow + sw + hw, and sw + hw) equal the kernel's. Writes a summary (sizes, first
# differences) to $T/soak-compare.txt.
soak_compare() {
    "$OFFLOADD" flows --path offloaded --json >"$T/soak-ours.json" 2>/dev/null || return 1
    "$OFFLOADD" status --json >"$T/soak-status.json" 2>/dev/null || return 1
    in_router conntrack -L >"$T/soak-kernel.txt" 2>/dev/null
    python3 - "$T/soak-ours.json" "$T/soak-status.json" "$T/soak-kernel.txt" >"$T/soak-compare.txt" <<'PY'
import json, re, sys
ours = {("tcp" if f["proto"] == 6 else "udp", f["orig"]["src"], f["orig"]["sport"],
         f["orig"]["dst"], f["orig"]["dport"]) for f in json.load(open(sys.argv[1]))}
c = json.load(open(sys.argv[2]))["conntrack"]
kernel, offloaded = 0, set()
for line in open(sys.argv[3]):
    proto = line.split()[0]
    if proto not in ("tcp", "udp"):
        continue
    kernel += 1
    if "OFFLOAD]" in line:
        field = lambda k: re.search(r"\b" + k + r"=(\S+)", line).group(1)
        offloaded.add((proto, field("src"), int(field("sport")), field("dst"), int(field("dport"))))
counted = (c["slow"] + c["sw"] + c["hw"], c["sw"] + c["hw"])
print(f"offloadd counts {counted[0]} ({counted[1]} offloaded, {c['untracked']} only counted), "
      f"keeps {len(ours)} offloaded; conntrack {kernel} ({len(offloaded)} offloaded); "
      f"only offloadd: {sorted(ours - offloaded)[:2]}, only conntrack: {sorted(offloaded - ours)[:2]}")
sys.exit(0 if ours == offloaded and counted == (kernel, len(offloaded)) else 1)
PY
}

soak_round() { # soak_round N: one round; sets ROUND_* figures
    local t0 churn
    t0=$(now_ms)
    # `ip netns exec` execs python, so $! is the client itself (it stops on SIGTERM).
    ip netns exec "$L" python3 "$LAB_DIR/churn.py" client 198.18.2.2 7070 7777 600 4 >"$T/churn-$1.txt" 2>&1 &
    churn=$!
    for _ in $(seq $((SOAK_CYCLES / 10))); do cycles 10; sleep 0.05; done
    kill -TERM "$churn" 2>/dev/null; wait "$churn" 2>/dev/null
    ROUND_MS=$(($(now_ms) - t0))
    poll 5 ft_has wan1
    ROUND_DEVICES=$(ft_devices)
    # Until the last events and one resync are in (the watcher resyncs every 2 s).
    ROUND_MATCH=no; poll 20 soak_compare && ROUND_MATCH=yes
    ROUND_FLOWS=$(cat "$T/soak-compare.txt")
    in_router conntrack -F 2>/dev/null
    poll 10 bash -c "\"$OFFLOADD\" status --json | python3 -c 'import json,sys; c=json.load(sys.stdin)[\"conntrack\"]; sys.exit(c[\"slow\"]+c[\"sw\"]+c[\"hw\"] != 0)'"
    ROUND_RSS=$(rss_settled)
    echo "soak round $1: ${SOAK_CYCLES} device cycles and flow churn in ${ROUND_MS} ms; flows at the end: ${ROUND_FLOWS}; devices ${ROUND_DEVICES}; churn: $(cat "$T/churn-$1.txt") exchanges; rss ${ROUND_RSS} KiB after conntrack -F" >>"$OUT/report-soak.txt"
}

SOAK_MATCHES=0 SOAK_MISMATCHES="" SOAK_DEVICES_OK=0 RSS_ROUNDS="" RSS_ALL=""
for round in $(seq "$SOAK_ROUNDS"); do
    soak_round "$round"
    if [ "$ROUND_MATCH" = yes ]; then
        SOAK_MATCHES=$((SOAK_MATCHES + 1))
    else
        SOAK_MISMATCHES="${SOAK_MISMATCHES:+$SOAK_MISMATCHES; }round $round: $ROUND_FLOWS"
    fi
    [ "$ROUND_DEVICES" = "lan0, wan0, wan1" ] && SOAK_DEVICES_OK=$((SOAK_DEVICES_OK + 1))
    RSS_ROUNDS="$RSS_ROUNDS $ROUND_RSS"
    RSS_ALL="${RSS_ALL:+$RSS_ALL, }$ROUND_RSS"
    LAST_FLOWS=$ROUND_FLOWS
done
RSS_WARM=$(echo "$RSS_ROUNDS" | awk '{print ($1 < $2 ? $1 : $2)}')
RSS_END=$(echo "$RSS_ROUNDS" | awk '{print ($(NF-1) < $NF ? $(NF-1) : $NF)}')
TRANSITIONS=$("$OFFLOADD" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["conntrack"]["transitions"]["slow_to_sw"])')
OVERRUNS=$("$OFFLOADD" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["conntrack"]["overruns"])')
echo "soak: $((SOAK_ROUNDS * SOAK_CYCLES)) device cycles; ${TRANSITIONS} flows moved to the flowtable, ${OVERRUNS} event overruns; rss after each round ${RSS_ALL} KiB" >>"$OUT/report-soak.txt"
check soak_flows_match_conntrack "$SOAK_MATCHES of $SOAK_ROUNDS rounds matched; ${SOAK_MISMATCHES:-last: $LAST_FLOWS}" test "$SOAK_MATCHES" -eq "$SOAK_ROUNDS"
check soak_devices_as_desired "$SOAK_DEVICES_OK of $SOAK_ROUNDS rounds; now $(ft_devices)" test "$SOAK_DEVICES_OK" -eq "$SOAK_ROUNDS"
check soak_churn_offloaded "$TRANSITIONS flows moved to the flowtable" test "$TRANSITIONS" -ge 100
check soak_rss_flat "rss after each round ${RSS_ALL} KiB: first two ${RSS_WARM}, last two ${RSS_END}" test $((RSS_END - RSS_WARM)) -le 512
check soak_no_error_logged "$(grep -E 'ERROR' "$OUT/offloadd-soak.log" | head -3)" bash -c "! grep -q ERROR '$OUT/offloadd-soak.log'"
check soak_daemon_alive "daemon exited" kill -0 "$OFFLOADD_PID"

kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
in_router ip link del wan1 2>/dev/null
for k in $SOAK_SYSCTLS; do
    eval "in_router sysctl -qw net.netfilter.$k=\$soak_old_$k"
done
in_router conntrack -F 2>/dev/null
