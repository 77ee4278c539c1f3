#!/usr/bin/env python3
"""Captures real kernel messages as seeds for the netlink fuzz targets, and writes the
HTTP target's request heads.

    sudo fuzz/capture_seeds.py

Everything happens inside a network namespace of its own (offloadd-fuzzseed), deleted at
the end: the host's devices and ruleset are never touched. Seeds are written under
fuzz/seeds/TARGET with descriptive names (a later MINIMIZE=1 tests/fuzz.sh run may merge
them into the corpus under hash names):

  monitor    each datagram the nf_tables monitor receives (NFNLGRP_NFTABLES) while nft
             builds, changes and deletes tables, and each command's datagrams joined as
             one buffer (notices() walks a buffer of several messages)
  readback   each datagram of the answers to GETTABLE, GETFLOWTABLE, GETCHAIN, GETRULE
             (all, and our table's only, as Actual::read asks) and GETGEN dumps, with
             fw4-like tables, every family and many expression kinds loaded
  rtnetlink  each datagram on an RTNLGRP_LINK socket while ip(8) adds, renames, enslaves,
             moves and deletes devices, and the GETLINK dump answers (AF_UNSPEC and
             AF_BRIDGE)
  http       the heads curl and wget send, and hand-written ones (Prometheus, HEAD, bad)

Kernels without flowtables (CONFIG_NF_FLOW_TABLE unset, as on the machines these seeds
were first captured on) cannot hold a flowtable or a `flow add` rule: flowtable messages
are then written in the kernel's layout (nf_tables_fill_flowtable_info) by
`flowtable_seeds`, and offloadd's own table comes from its own batch builder
(`write_built_seeds` in tests/fuzz_regressions.rs).
"""

import os
import socket
import struct
import subprocess
import sys
import threading

NS = "offloadd-fuzzseed"
ROOT = os.path.dirname(os.path.abspath(__file__))
NETLINK_ROUTE, NETLINK_NETFILTER = 0, 12
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
NFNLGRP_NFTABLES, RTNLGRP_LINK = 7, 1
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNL_SUBSYS_NFTABLES = 10
GETTABLE, GETCHAIN, GETRULE, GETGEN, GETFLOWTABLE = 1, 4, 7, 16, 23
RTM_GETLINK = 18
AF_UNSPEC, AF_BRIDGE, NFPROTO_INET = 0, 7, 1


def save(target, name, data):
    d = os.path.join(ROOT, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sh(cmd, stdin=None, check=True):
    r = subprocess.run(cmd, input=stdin, shell=isinstance(cmd, str), capture_output=True)
    if check and r.returncode != 0:
        sys.exit(f"capture_seeds: {cmd!r} failed: {r.stderr.decode(errors='replace')}")
    return r


def nft(script, check=True):
    return sh(["nft", "-f", "-"], stdin=script.encode(), check=check)


def subscribed(proto, group):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((0, 0))
    s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    s.settimeout(0.3)
    return s


def drain(s):
    out = []
    while True:
        try:
            out.append(s.recv(1 << 20))
        except (socket.timeout, BlockingIOError):
            return out


def nfgen_request(msg, family, seq, attrs=b""):
    body = struct.pack("BBH", family, 0, 0) + attrs
    flags = NLM_F_REQUEST | (0 if msg == GETGEN else NLM_F_DUMP)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | msg, flags, seq, 0) + body


