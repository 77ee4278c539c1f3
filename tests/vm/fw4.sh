# VM tier, sourced by guest.sh: the OpenWrt source and coexistence with fw4 (issue 5).
# offloadd reads UCI files (zones -> devices); a fw4-like `table inet fw4` with its own
# flowtable makes `mode auto` observe; when that table goes, offloadd takes over without
# a restart; a fw4 reload (its table rebuilt) leaves our table alone.

U=$T/uci; mkdir -p "$U"
cat >"$U/network" <<'UCI'
config interface 'lan'
	option device 'lan0'
	option proto 'static'

config interface 'wan'
	option device 'wan0'
	option proto 'dhcp'

config interface 'wan6'
	option device '@wan'
	option proto 'dhcpv6'
UCI
cat >"$U/firewall" <<'UCI'
config defaults
	option flow_offloading '1'

config zone
	option name 'lan'
	list network 'lan'

config zone
	option name 'wan'
	list network 'wan'
	list network 'wan6'
UCI
cat >"$U/offloadd" <<'UCI'
config offload 'main'
	option mode 'auto'
	option hardware 'off'
	list zone 'lan'
	list zone 'wan'
UCI
in_router "$OFFLOADD" plan --uci-dir "$U" >"$OUT/plan-uci.nft" 2>&1
check uci_zones_resolve_to_devices "$(grep devices "$OUT/plan-uci.nft")" grep -q 'devices = { lan0, wan0 }' "$OUT/plan-uci.nft"

fw4_table() { # the part of fw4's ruleset that matters here
    in_router nft -f - <<'NFT'
table inet fw4 {
    flowtable ft { hook ingress priority filter; devices = { lan0, wan0 }; counter; }
    chain forward {
        type filter hook forward priority filter; policy accept;
        meta l4proto { tcp, udp } flow add @ft
    }
}
NFT
}
in_router nft delete table inet fw4 2>/dev/null
fw4_table
# mode = "manage" next to fw4's flowtable: it builds its own and warns about the duplicate.
printf 'mode = "manage"\n[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n' >"$T/manage.toml"
start_offloadd "$T/manage.toml" "$OUT/offloadd-dup.log"
"$OFFLOADD" status >"$OUT/status-dup.txt" 2>&1
check manage_warns_duplicate "$(cat "$OUT/status-dup.txt")" bash -c \
    "grep -q 'DUPLICATE:  flowtable ft in table inet fw4 also covers lan0, wan0' '$OUT/status-dup.txt' && grep -q 'WARN.*also covers lan0, wan0' '$OUT/offloadd-dup.log'"
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"

ip netns exec "$R" "$OFFLOADD" run --uci-dir "$U" >"$OUT/offloadd-fw4auto.log" 2>&1 &
OFFLOADD_PID=$!
check auto_observes_fw4 "$(tail -3 "$OUT/offloadd-fw4auto.log")" poll 10 role_is observe
check observe_creates_nothing "table inet offloadd exists" bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
"$OFFLOADD" status >"$OUT/status-fw4-observe.txt" 2>&1
check status_says_why_observing "$(head -3 "$OUT/status-fw4-observe.txt")" grep -q 'flowtable ft in table fw4 already covers lan0' "$OUT/status-fw4-observe.txt"
run_tcp 10 "$T/iperf-fw4.json"
poll 10 offloaded tcp 5201
judge fw4_flow_offloaded "$(flows tcp 5201)" has_offload
check observe_reports_fw4_flows "$("$OFFLOADD" flows 2>&1 | head -3)" poll 5 on_path sw "198.18.2.2:5201"
wait "$TCP_PID"

# fw4's table goes (offloading switched off, or fw4 stopped): offloadd manages. Timed
# by the daemon: from the kernel's notification of the deletion to its decision (the
# log line's since_change_ms), then its apply (took_ms). Timed here instead, with the
# lab's nft and polls under TCG, it once measured 5.6 s on a slower CI machine.
in_router nft delete table inet fw4
poll 10 table_exists
TAKE_LINE=$(grep 'no other flowtable covers our devices any more' "$OUT/offloadd-fw4auto.log" | tail -1)
TAKE_MS=$(log_num since_change_ms <<<"$TAKE_LINE")
APPLY_MS=$(grep 'applied ruleset' "$OUT/offloadd-fw4auto.log" | tail -1 | log_num took_ms)
echo "fw4 table deleted: offloadd decided to manage ${TAKE_MS:-never} ms after the kernel reported it, and applied its table in ${APPLY_MS:-?} ms" >>"$OUT/report-links.txt"
check takes_over_without_restart "since_change_ms=${TAKE_MS:-none} took_ms=${APPLY_MS:-none}; $(tail -2 "$OUT/offloadd-fw4auto.log")" \
    bash -c "[ -n '$TAKE_MS' ] && [ '${TAKE_MS:-9999}' -le 1000 ] && role_is manage"
