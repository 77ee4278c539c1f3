#!/usr/bin/env python3
"""Flow churn for the soak test: many short flows, each a new conntrack entry.

  churn.py server PORT                       TCP: read each connection to EOF, reply, close
  churn.py client HOST TCP_PORT UDP_PORT SECONDS THREADS
      each thread, until SECONDS pass or SIGTERM comes: one TCP connection that exchanges 12 messages
      over ~60 ms (long enough to be offloaded on a kernel with flowtables) and
      closes, then one UDP request/reply from a fresh source port. Prints
      "tcp N udp M" (completed exchanges).
"""
import signal
import socket
import sys
import threading
import time


def serve_one(conn):
    with conn:
        conn.settimeout(10)
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def server(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(256)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def tcp_once(host, port):
    with socket.create_connection((host, port), timeout=5) as c:
        for _ in range(12):
            c.sendall(b"x" * 512)
            c.recv(4096)
            time.sleep(0.005)
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass


def udp_once(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(1)
        u.sendto(b"churn", (host, port))
        u.recvfrom(2048)


def client(host, tcp_port, udp_port, seconds, threads):
    counts = {"tcp": 0, "udp": 0}
    lock = threading.Lock()
    end = time.monotonic() + seconds
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def worker():
        while time.monotonic() < end and not stop.is_set():
            for kind, once, port in (("tcp", tcp_once, tcp_port), ("udp", udp_once, udp_port)):
                try:
                    once(host, port)
                except OSError:
                    continue
                with lock:
                    counts[kind] += 1

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        while t.is_alive():  # short joins, so the signal handler gets to run
            t.join(0.2)
    print(f"tcp {counts['tcp']} udp {counts['udp']}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]))
