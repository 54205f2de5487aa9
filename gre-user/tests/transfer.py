#!/usr/bin/python3
"""One TCP transfer with a SHA-256 at each end, for the integration tests.

    transfer.py recv ADDR PORT          -> prints "BYTES SHA256 MAXGAP" of what arrived,
                                           MAXGAP the longest wait for data, seconds
    transfer.py send ADDR PORT MBYTES   -> prints "BYTES SHA256" of what was sent

Both ends give up after 60 s, so a broken tunnel fails the test instead of
hanging it.
"""
import hashlib
import random
import socket
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
if mode == "recv":
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1)
    print("listening", flush=True)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(60)
    h, n, gap = hashlib.sha256(), 0, 0.0
    last = time.monotonic()
    while True:
        d = c.recv(1 << 16)
        now = time.monotonic()
        if not d:
            break
        gap = max(gap, now - last)
        last = now
        h.update(d)
        n += len(d)
    print(n, h.hexdigest(), "%.3f" % gap, flush=True)
else:
    data = random.Random(7).randbytes(int(sys.argv[4]) << 20)
    c = socket.create_connection((addr, port), timeout=60)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
