#!/usr/bin/python3
"""UDP round trips, for the integration tests.

    udp_rtt.py echo ADDR PORT SECS          -> echoes every datagram back for SECS seconds
    udp_rtt.py ask ADDR PORT SIZE COUNT     -> prints the median round trip in ms of COUNT
                                               datagrams of SIZE bytes, one at a time

The asker waits at most 1 s for each answer and prints "lost N" beside
the median when some never came, so a broken tunnel fails the test
instead of hanging it.
"""
import socket
import statistics
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
if mode == "echo":
    s.bind((addr, port))
    print("listening", flush=True)
    end = time.monotonic() + float(sys.argv[4])
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            break
        s.sendto(data, peer)
else:
    size, count = int(sys.argv[4]), int(sys.argv[5])
    s.settimeout(1.0)
    rtts, lost = [], 0
    for i in range(count):
        payload = i.to_bytes(4, "big") + bytes(size - 4)
        t0 = time.monotonic()
        s.sendto(payload, (addr, port))
        try:
            while s.recv(65535)[:4] != payload[:4]:
                pass
            rtts.append((time.monotonic() - t0) * 1e3)
        except socket.timeout:
            lost += 1
        time.sleep(0.05)
    print(f"{statistics.median(rtts) if rtts else float('nan'):.2f} lost {lost}", flush=True)
