# VM tier, sourced by guest.sh: an OpenWrt-shaped router (tests/lab/openwrt.sh), set up
# from UCI as on a real one. DSA-shaped LAN ports in br-lan, WAN over real PPPoE that
# comes up after offloadd started (as at boot), masquerade and a DNAT port forward in an
# fw4-shaped table, IPv6, a guest VLAN and a WireGuard zone. Each "fast" check judges one
# observation: the flow's conntrack line and how many packets walked the forward hook in
# 2 s of a 20 Mbit/s stream (about 3400 when slow).

. "$REPO/tests/lab/openwrt.sh"
OW_TMP=$T/ow; OW_UCI=$OW_TMP/uci; mkdir -p "$OW_TMP"

ow_is_fast() { # stdin: "forward packets: N" then conntrack lines of the flow
    local o n; o=$(cat)
    n=$(sed -n 's/^forward packets: \([0-9]*\).*/\1/p' <<<"$o")
    grep -q '\[OFFLOAD\]' <<<"$o" && [ -n "$n" ] && [ "$n" -lt 200 ]
}
ow_is_slow() { # the same observation, for a flow that must stay on the normal path
    local o n; o=$(cat)
    n=$(sed -n 's/^forward packets: \([0-9]*\).*/\1/p' <<<"$o")
    ! grep -q 'OFFLOAD' <<<"$o" && [ -n "$n" ] && [ "$n" -gt 20 ]
}
ow_ct_offloaded() { in_ow conntrack -L "$@" 2>/dev/null | grep -q '\[OFFLOAD\]'; }
export -f ow_ct_offloaded in_ow
export OW
# ow_wait_offloaded CONNTRACK_ARGS...: waits up to 20 s for the flow's OFFLOAD bit and
# says how long it took in OW_WAITED, which ow_observe prints with its observation (in
# lower case: ow_is_slow looks for the word OFFLOAD).
ow_wait_offloaded() {
    local t0; t0=$(now_ms)
    if poll 20 ow_ct_offloaded "$@"; then
        OW_WAITED="offloaded $(($(now_ms) - t0)) ms after the stream started"
    else
        OW_WAITED="not offloaded within 20 s of the stream's start"
    fi
}
# ow_observe CONNTRACK_ARGS...: the one observation the checks judge.
ow_observe() {
    local c0 c1
    c0=$(ow_forward_packets); sleep 2; c1=$(ow_forward_packets)
    echo "forward packets: $((c1 - c0)) in 2 s (${OW_WAITED:-})"
    in_ow conntrack -L "$@" 2>/dev/null
}
# ow_tcp NS DEST [PORT] [SECONDS]: a capped iperf3 stream in the background; sets OW_TCP_PID.
# 40 s by default, which ow_stop_streams cuts short: under TCG on a slow machine the
# stream must still run after its wait for OFFLOAD and the 2 s observation.
ow_tcp() {
    ip netns exec "$1" iperf3 -c "$2" -p "${3:-5201}" -t "${4:-40}" -b 20M -J >"$OW_TMP/iperf-$1-$2.json" 2>&1 &
    OW_TCP_PID=$!
}
ow_stop_streams() {
    local ns
    for ns in "$OWH1" "$OWH2" "$OWG" "$OWISP"; do
        ip netns pids "$ns" 2>/dev/null | while read -r p; do
            [ "$(cat /proc/"$p"/comm 2>/dev/null)" = iperf3 ] && grep -qa -- '-c' /proc/"$p"/cmdline && kill "$p"
        done
    done
    wait "${OW_TCP_PID:-}" 2>/dev/null
    OW_WAITED=""  # (ow_observe runs in $(...): it cannot clear it itself)
    return 0
}

if ! ow_up; then
    fail ow_lab_up "could not build the OpenWrt-shaped lab"
