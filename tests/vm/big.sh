# VM tier, sourced by busy.sh (or alone with VM_ONLY=big): a big config's applies,
# reloads and flushes.

# A big config: 200 exclusion entries of 6 ports each, no protocol (TCP and UDP), so
# 2,400 rules in one batch; read back; a reload with one port changed applies too.
big_conf() { # big_conf FILE FIRST_PORT
    { printf '[offload]\ndevices = ["lan0", "wan0"]\nhardware = "off"\n'
      for e in $(seq 0 199); do
          p=$(($2 + e * 6))
          printf '[[offload.exclude]]\ndport = ["%d", "%d", "%d", "%d", "%d", "%d"]\n' $p $((p + 1)) $((p + 2)) $((p + 3)) $((p + 4)) $((p + 5))
      done; } >"$1"
}
big_conf "$T/big.toml" 20000
start_offloadd "$T/big.toml" "$OUT/offloadd-big.log"
rules() { in_router nft list chain inet offloadd forward | grep -c -E 'return|flow add'; }
R1=$(rules)
check big_config_applied "$R1 rules; $(grep -E 'applied|ERROR' "$OUT/offloadd-big.log" | tail -2)" bash -c \
    "test '$R1' -eq 2401 && grep -q 'applied ruleset' '$OUT/offloadd-big.log'"
A0=$(grep -c 'applied ruleset' "$OUT/offloadd-big.log")
big_conf "$T/big.toml" 30000
kill -HUP "$OFFLOADD_PID"
poll 20 bash -c "[ \$(grep -c 'applied ruleset' '$OUT/offloadd-big.log') -gt $A0 ]"
R2=$(rules)
have=$(in_router nft list chain inet offloadd forward | grep -c 'proto-dst 31199 return')
old=$(in_router nft list chain inet offloadd forward | grep -c 'proto-dst 20000 return')
took=$(grep 'applied ruleset' "$OUT/offloadd-big.log" | tail -1 | grep -o 'took_ms=[0-9]*')
echo "big config: $R1 rules applied and read back, reload to $R2 rules ($took)" >>"$OUT/report-busy.txt"
check big_config_reload_applies "$R2 rules, new port rules $have, old $old; $(grep -E 'ERROR|WARN' "$OUT/offloadd-big.log" | tail -2)" \
    test "$R2" -eq 2401 -a "$have" -eq 2 -a "$old" -eq 0
# One foreign commit: one flush. Our flush of 2,400 rules is about 5,000 notifications
# and may overrun our own monitor; an overrun that lost only our commits is no firewall
# change (a build that took it for one flushed again every 3 s here).
in_router nft add table inet bigmark
poll 20 grep -q 'firewall changed; flushed' "$OUT/offloadd-big.log"
sleep 4
flushes=$(grep 'firewall changed; flushed' "$OUT/offloadd-big.log" | cut -c1-200)
forgiven=$(grep -c "was offloadd's own" "$OUT/offloadd-big.log")
echo "big config: one foreign commit, $(printf '%s\n' "$flushes" | grep -c .) flush(es); overruns that lost only our own commits: $forgiven" >>"$OUT/report-busy.txt"
check big_config_one_change_one_flush "$flushes" test "$(printf '%s\n' "$flushes" | grep -c .)" -eq 1
in_router nft delete table inet bigmark
kill -TERM "$OFFLOADD_PID"; wait "$OFFLOADD_PID"
