#!/usr/bin/python3
"""UDP multicast for the PIM scenario.

send GROUP PORT LOCAL_ADDR COUNT: COUNT datagrams of 1000 bytes, 20 ms apart
(TTL 16); prints COUNT.
recv GROUP PORT LOCAL_ADDR SECS: joins GROUP on LOCAL_ADDR's interface,
prints "ready", then "RECEIVED SIZE" (count, size of the last) after SECS seconds,
once nothing arrived for 5 s after the first datagram, or on SIGTERM.

send-seq GROUP PORT LOCAL_ADDR COUNT INTERVAL_MS: numbered datagrams.
recv-seq GROUP PORT LOCAL_ADDR SECS: prints "ready" once it has joined,
then JSON: received, distinct, duplicates, the longest silence between two
arrivals (ms), and the numbers of the first and last; stops after SECS or
2 s of silence after the first.
"""
import socket
import struct
import sys
import time

mode, group, port, local = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def join():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((group, port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(local))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    s.settimeout(0.05)
    return s


if mode == "send-seq":
    n, interval = int(sys.argv[5]), float(sys.argv[6]) / 1000
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 16)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
    start = time.time()
    for i in range(n):
        s.sendto(struct.pack("!Q", i) + bytes(192), (group, port))
        # Paced against the clock, so a slow round does not stretch the run.
        delay = start + (i + 1) * interval - time.time()
        if delay > 0:
            time.sleep(delay)
    print(n)
    sys.exit(0)
if mode == "recv-seq":
    import json
    secs = float(sys.argv[5])
    s = join()
    print("ready", flush=True)
    end = time.time() + secs
    seen, dups, count, gap, last, first_seq, last_seq = set(), 0, 0, 0.0, None, None, None
    while time.time() < end:
        try:
            data = s.recv(2000)
        except socket.timeout:
            if last is not None and time.time() - last > 2:
                break
            continue
        now = time.time()
        (seq,) = struct.unpack("!Q", data[:8])
        count += 1
        if seq in seen:
            dups += 1
        seen.add(seq)
        if last is not None:
            gap = max(gap, now - last)
        else:
            first_seq = seq
        last, last_seq = now, seq
    print(json.dumps({"received": count, "distinct": len(seen), "duplicates": dups, "max_gap_ms": gap * 1000, "first": first_seq, "last": last_seq}))
    sys.exit(0)
if mode == "send":
    n = int(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 16)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(local))
    payload = bytes(1000)
    for i in range(n):
        s.sendto(payload, (group, port))
        time.sleep(0.02)
    print(n)
else:
    import signal

    class Stop(Exception):
        pass

    def stop(*_):
        raise Stop()

    signal.signal(signal.SIGTERM, stop)
    secs = float(sys.argv[5])
    s = join()
    print("ready", flush=True)
    s.settimeout(0.5)
    end = time.time() + secs
    count, size, last = 0, 0, None
    try:
        while time.time() < end:
            try:
                data = s.recv(2000)
            except socket.timeout:
                if last is not None and time.time() - last > 5:
                    break
                continue
            count += 1
            size = len(data)
            last = time.time()
    except Stop:
        pass
    print(count, size, flush=True)
