#!/usr/bin/env python3
"""Two-way UDP exchange for the lab.

  udp_echo.py server PORT                      echo every datagram back (IPv4 and IPv6)
  udp_echo.py client HOST PORT SECONDS [SPORT] send 100 datagrams/s, count the replies

iperf3's UDP mode leaves its flow one-way (UNREPLIED), and a flowtable never offloads
such a flow; this pair makes a real two-way flow. The client exits 1 if nothing came back.
"""
import socket
import sys
import time


def server(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def drain(s):
    got = 0
    try:
        while True:
            s.recvfrom(2048)
            got += 1
    except (socket.timeout, BlockingIOError):
        return got


def client(host, port, seconds, sport):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if sport:
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
    s.settimeout(0.01)
    sent = got = 0
    end = time.time() + seconds
    while time.time() < end:
        s.sendto(b"x" * 512, (host, port))
        sent += 1
        got += drain(s)
    time.sleep(0.2)
    got += drain(s)
    print(f"udp echo {host}:{port}: sent {sent} received {got}")
    return 0 if got > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "server":
        server(int(sys.argv[2]))
    elif len(sys.argv) >= 5 and sys.argv[1] == "client":
        sport = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        sys.exit(client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sport))
    else:
        sys.exit(__doc__)
