# VM tier, sourced by guest.sh after policy.sh (it uses stream_after_drop, wan_rx (topology.sh) and
# dropped from there): busy firewalls and big configs (issue 13).

# A "main firewall" with a set that another program updates all the time (banIP,
# dnsmasq nftset, crowdsec): element changes are no rule changes and do not flush.
in_router nft -f - <<'NFT'
table inet mainfw {
    set blocked { type ipv4_addr; }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ip saddr @blocked drop
    }
}
NFT
printf '[offload]\ndevices = ["lan0", "wan0", "wan1"]\nhardware = "off"\n' >"$T/busy.toml"
in_router ip link add wan1 type veth peer name wan1p
start_offloadd "$T/busy.toml" "$OUT/offloadd-busy.log"
flushes_now() { "$OFFLOADD" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["flushes"])'; }
not_flushed_now() { "$OFFLOADD" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["commits_not_flushed"])'; }

# 60 s, stopped after the samples: the stream outlives them however slow `conntrack -L`
# is under TCG with the churn loop beside it (a 20 s stream ended before the last one).
run_tcp 60 "$T/iperf-churn.json"
poll 10 offloaded tcp 5201
F0=$(flushes_now)
# The churn: add and delete elements in a loop, one nft transaction each.
( i=0; while :; do
    ip netns exec "$R" nft add element inet mainfw blocked "{ 198.19.$((i / 250 % 250)).$((i % 250 + 1)) }"
    ip netns exec "$R" nft delete element inet mainfw blocked "{ 198.19.$((i / 250 % 250)).$((i % 250 + 1)) }"
    i=$((i + 1))
  done ) 2>/dev/null &
CHURN=$!
samples=0 lost=0 seen=""
for _ in $(seq 16); do
    obs=$(flows tcp 5201)
    samples=$((samples + 1))
    grep -q '\[OFFLOAD\]' <<<"$obs" || { lost=$((lost + 1)); seen="$obs"; }
    sleep 0.3
done
kill "$CHURN"; wait "$CHURN" 2>/dev/null
F1=$(flushes_now); NF=$(not_flushed_now)
echo "set-element churn: $NF commits not flushed for, flushes $F0 -> $F1, $lost of $samples samples without [OFFLOAD]" >>"$OUT/report-busy.txt"
check churn_keeps_stream_offloaded "$lost of $samples samples without [OFFLOAD]; last such: $seen" test "$lost" -eq 0 -a "$samples" -eq 16
check churn_flushes_nothing "flushes $F0 -> $F1 with $NF element commits" test "$F1" -eq "$F0" -a "$NF" -ge 10
# Stop the stream by namespace: $TCP_PID is the subshell of run_tcp's function call, and
# killing it leaves iperf3 running (a first try let it run on into the next checks,
# whose wan-side byte counts it then inflated).
ip netns pids "$L" | xargs -r kill 2>/dev/null
wait "$TCP_PID" 2>/dev/null
check churn_stream_stopped "processes left in the lan namespace: $(ip netns pids "$L" | wc -l)" poll 3 bash -c "[ -z \"\$(ip netns pids $L)\" ]"

# A rule change still reaches the offloaded stream.
stream_after_drop busy 5205 "$OUT/offloadd-busy.log"
# Timed by the daemon (since_change_ms of its flush line), as flush_stops_offloaded_stream_within_1s
# is: FLUSH_MS also counts nft's own start under TCG (3.3 s once on a loaded machine).
check rule_change_after_churn_stops_stream "daemon flushed $DAEMON_MS ms after the commit (flushed $FLUSH_MS after nft started), rule hit $STOP_MS, OFFLOAD cleared $CT_MS ms; $PASSED bytes passed" \
    bash -c "test '$FLUSH_MS' != never && test -n '$DAEMON_MS' && test '$DAEMON_MS' != never && test '$DAEMON_MS' -le 1000 && test '$STOP_MS' != never && test '$PASSED' -lt 100000"
# The flush replaced the flowtable and kept our table (same handle).
TH0=$(table_handle)

# A fw4-style reload that also deletes one of our devices (wan1) while the flush is
# being decided: the flush is planned again without it and happens; the stream meets
# the reload's new drop rule.
in_wan iperf3 -s -1 -D -B 198.18.2.2 -p 5206 >/dev/null
sleep 0.5
run_tcp 12 "$T/iperf-reload.json" 5206
poll 10 offloaded tcp 5206
FL0=$(grep -c 'firewall changed; flushed' "$OUT/offloadd-busy.log")
# The device goes while the reload commits (both in flight at once), as when a fw4
# reload follows an interface going down; which the daemon sees first varies.
in_router ip link del wan1 &
DEL=$!
in_router nft -f - <<'NFT'
table inet mainfw
delete table inet mainfw
table inet mainfw {
    chain forward { type filter hook forward priority filter; policy accept; tcp dport 5206 counter drop; }
}
NFT
wait "$DEL"
sleep 2
FL1=$(grep -c 'firewall changed; flushed' "$OUT/offloadd-busy.log")
rx1=$(wan_rx); sleep 1; rx2=$(wan_rx)
obs=$(flows tcp 5206)
echo "fw4-style reload deleting wan1: flushes logged $FL0 -> $FL1, $((rx2 - rx1)) bytes reached the wan host in the next second, devices $(ft_devices), table handle $TH0 -> $(table_handle)" >>"$OUT/report-busy.txt"
check reload_deleting_a_device_still_flushes "flushes $FL0 -> $FL1; $(grep -E 'flush|vanished|planning again' "$OUT/offloadd-busy.log" | tail -3)" test "$FL1" -gt "$FL0"
check reload_deleting_a_device_stops_stream "$((rx2 - rx1)) bytes reached the wan host in a second" test $((rx2 - rx1)) -lt 100000
judge reload_deleting_a_device_leaves_nothing_offloaded "$obs" bash -c '! grep -q OFFLOAD'
check flush_keeps_our_table "table handle $TH0 -> $(table_handle)" test -n "$TH0" -a "$(table_handle)" = "$TH0"
check flush_after_device_loss_no_error "$(grep ERROR "$OUT/offloadd-busy.log" | head -3)" bash -c "! grep -q ERROR '$OUT/offloadd-busy.log'"
kill "$TCP_PID" 2>/dev/null; wait "$TCP_PID" 2>/dev/null
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
in_router nft delete table inet mainfw

# A big config (big.sh; VM_ONLY=big runs it alone).
. "$REPO/tests/vm/big.sh"