else
    ok ow_lab_up
    ow_uci
    in_isp iperf3 -s -D >/dev/null
    in_h2 iperf3 -s -D >/dev/null
    for port in 5060 5300; do
        in_isp python3 "$REPO/tests/lab/udp_echo.py" server "$port" &
        disown
    done

    # The plan for hardware: the DSA-shaped ports, never the devices under them.
    in_ow "$OFFLOADD" plan --uci-dir "$OW_UCI" >"$OUT/ow-plan.nft" 2>&1
    judge dsa_hardware_plan_names_ports_not_conduits "$(grep -E 'devices|via' "$OUT/ow-plan.nft")" \
        bash -c "o=\$(cat); grep -q 'devices = { eth2, lan1, lan2, wan }' <<<\"\$o\" && ! grep -qw 'eth[01]' <<<\"\$o\""
    judge exclusion_by_zone_matches_pppoe_wan "$(grep 'return' "$OUT/ow-plan.nft")" \
        grep -q 'meta l4proto udp ct original proto-dst 5060 ct direction original oifname "pppoe-wan" return'

    # offloadd first, then the PPPoE session, as at boot.
    isp_up
    in_ow "$OFFLOADD" run --uci-dir "$OW_UCI" >"$OUT/offloadd-ow.log" 2>&1 &
    OW_PID=$!
    poll 10 bash -c "ip netns exec $OW nft list table inet offloadd >/dev/null 2>&1"
    in_ow nft list table inet offloadd >"$OUT/ow-table.nft" 2>&1
    judge ow_fallback_is_software_on_configured_devices "$(grep -E 'devices|flags' "$OUT/ow-table.nft")" \
        bash -c "o=\$(cat); grep -q 'devices = { br-lan, eth2.30, wan }' <<<\"\$o\" && ! grep -q 'flags offload' <<<\"\$o\""
    judge ow_hardware_refusals_named "$(grep -i 'refused' "$OUT/offloadd-ow.log" | head -5)" \
        grep -q 'lan1.*EOPNOTSUPP\|EOPNOTSUPP.*lan1'
    if pppoe_up; then ok pppoe_session_up; else fail pppoe_session_up "$(tail -5 "$OW_TMP/pppd.log")"; fi
    wg_up
    sleep 1.5 # the link watcher adds wg0, which appeared after the start
    in_ow nft list table inet offloadd >"$OUT/ow-table2.nft" 2>&1
    judge ow_rule_matches_l3_devices "$(grep 'flow add' "$OUT/ow-table2.nft")" \
        bash -c '[ "$(match_sets)" = "iif br-lan eth2.30 pppoe-wan wan wg0 oif br-lan eth2.30 pppoe-wan wan wg0" ]'
    judge ow_flowtable_gained_wg0 "$(grep devices "$OUT/ow-table2.nft")" grep -q 'devices = { br-lan, eth2.30, wan, wg0 }'

    # NAT out over PPPoE (masquerade), IPv4.
    ow_tcp "$OWH1" 198.18.3.1
    ow_wait_offloaded -p tcp --dport 5201 -d 198.18.3.1
    OBS=$(ow_observe -p tcp --dport 5201 -d 198.18.3.1)
    judge pppoe_nat_v4_offloaded "$OBS" ow_is_fast
    judge pppoe_nat_reply_is_the_masqueraded_side "$OBS" grep -q 'dst=198.18.3.2'
    FLOWS=$("$OFFLOADD" flows 2>&1)
    judge flows_lists_nat_reply_side "$FLOWS" grep -q '198.18.10.2:[0-9]* -> 198.18.3.1:5201 reply 198.18.3.1:5201 -> 198.18.3.2:'
    ow_stop_streams

    # IPv6 over the same session (routed, no NAT).
    ow_tcp "$OWH1" fd00:3::1
    ow_wait_offloaded -f ipv6 -p tcp --dport 5201
    judge pppoe_v6_offloaded "$(ow_observe -f ipv6 -p tcp --dport 5201)" ow_is_fast
    ow_stop_streams

    # A port forward from the ISP side to owh2 (DNAT both ways through fw4's chains).
    ow_tcp "$OWISP" 198.18.3.2 8080
    ow_wait_offloaded -p tcp --dport 8080
    judge dnat_port_forward_offloaded "$(ow_observe -p tcp --dport 8080)" ow_is_fast
    ow_stop_streams

    # Into the WireGuard tunnel (its own zone).
    ow_tcp "$OWH1" 198.18.20.2
    ow_wait_offloaded -p tcp --dport 5201 -d 198.18.20.2
    judge wireguard_flow_offloaded "$(ow_observe -p tcp --dport 5201 -d 198.18.20.2)" ow_is_fast
    ow_stop_streams

    # The guest VLAN out to the internet.
    ow_tcp "$OWG" 198.18.3.1
    ow_wait_offloaded -p tcp --dport 5201 -s 198.18.30.2
    judge guest_vlan_flow_offloaded "$(ow_observe -p tcp --dport 5201 -s 198.18.30.2)" ow_is_fast
    ow_stop_streams

    # The dest_zone 'wan' exclusion holds for UDP 5060; its neighbour 5300 is offloaded.
    in_h1 python3 "$REPO/tests/lab/udp_echo.py" client 198.18.3.1 5060 12 40060 >"$OW_TMP/udp5060.log" 2>&1 &
    U1=$!
    sleep 4
    judge dest_zone_exclusion_holds_on_pppoe "$(ow_observe -p udp --dport 5060)" ow_is_slow
    wait "$U1" 2>/dev/null
    in_h1 python3 "$REPO/tests/lab/udp_echo.py" client 198.18.3.1 5300 12 40300 >"$OW_TMP/udp5300.log" 2>&1 &
    U2=$!
    poll 10 ow_ct_offloaded -p udp --dport 5300
    judge udp_next_to_the_exclusion_offloaded "$(ow_observe -p udp --dport 5300)" ow_is_fast
    wait "$U2" 2>/dev/null

    # A PPPoE reconnect (the session drops; pppd redials): pppoe-wan goes and comes back
    # with a new ifindex; new flows are offloaded again, with no error logged.
    pppoe_down
    sleep 1
    if pppoe_up; then ok pppoe_reconnected; else fail pppoe_reconnected "$(tail -5 "$OW_TMP/pppd.log")"; fi
    ow_tcp "$OWH1" 198.18.3.1
    ow_wait_offloaded -p tcp --dport 5201 -d 198.18.3.1
    judge offloaded_after_pppoe_reconnect "$(ow_observe -p tcp --dport 5201 -d 198.18.3.1)" ow_is_fast
    ow_stop_streams
    judge ow_no_error_logged "$(grep -E ' ERROR ' "$OUT/offloadd-ow.log" | head -3)" bash -c '! grep -q .'
    kill -TERM "$OW_PID"; wait "$OW_PID"
    ow_down
fi
