# An OpenWrt-shaped router in network namespaces, for the VM tier (sourced).
#
#   owh1 (198.18.10.2) ── eth0 ┐ lan1 (macvlan on eth0) ┐
#   owh2 (198.18.10.3) ── eth1 ┘ lan2 (macvlan on eth1) ┴ br-lan 198.18.10.1  fd00:10::1
#   owg  (198.18.30.2) ── eth2 ── eth2.30 (guest VLAN)             198.18.30.1
#   owisp ── wan ── PPPoE (pppd, kernel mode) ── pppoe-wan 198.18.3.2 (peer 198.18.3.1)
#   owisp ── wg1 198.18.20.2 ═ WireGuard over the PPPoE session ═ wg0 198.18.20.1
#
# The LAN ports have the shape of a DSA switch: each is an upper of another device (its
# `lower_*` points at eth0/eth1 as a DSA port's points at the conduit), bridged into
# br-lan. A fw4-shaped `inet fw4` (zone chains, policy drop, masquerade, one DNAT port
# forward, no flowtable) is the firewall; the UCI files under $OW_UCI describe the same.
# pppd and pppoe-server are Debian's (ppp, pppoe); the ISP side runs in user mode.

OW=ow OWH1=owh1 OWH2=owh2 OWG=owg OWISP=owisp
in_ow() { ip netns exec "$OW" "$@"; }
in_h1() { ip netns exec "$OWH1" "$@"; }
in_h2() { ip netns exec "$OWH2" "$@"; }
in_guest() { ip netns exec "$OWG" "$@"; }
in_isp() { ip netns exec "$OWISP" "$@"; }

ow_down() {
    pppoe_down
    for ns in "$OW" "$OWH1" "$OWH2" "$OWG" "$OWISP"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    return 0
}

# A host namespace on a veth to the router: ow_host NS ROUTER_DEV
ow_host() {
    ip netns add "$1" && ip -n "$OW" link add "$2" type veth peer name eth0 netns "$1" || return 1
    ip -n "$1" link set lo up
    ip -n "$1" link set eth0 up
    ip -n "$OW" link set "$2" up
}

ow_up() {
    ow_down
    modprobe -a pppoe ppp_generic wireguard macvlan 8021q bridge nf_nat nft_chain_nat nft_nat nft_masq \
        nf_flow_table_inet nft_flow_offload nf_conntrack_netlink 2>/dev/null
    ip netns add "$OW" && ip netns add "$OWISP" || return 1
    ip -n "$OW" link set lo up; ip -n "$OWISP" link set lo up
    ip netns exec "$OW" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    # LAN: two hosts, each behind a macvlan port of br-lan.
    ow_host "$OWH1" eth0 && ow_host "$OWH2" eth1 || return 1
    ip -n "$OW" link add br-lan type bridge
    for p in 1 2; do
        ip -n "$OW" link add "lan$p" link "eth$((p - 1))" type macvlan mode passthru
        ip -n "$OW" link set "lan$p" master br-lan
        ip -n "$OW" link set "lan$p" up
    done
    ip -n "$OW" addr add 198.18.10.1/24 dev br-lan
    ip -n "$OW" addr add fd00:10::1/64 dev br-lan nodad
    ip -n "$OW" link set br-lan up
    local h n=2
    for h in "$OWH1" "$OWH2"; do
        ip -n "$h" addr add "198.18.10.$n/24" dev eth0
        ip -n "$h" addr add "fd00:10::$n/64" dev eth0 nodad
        ip -n "$h" route add default via 198.18.10.1
        ip -n "$h" -6 route add default via fd00:10::1
        n=$((n + 1))
    done
    # Guest VLAN 30 on its own port.
    ow_host "$OWG" eth2 || return 1
    ip -n "$OW" link add link eth2 name eth2.30 type vlan id 30
    ip -n "$OW" addr add 198.18.30.1/24 dev eth2.30
    ip -n "$OW" link set eth2.30 up
    ip -n "$OWG" link add link eth0 name eth0.30 type vlan id 30
    ip -n "$OWG" addr add 198.18.30.2/24 dev eth0.30
    ip -n "$OWG" link set eth0.30 up
    ip -n "$OWG" route add default via 198.18.30.1
    # WAN carrier to the ISP (PPPoE runs on it; no address of its own).
    ip -n "$OW" link add wan type veth peer name eth0 netns "$OWISP"
    ip -n "$OW" link set wan up
    ip -n "$OWISP" link set eth0 up
    ow_firewall
}

# fw4's shape: input/forward policy drop with zone chains, srcnat masquerade on the WAN
# L3 device, a DNAT port forward (wan 8080 -> owh2:5201). No flowtable: offloadd's.
ow_firewall() {
    in_ow nft -f - <<'NFT'
table inet fw4 {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname "lo" accept
        iifname { "br-lan", "eth2.30", "wg0" } accept
        iifname "pppoe-wan" meta l4proto { icmp, ipv6-icmp } accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct status dnat accept
        iifname "br-lan" jump forward_lan
        iifname "eth2.30" jump forward_guest
        iifname "wg0" jump forward_vpn
    }
    chain forward_lan { oifname { "pppoe-wan", "wg0" } accept; }
    chain forward_guest { oifname "pppoe-wan" accept; }
    chain forward_vpn { oifname "br-lan" accept; }
    chain output { type filter hook output priority filter; policy accept; }
    chain dstnat {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "pppoe-wan" meta nfproto ipv4 tcp dport 8080 dnat ip to 198.18.10.3:5201
    }
    chain srcnat {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "pppoe-wan" meta nfproto ipv4 masquerade
    }
}
table inet owcount {
    chain forward_count { type filter hook forward priority filter + 20; policy accept; counter; }
}
NFT
}
# Forwarded packets that walked the forward hook (offloaded ones skip it).
ow_forward_packets() {
    in_ow nft list chain inet owcount forward_count | awk '/counter packets/ {print $3}'
}

