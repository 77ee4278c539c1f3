#!/usr/bin/env python3
"""Times `status` answers over offloadd's control socket (no CLI process start):
asks every INTERVAL seconds for SECONDS, then prints `key value` lines, each key after
PREFIX: answers, p50_ms, p99_ms, worst_ms, and the full dumps the daemon ran meanwhile
with the last one's duration.
    status_latency.py SOCKET SECONDS INTERVAL [PREFIX]"""
import json
import socket
import sys
import time


def status(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"request":"status"}\n')
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return json.loads(buf)


def main():
    path, seconds, interval = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else ""
    first = status(path)["conntrack"]
    lat = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        status(path)
        lat.append((time.monotonic() - t0) * 1000)
        time.sleep(interval)
    last = status(path)["conntrack"]
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, int(len(lat) * p / 100))]
    print(f"{prefix}answers {len(lat)}")
    print(f"{prefix}p50_ms {pick(50):.2f}")
    print(f"{prefix}p99_ms {pick(99):.2f}")
    print(f"{prefix}worst_ms {lat[-1]:.2f}")
    print(f"{prefix}full_dumps_meanwhile {last['full_dumps'] - first['full_dumps']}")
    print(f"{prefix}last_full_dump_ms {last.get('last_full_dump_ms')}")


main()