def nla(kind, value):
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def dump(proto, request, seq):
    """Every datagram of the answer to one request, up to NLMSG_DONE or an error."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.bind((0, 0))
    s.settimeout(2)
    s.send(request)
    out = []
    while True:
        d = s.recv(1 << 20)
        out.append(d)
        off, done = 0, False
        while off + 16 <= len(d):
            length, kind = struct.unpack_from("=IH", d, off)
            if length < 16:
                break
            if kind in (NLMSG_DONE, NLMSG_ERROR) or (proto == NETLINK_NETFILTER and kind & 0xFF == 15):
                done = True
            off += (length + 3) & ~3
        if done:
            s.close()
            return out


FW4 = """
table inet fw4 {
    set blocked4 { type ipv4_addr; flags interval; elements = { 192.0.2.0/24, 198.51.100.7 } }
    map portmap { type inet_service : verdict; elements = { 22 : accept, 80 : drop } }
    counter cnt { }
    quota q { over 100 mbytes }
    chain input { type filter hook input priority filter; policy drop;
        ct state vmap { established : accept, related : accept, invalid : drop }
        iifname "lo" accept
        tcp dport 22 ct state new limit rate 10/minute accept
        meta nfproto ipv6 icmpv6 type { nd-neighbor-solicit, nd-router-advert } accept
        udp dport 67 counter accept
        reject with icmpx type port-unreachable
    }
    chain forward { type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ip saddr @blocked4 drop
        tcp dport vmap @portmap
        iifname "lan0" oifname "wan0" counter name "cnt" accept
        ct status dnat accept
        tcp flags syn tcp option maxseg size set rt mtu
        log prefix "drop: " level info drop
    }
    chain output { type filter hook output priority filter; policy accept; meta mark 0x10 accept; }
    chain srcnat { type nat hook postrouting priority srcnat; policy accept; oifname "wan0" masquerade; }
    chain dstnat { type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" tcp dport 8080 dnat ip to 192.168.1.10:80
        iifname "wan0" meta nfproto ipv6 tcp dport 8443 dnat ip6 to [fd00::10]:443
    }
    chain mangle { type filter hook prerouting priority mangle; policy accept;
        ip dscp cs1 meta priority set 1:1
        ct mark set meta mark
        meta mark set numgen inc mod 4
        ip ttl set 64
        fib daddr type local accept
        ip protocol tcp jhash ip saddr mod 2 vmap { 0 : accept, 1 : accept }
    }
    chain regular { ip6 nexthdr tcp ip6 hoplimit 1 drop; ct helper set "ftp-standard"; jump counted; }
    chain counted { counter; return; }
    ct helper ftp-standard { type "ftp" protocol tcp; l3proto inet; }
}
"""

OTHER_FAMILIES = """
table ip filter4 {
    chain forward { type filter hook forward priority -50; policy accept
        ip daddr 10.0.0.0/8 counter
    }
}
table ip6 filter6 {
    chain forward { type filter hook forward priority 50; policy accept
        ip6 daddr fd00::/8 counter
    }
}
table ip nat4 {
    chain post { type nat hook postrouting priority 100
        ip saddr 10.0.0.0/8 snat to 203.0.113.1
    }
}
table arp a {
    chain arp_in { type filter hook input priority 0
        arp operation request counter
    }
}
table bridge br {
    chain forward_br { type filter hook forward priority 0
        ether type ip counter
        vlan id 10 counter
    }
}
table netdev nd {
    chain ing { type filter hook ingress device lan0 priority -500
        ether saddr 02:00:00:00:00:01 drop
    }
}
table inet plain {
}
table inet dormant {
    flags dormant
}
"""

# offloadd's table as nft would write it, but the flowtable and `flow add` (see above).
OURS = """
table inet offloadd {
    chain forward { type filter hook forward priority 1; policy accept;
        meta l4proto udp udp dport 5060 return
        iifname { "lan0", "wan0" } oifname { "lan0", "wan0" } ct direction original ct label set 126
        iifname { "lan0", "wan0" } oifname { "lan0", "wan0" } ct direction reply ct label set 127
    }
}
"""


def flowtable_msg(family, table, name, devices, flags, seq=0, msg_flags=0x2, prio=0, hook=0, msg=22):
    """NEWFLOWTABLE as nf_tables_fill_flowtable_info lays it out: strings NUL-terminated,
    numbers big endian, the hook nest and its device nest without NLA_F_NESTED."""
    devs = b"".join(nla(1, d.encode() + b"\0") for d in devices)  # NFTA_DEVICE_NAME
    hook_nest = nla(1, struct.pack(">I", hook)) + nla(2, struct.pack(">i", prio)) + nla(3, devs)
    # NFTA_FLOWTABLE_ TABLE 1, NAME 2, HOOK 3, USE 4, HANDLE 5, FLAGS 7 (uapi nf_tables.h).
    attrs = (nla(1, table.encode() + b"\0") + nla(2, name.encode() + b"\0")
             + nla(4, struct.pack(">I", 1)) + nla(5, struct.pack(">Q", 7))
             + nla(7, struct.pack(">I", flags)) + nla(3, hook_nest))
    body = struct.pack(">BBH", family, 0, 42) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | msg, msg_flags, seq, 0) + body


def newgen(gen):
    body = struct.pack(">BBH", 0, 0, 0) + nla(1, struct.pack(">I", gen)) + nla(2, struct.pack("=I", 4242)) + nla(3, b"nft\0")
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | 15, 0, 0, 0) + body


def done(seq):
    return struct.pack("=IHHIIi", 20, NLMSG_DONE, 0x2, seq, 0, 0)


def flowtable_seeds():
    """Flowtable dump answers and notifications, for kernels that cannot hold one."""
    inet, ip6 = NFPROTO_INET, 10
    fw4 = flowtable_msg(inet, "fw4", "ft", ["lan0", "wan0"], 0x2, seq=5)
    ours = flowtable_msg(inet, "offloadd", "ft", ["lan0", "wan0"], 0x2, seq=5)
    cases = {
        "fw4-and-ours": fw4 + ours + done(5),
        "ours-only": ours + done(5),
        "ours-one-device": flowtable_msg(inet, "offloadd", "ft", ["lan0"], 0x2, seq=5) + done(5),
        "ours-extra-device": flowtable_msg(inet, "offloadd", "ft", ["lan0", "wan0", "eth9"], 0x2, seq=5) + done(5),
        "ours-hw-offload": flowtable_msg(inet, "offloadd", "ft", ["lan0", "wan0"], 0x3, seq=5) + done(5),
        "ours-no-devices": flowtable_msg(inet, "offloadd", "ft", [], 0x0, seq=5) + done(5),
        "ours-twice": ours + flowtable_msg(inet, "offloadd", "ft", ["wan0", "lan0"], 0x2, seq=5) + done(5),
        "other-family": flowtable_msg(ip6, "ft6", "f6", ["lan0"], 0x0, seq=5, prio=10) + done(5),
        "many-devices": flowtable_msg(inet, "fw4", "ft", [f"eth{i}" for i in range(40)], 0x3, seq=5) + done(5),
    }
    for name, data in cases.items():
        save("readback", f"flowtable-{name}", data)
    # The notifications of `nft add flowtable ...` by fw4 and of ours.
    save("monitor", "flowtable-fw4-add", flowtable_msg(inet, "fw4", "ft", ["lan0", "wan0"], 0x2, msg_flags=0x400) + newgen(12))
    save("monitor", "flowtable-ours-add", ours + newgen(13))
    # DELFLOWTABLE (24) naming one device: that hook goes.
    save("monitor", "flowtable-delete-hook", flowtable_msg(inet, "fw4", "ft", ["lan0"], 0x2, msg=24) + newgen(14))


def monitor_seeds(steps):
    """Runs each (name, action) with a monitor socket open; saves what arrives."""
    s = subscribed(NETLINK_NETFILTER, NFNLGRP_NFTABLES)
    for name, action in steps:
        drain(s)
        action()
        got = drain(s)
        for i, d in enumerate(got):
            save("monitor", f"{name}-{i:03}", d)
        if len(got) > 1:
            save("monitor", f"{name}-joined", b"".join(got))
    s.close()


def readback_seeds(tag):
    filt = nla(1, b"offloadd\0")
    asks = [
        ("tables", GETTABLE, AF_UNSPEC, b""),
        ("flowtables", GETFLOWTABLE, AF_UNSPEC, b""),
        ("chains", GETCHAIN, AF_UNSPEC, b""),
        ("rules-ours", GETRULE, NFPROTO_INET, filt),
        ("rules-all", GETRULE, AF_UNSPEC, b""),
        ("gen", GETGEN, AF_UNSPEC, b""),
    ]
    for i, (what, msg, family, attrs) in enumerate(asks):
        for j, d in enumerate(dump(NETLINK_NETFILTER, nfgen_request(msg, family, 1000 + i, attrs), 1000 + i)):
            save("readback", f"{tag}-{what}-{j:02}", d)


def link_seeds():
    s = subscribed(NETLINK_ROUTE, RTNLGRP_LINK)
    steps = [
        ("add-veth", "ip link add lan1 type veth peer name lan1p"),
        ("up", "ip link set lan1 up"),
        ("mtu", "ip link set lan1 mtu 1400"),
        ("address", "ip link set lan1 address 02:00:00:00:00:42"),
        ("alias", "ip link set lan1 alias 'office lan'"),
        ("add-bridge", "ip link add br-lan type bridge"),
        ("enslave", "ip link set lan1 master br-lan"),
        ("release", "ip link set lan1 nomaster"),
        ("rename", "ip link set lan1 down; ip link set lan1 name lan9"),
        ("vlan", "ip link add link wan0 name wan0.10 type vlan id 10"),
        ("veth", "ip link add veth-a type veth peer name veth-b"),
        ("macvlan", "ip link add mv0 link wan0 type macvlan mode bridge"),
        ("bond", "ip link add bond0 type bond; ip link set lan9 master bond0"),
        ("tun", "ip tuntap add tun0 mode tun"),
        ("non-utf8-name", "ip link add name $'\\xff\\xfe0' type veth peer name nu8p"),
        ("long-name", "ip link add name abcdefghijklmno type bridge"),
        ("netns-move", "ip netns add offloadd-fuzzseed2 && ip link set veth-b netns offloadd-fuzzseed2"),
        ("delete-many", "ip link del wan0.10; ip link del mv0; ip link del bond0; ip link del br-lan"),
        ("delete", "ip link del lan9; ip link del veth-a; ip tuntap del tun0 mode tun"),
        ("delete-odd-names", "ip link del $'\\xff\\xfe0'; ip link del abcdefghijklmno"),
    ]
    for name, cmd in steps:
        drain(s)
        sh(["bash", "-c", cmd], check=False)
        got = drain(s)
        for i, d in enumerate(got):
            save("rtnetlink", f"{name}-{i:03}", d)
        if len(got) > 1:
            save("rtnetlink", f"{name}-joined", b"".join(got))
        if name == "tun":
            # The dump with every kind of device present, as the watcher's first listing.
            for family, fam in ((AF_UNSPEC, "unspec"), (AF_BRIDGE, "bridge")):
                req = struct.pack("=IHHII", 32, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 77, 0)
                req += struct.pack("=BxHiII", family, 0, 0, 0, 0)
                for i, d in enumerate(dump(NETLINK_ROUTE, req, 77)):
                    save("rtnetlink", f"dump-{fam}-{i:02}", d)
    s.close()
    sh("ip netns del offloadd-fuzzseed2", check=False)


def http_seeds():
    heads = {
        "prometheus": b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9101\r\nUser-Agent: Prometheus/2.53.0\r\n"
        b"Accept: application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
        b"version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\nAccept-Encoding: gzip\r\n"
        b"X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        "head": b"HEAD /metrics HTTP/1.1\r\nHost: router\r\n\r\n",
        "query": b"GET /metrics?name[]=offloadd_up HTTP/1.1\r\n\r\n",
        "http10-lf": b"GET /metrics HTTP/1.0\n\n",
        "root": b"GET / HTTP/1.1\r\nHost: router\r\n\r\n",
        "post": b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "absolute-form": b"GET http://router/metrics HTTP/1.1\r\n\r\n",
        "http09": b"GET /metrics\r\n\r\n",
        "unended": b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        "pipelined": b"GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
        "lowercase": b"get /metrics HTTP/1.1\r\n\r\n",
        "double-space": b"GET  /metrics HTTP/1.1\r\n\r\n",
        "tab": b"GET\t/metrics\tHTTP/1.1\r\n\r\n",
        "nul": b"GET /metrics\0 HTTP/1.1\r\n\r\n",
        "not-utf8": b"GET /metrics\xff HTTP/1.1\r\n\r\n",
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "cr-cr": b"GET /metrics HTTP/1.1\r\r\r\n\r\n",
        "options": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    }
    for name, head in heads.items():
        save("http", name, head)
    # What curl and wget really send, read by a one-shot listener.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    for tool, cmd in (
        ("curl", ["curl", "-s", "-m", "2", f"http://127.0.0.1:{port}/metrics"]),
        ("curl-head", ["curl", "-s", "-I", "-m", "2", f"http://127.0.0.1:{port}/metrics"]),
        ("wget", ["wget", "-q", "-T", "2", "-t", "1", "-O", "-", f"http://127.0.0.1:{port}/metrics"]),
    ):
        got = []

        def accept():
            c, _ = srv.accept()
            c.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            got.append(data)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            c.close()

        t = threading.Thread(target=accept)
        t.start()
        subprocess.run(cmd, capture_output=True)
        t.join(5)
        if got:
            save("http", tool, got[0])
    srv.close()


def main():
    if os.geteuid() != 0:
        sys.exit("capture_seeds: run as root (it creates a network namespace)")
    if os.environ.get("OFFLOADD_FUZZSEED_IN_NS") != "1":
        sh(["ip", "netns", "add", NS])
        try:
            env = dict(os.environ, OFFLOADD_FUZZSEED_IN_NS="1")
            r = subprocess.run(["ip", "netns", "exec", NS, sys.executable, *sys.argv], env=env)
        finally:
            sh(["ip", "netns", "del", NS], check=False)
        sys.exit(r.returncode)

    # veth pairs: the dummy module may be missing (it is on the test VMs' kernels).
    sh("ip link set lo up; ip link add lan0 type veth peer name lan0p; "
       "ip link add wan0 type veth peer name wan0p; ip link set lan0 up; ip link set wan0 up")
    http_seeds()

    steps = [
        ("fw4-load", lambda: nft(FW4)),
        ("families-load", lambda: nft(OTHER_FAMILIES)),
        ("element-add", lambda: nft("add element inet fw4 blocked4 { 203.0.113.9 }")),
        ("element-delete", lambda: nft("delete element inet fw4 blocked4 { 203.0.113.9 }")),
        ("set-flush", lambda: nft("flush set inet fw4 blocked4")),
        ("rule-insert", lambda: nft("insert rule inet fw4 forward tcp dport 25 drop")),
        ("chain-flush", lambda: nft("flush chain inet fw4 output")),
        ("chain-delete", lambda: nft("delete chain inet fw4 regular")),
        ("offloadd-like-load", lambda: nft(OURS)),
    ]
    monitor_seeds(steps)
    readback_seeds("loaded")
    monitor_seeds([
        ("ours-delete", lambda: nft("delete table inet offloadd")),
        ("table-delete", lambda: nft("delete table inet fw4")),
        ("flush-ruleset", lambda: nft("flush ruleset")),
    ])
    readback_seeds("empty")
    flowtable_seeds()
    link_seeds()


if __name__ == "__main__":
    main()
