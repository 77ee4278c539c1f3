# VM tier, sourced by guest.sh (or alone with VM_ONLY=ha): `offloadd flush`, what a
# keepalived notify script runs when this router becomes VRRP master. Offloaded flows
# skip the forward hook; the lab's counter there (labcount, before our chain) counts
# what takes the slow path. An offloaded stream adds nothing to it; after the flush its
# next packets cross it (the flowtable forgot the flow) until our chain offloads it again.
printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n' >"$T/ha.toml"
start_offloadd "$T/ha.toml" "$OUT/offloadd-ha.log"
in_wan iperf3 -s -1 -D -B 198.18.2.2 -p 5207 >/dev/null
sleep 0.5
# 40 s, stopped at the end: it outlives the checks below even when they run slowly.
run_tcp 40 "$T/iperf-ha.json" 5207
poll 10 offloaded tcp 5207
sleep 1
# One captured sequence: the forward counter 1 s apart before the flush (offloaded:
# equal), the flush's own answer, the counter after it settled, and 1 s later (offloaded
# again: equal), then conntrack of the stream.
f0=$(forward_packets); sleep 1; f1=$(forward_packets)
answer=$("$OFFLOADD" flush --json 2>&1); rc=$?
sleep 2
f2=$(forward_packets); sleep 1; f3=$(forward_packets)
ct=$(flows tcp 5207)
obs="rc=$rc answer=$answer forward: before $f0 $f1 after $f2 $f3; conntrack: $ct"
echo "ha: $obs" >>"$OUT/report-policy.txt"
judge ha_flush_answers "$obs" python3 -c '
import json, re, sys
o = sys.stdin.read()
assert o.startswith("rc=0 "), o
a = json.loads(re.search(r"answer=(\{.*?\}) forward", o).group(1))
assert a["flushed"] is True and a["offloaded_before"] >= 1, a'
judge ha_offloaded_stream_takes_slow_path_after_flush "$obs" \
    bash -c "test '$f1' -eq '$f0' && test '$f2' -gt '$f1'"
judge ha_stream_offloaded_again "$obs" bash -c "test '$f3' -eq '$f2' && grep -q '\[OFFLOAD\]' <<<\"\$(cat)\""
"$OFFLOADD" status --json >"$T/status-ha.json" 2>&1
"$OFFLOADD" metrics >"$T/metrics-ha.txt" 2>&1
judge ha_status_and_metrics_count_the_request "$(cat "$T/status-ha.json" "$T/metrics-ha.txt" | grep -E 'flushes|requested')" python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
m = open(sys.argv[2]).read().splitlines()
assert s["flushes_requested"] == 1 and s["last_flush"]["requested"], s.get("last_flush")
assert "offloadd_flushes_total{cause=\"request\"} 1" in m, [l for l in m if "flushes" in l]' "$T/status-ha.json" "$T/metrics-ha.txt"
pkill -f "iperf3 -c 198.18.2.2 -p 5207 " 2>/dev/null
wait "$TCP_PID" 2>/dev/null
poll 3 bash -c "! pgrep -f 'iperf3 -c 198.18.2.2 -p 5207 ' >/dev/null"
check ha_no_error_logged "$(grep -E 'ERROR|WARN' "$OUT/offloadd-ha.log" | grep -v 'TC_SETUP_FT' | head -3)" \
    bash -c "! grep -E 'ERROR' '$OUT/offloadd-ha.log'"
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