check takeover_same_process "pid changed" kill -0 "$OFFLOADD_PID"
run_tcp 10 "$T/iperf-takeover.json"
poll 10 offloaded tcp 5201
judge flow_offloaded_after_takeover "$(flows tcp 5201)" has_offload
wait "$TCP_PID"

# A fw4 reload rebuilds only inet fw4 (here without a flowtable, offloading off): our
# table stays (same handle) and its flowtable is replaced by the flush (new handle).
TH=$(table_handle); FH=$(ft_handle)
FL0=$(grep -c 'firewall changed; flushed' "$OUT/offloadd-fw4auto.log")
# (Until this check existed, this reload was one line per table, `... } }`, which nft
# refuses as a syntax error: nothing was reloaded and the handle check passed anyway.)
in_router nft -f - <<'NFT'; RELOAD_RC=$?
table inet fw4 {
    chain forward { type filter hook forward priority filter; policy accept; }
}
delete table inet fw4
table inet fw4 {
    chain forward { type filter hook forward priority filter; policy accept; tcp dport 9 drop; }
}
NFT
check fw4_reload_committed "nft -f exit $RELOAD_RC" test "$RELOAD_RC" -eq 0
sleep 3
TH1=$(table_handle); FH1=$(ft_handle)
FL1=$(grep -c 'firewall changed; flushed' "$OUT/offloadd-fw4auto.log")
check our_table_survives_fw4_reload "table handle $TH -> $TH1" test -n "$TH" -a "$TH1" = "$TH"
check fw4_reload_flushes_our_flowtable "flowtable handle $FH -> $FH1, flushes logged $FL0 -> $FL1" test -n "$FH1" -a "$FH1" != "$FH" -a "$FL1" -gt "$FL0"
check still_managing_after_fw4_reload "role changed" role_is manage
# Another program adds a forward chain above ours (iptables-nft's security table sits at
# 50, a user's at 250): our chain moves after it, in one batch, and back when it goes.
our_priority() { in_router nft list chain inet offloadd forward 2>/dev/null | sed -n 's/.*hook forward priority \([^;]*\);.*/\1/p'; }
export -f our_priority
P0=$(our_priority)
in_router nft -f - <<'NFT'
table ip late {
    chain late_fwd { type filter hook forward priority 250; policy accept; }
}
NFT
poll 5 bash -c '[ "$(our_priority)" = 251 ]'
judge chain_moves_after_a_new_forward_chain "before: $P0; now: $(our_priority); $(grep 'applied ruleset' "$OUT/offloadd-fw4auto.log" | tail -1)" \
    bash -c 'o=$(cat); grep -q "before: 200; now: 251;" <<<"$o" && grep -q "priority_why=after the highest other forward chain, ip late late_fwd (250)" <<<"$o"'
"$OFFLOADD" status >"$OUT/status-priority.txt" 2>&1
judge status_shows_the_priority "$(grep priority: "$OUT/status-priority.txt")" grep -q 'forward chain at 251 (after the highest other forward chain, ip late late_fwd (250))'
in_router nft delete table ip late
poll 5 bash -c '[ "$(our_priority)" = 200 ]'
judge chain_moves_back_when_it_goes "now: $(our_priority)" grep -q 'now: 200$'
# Offloading turned back on in fw4 (its flowtable returns): offloadd hands back, on the
# kernel's notification, and removes its own table so only one flowtable hooks lan0.
in_router nft delete table inet fw4
fw4_table
poll 10 bash -c "! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
BACK_LINE=$(grep 'another flowtable now covers our devices' "$OUT/offloadd-fw4auto.log" | tail -1)
BACK_MS=$(log_num since_change_ms <<<"$BACK_LINE")
echo "fw4's flowtable back: offloadd observing and its table removed ${BACK_MS:-never} ms after the kernel reported it" >>"$OUT/report-links.txt"
check hands_back_when_fw4_flowtable_returns "since_change_ms=${BACK_MS:-none}; $BACK_LINE; table inet offloadd: $(in_router nft list table inet offloadd 2>&1 | head -1)" \
    bash -c "[ -n '$BACK_MS' ] && [ '${BACK_MS:-9999}' -le 1000 ] && role_is observe && ! ip netns exec $R nft list table inet offloadd >/dev/null 2>&1"
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
in_router nft delete table inet fw4 2>/dev/null
