# VM tier, sourced by guest.sh (or with VM_ONLY=ha): `offloadd top --once` during an
# iperf3 stream, with `[conntrack] accounting = true` (set while offloadd runs, put back
# after). The frame's rate for the stream is judged against iperf3's own per-second
# report for the same seconds.
printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n[conntrack]\naccounting = true\n' >"$T/top.toml"
# Off first (a netns's default, and most servers'), so the check below can fail.
in_router sysctl -qw net.netfilter.nf_conntrack_acct=0
acct_before=$(in_router sysctl -n net.netfilter.nf_conntrack_acct)
start_offloadd "$T/top.toml" "$OUT/offloadd-top.log"
poll 5 bash -c "[ \$(ip netns exec $R sysctl -n net.netfilter.nf_conntrack_acct) = 1 ]"
acct_during=$(in_router sysctl -n net.netfilter.nf_conntrack_acct)
in_wan iperf3 -s -1 -D -B 198.18.2.2 -p 5209 >/dev/null
sleep 0.5
in_lan iperf3 -c 198.18.2.2 -p 5209 -t 14 -b 40M -J >"$T/iperf-top.json" 2>&1 &
TOP_TCP=$!
poll 10 offloaded tcp 5209
sleep 2
t0=$(date +%s.%N)
frame=$("$OFFLOADD" top --once --json 2>&1)
t1=$(date +%s.%N)
text=$("$OFFLOADD" top --once --lines 5 2>&1)
wait "$TOP_TCP"
printf '%s\n' "$frame" >"$OUT/top-frame.json"
printf '%s\n' "$text" >"$OUT/top-text.txt"
# The saved frame, iperf3's JSON, the window. iperf3 counts payload, conntrack whole IP
# packets (3 to 4 % more for 1448-byte segments): 20 % either way is the claim.
intervals=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); s = d["start"]["timestamp"]["timesecs"]
print([(round(s + i["sum"]["start"], 1), round(i["sum"]["bits_per_second"] / 8)) for i in d["intervals"]])' "$T/iperf-top.json" 2>&1)
check top_shows_stream_first_on_sw_at_iperf3_rate "frame $(head -c 400 "$OUT/top-frame.json"); window $t0 $t1; iperf3 (start, bytes/s) $intervals" python3 -c '
import json, sys
f = json.load(open(sys.argv[1]))
d = json.load(open(sys.argv[2]))
t0, t1 = float(sys.argv[3]), float(sys.argv[4])
s = d["start"]["timestamp"]["timesecs"]
inside = [i["sum"]["bits_per_second"] / 8 for i in d["intervals"] if s + i["sum"]["start"] >= t0 - 1.5 and s + i["sum"]["end"] <= t1 + 1.5]
assert inside, "no iperf3 interval in the window"
want = sum(inside) / len(inside)
top = f["rows"][0]
assert top["key"]["orig"]["dport"] == 5209 and top["path"] == "sw", top
got = top["orig_bytes_per_s"]
assert abs(got - want) <= 0.2 * want, (got, want)
rows = sum(r["orig_bytes_per_s"] + r["reply_bytes_per_s"] for r in f["rows"])
paths = f["slow"]["bytes_per_s"] + f["sw"]["bytes_per_s"] + f["hw"]["bytes_per_s"]
assert abs(rows - paths) < 1e-6 * max(paths, 1), (rows, paths)' "$OUT/top-frame.json" "$T/iperf-top.json" "$t0" "$t1"
judge top_text_has_totals_and_no_accounting_warning "$text" bash -c 'o=$(cat); grep -q "^software " <<<"$o" && grep -q "^sw   tcp 198.18.1.2:[0-9]* -> 198.18.2.2:5209" <<<"$o" && ! grep -q "accounting is off" <<<"$o"'
# What the software path carried, from the growth of the flow's counters between looks:
# most of what iperf3 sent (the first and last look bound it from below).
sleep 3
"$OFFLOADD" metrics >"$T/metrics-top.txt" 2>&1
sent=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_sent"]["bytes"]))' "$T/iperf-top.json" 2>/dev/null || echo 0)
carried=$(awk '/^offloadd_offloaded_bytes_total\{path="sw"\}/ {printf "%d", $2}' "$T/metrics-top.txt")
check metrics_count_bytes_the_software_path_carried "carried ${carried:-none} of $sent sent" \
    test "${carried:-0}" -ge $((sent / 2)) -a "$sent" -gt 10000000
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
acct_after=$(in_router sysctl -n net.netfilter.nf_conntrack_acct)
check accounting_set_while_running_and_restored "before $acct_before during $acct_during after $acct_after" \
    test "$acct_during" = 1 -a "$acct_after" = "$acct_before"