# The ISP: a PPPoE access concentrator handing out 198.18.3.2 (and IPv6 link-locals).
isp_up() {
    printf 'noauth\nlcp-echo-interval 0\n+ipv6\nipv6 ::1,::2\nmtu 1492\nmru 1492\n' >"$OW_TMP/pppoe-server-options"
    in_isp pppoe-server -I eth0 -L 198.18.3.1 -R 198.18.3.2 -N 4 -O "$OW_TMP/pppoe-server-options"
}

# The router's PPPoE session (kernel-mode pppd, as OpenWrt's netifd runs it); waits up
# to 30 s for pppoe-wan to carry its address, then sets the IPv6 side.
pppoe_up() {
    ip netns exec "$OW" pppd plugin pppoe.so wan ifname pppoe-wan noauth noipdefault \
        defaultroute +ipv6 ipv6 ::2,::1 mtu 1492 mru 1492 lcp-echo-interval 0 nodeflate \
        nobsdcomp noccp persist maxfail 0 holdoff 1 >"$OW_TMP/pppd.log" 2>&1 &
    PPPD_PID=$!
    local i
    for i in $(seq 1 300); do
        in_ow ip -4 addr show dev pppoe-wan 2>/dev/null | grep -q 198.18.3.2 && break
        sleep 0.1
    done
    in_ow ip -4 addr show dev pppoe-wan 2>/dev/null | grep -q 198.18.3.2 || return 1
    in_ow ip -6 addr add fd00:3::2/128 dev pppoe-wan nodad 2>/dev/null
    in_ow ip -6 route replace default dev pppoe-wan
    # The ISP's end of this session (pppN) routes the LAN's IPv6 prefix back.
    local isp_if
    for _ in $(seq 1 100); do
        isp_if=$(in_isp ip -o -4 addr show | awk '/198.18.3.1/ {print $2; exit}')
        [ -n "$isp_if" ] && break
        sleep 0.1
    done
    [ -n "$isp_if" ] || return 1
    in_isp ip -6 addr add fd00:3::1/128 dev "$isp_if" nodad 2>/dev/null
    in_isp ip -6 route replace fd00:10::/64 dev "$isp_if"
    in_isp ip -6 route replace fd00:3::2/128 dev "$isp_if"
}
pppoe_down() {
    [ -n "${PPPD_PID:-}" ] && kill "$PPPD_PID" 2>/dev/null && wait "$PPPD_PID" 2>/dev/null
    PPPD_PID=
    return 0
}

# WireGuard between the router (client) and the ISP, over the PPPoE session.
wg_up() {
    local k1 k2
    k1=$(wg genkey); k2=$(wg genkey)
    in_ow ip link add wg0 type wireguard
    in_isp ip link add wg1 type wireguard
    in_ow wg set wg0 private-key <(echo "$k1") peer "$(echo "$k2" | wg pubkey)" \
        allowed-ips 198.18.20.0/24 endpoint 198.18.3.1:51820
    in_isp wg set wg1 listen-port 51820 private-key <(echo "$k2") peer "$(echo "$k1" | wg pubkey)" \
        allowed-ips 198.18.20.1/32,198.18.10.0/24
    in_ow ip addr add 198.18.20.1/24 dev wg0
    in_isp ip addr add 198.18.20.2/24 dev wg1
    in_ow ip link set wg0 up
    in_isp ip link set wg1 up
    in_isp ip route add 198.18.10.0/24 dev wg1
}

# The UCI files netifd and fw4 would read for this router.
ow_uci() {
    mkdir -p "$OW_UCI"
    cat >"$OW_UCI/network" <<'UCI'
config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '198.18.10.1/24'

config interface 'wan'
	option device 'wan'
	option proto 'pppoe'

config interface 'wan6'
	option device '@wan'
	option proto 'dhcpv6'

config interface 'guest'
	option device 'eth2.30'
	option proto 'static'

config interface 'wg0'
	option proto 'wireguard'
UCI
    cat >"$OW_UCI/firewall" <<'UCI'
config defaults
	option input 'DROP'
	option forward 'DROP'

config zone
	option name 'lan'
	list network 'lan'

config zone
	option name 'wan'
	list network 'wan'
	list network 'wan6'
	option masq '1'

config zone
	option name 'guest'
	list network 'guest'

config zone
	option name 'vpn'
	list network 'wg0'

config redirect
	option src 'wan'
	option src_dport '8080'
	option dest_ip '198.18.10.3'
	option dest_port '5201'
UCI
    cat >"$OW_UCI/offloadd" <<'UCI'
config offload 'main'
	option hardware 'auto'

config exclude
	option name 'sip-to-the-internet'
	option proto 'udp'
	option dport '5060'
	option dest_zone 'wan'
UCI
}
