"""`cargo xtask bench agg --latency`: how late one TCP stream's bytes
reach the application, which is what a user waits for (iperf3's round
trip is the sender's TCP_INFO, and on an MPTCP socket that is its first
subflow's alone).

server PORT SECS: accept one connection, read blocks of BLOCK bytes, each
stamped by the client (CLOCK_MONOTONIC, which every namespace shares) as
it was written; print the one-way delays of the blocks completed after
the first 2 s, as JSON: min, median, p90, max in ms, and the Mbit/s.
client ADDR PORT SECS CC: write stamped blocks for SECS seconds, with
TCP_NOTSENT_LOWAT so that a block waits in the socket only behind what
is already on its way, not behind megabytes of send buffer.
Run under mptcpize for MPTCP.
"""

import json
import socket
import struct
import sys
import time

BLOCK = 16384
LOWAT = 16384
TCP_NOTSENT_LOWAT = 25


def server(port, secs):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    ls.settimeout(secs + 20)
    c, _ = ls.accept()
    c.settimeout(secs + 20)
    buf = bytearray()
    delays, start, received = [], None, 0
    while True:
        data = c.recv(1 << 20)
        if not data:
            break
        now = time.monotonic_ns()
        start = start or now
        received += len(data)
        buf += data
        while len(buf) >= BLOCK:
            (stamp,) = struct.unpack_from("!Q", buf)
            del buf[:BLOCK]
            if now - start > 2e9:
                delays.append((now - stamp) / 1e6)
    took = (time.monotonic_ns() - start) / 1e9 if start else 1
    delays.sort()
    q = lambda f: round(delays[min(len(delays) - 1, int(f * len(delays)))], 2) if delays else None
    print(json.dumps({"min": q(0), "median": q(0.5), "p90": q(0.9), "max": q(1.0), "blocks": len(delays),
                      "mbps": round(received * 8 / took / 1e6, 1)}))


def client(addr, port, secs, cc):
    s = socket.create_connection((addr, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, LOWAT)
    if cc:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
    pad = bytes(BLOCK - 8)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.sendall(struct.pack("!Q", time.monotonic_ns()) + pad)
    s.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]), int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else "")
