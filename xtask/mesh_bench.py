"""One run of `cargo xtask bench mesh`, inside the real host's namespace.

Writes N simulated hosts' entries to etcd (through its JSON gateway), starts
`xgre run` and reads its log with timestamps:
- convergence: from the tunnel being up ("watching") to "in sync" with N
  hosts, and from the process start;
- change latency: an entry changed in etcd until `xgre run` says it changed
  the peer (the line is printed after the maps are written);
- idle writes: etcd's count of this host's requests over a quiet window.
Prints one JSON object.
"""

import base64
import http.client
import json
import queue
import re
import subprocess
import sys
import threading
import time

ETCD_HOST, ETCD_PORT = sys.argv[1].split(":")
PREFIX = sys.argv[2]
N = int(sys.argv[3])
CHANGES = int(sys.argv[4])
IDLE = float(sys.argv[5])
XGRE, CFG = sys.argv[6], sys.argv[7]

conn = http.client.HTTPConnection(ETCD_HOST, int(ETCD_PORT), timeout=10)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def post(path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"etcd {path}: {r.status} {data[:200]!r}")
    return json.loads(data)


def entry(i, extra_route=False):
    routes = [f"198.19.{i // 256}.{i % 256}/32"]
    if extra_route:
        routes.append(f"198.20.{i // 256}.{i % 256}/32")
    return {
        "version": 1,
        "mode": "gre",
        "links": [{"address": f"198.18.{1 + i // 250}.{1 + i % 250}/16", "mac": f"02:00:00:{i // 256:02x}:{i % 256:02x}:01"}],
        "routes": routes,
    }


LEASE = None


def put(i, extra_route=False):
    # Under a lease, as a host's own `xgre run` writes it: an entry without
    # one is refused as written by hand.
    body = {"key": b64(f"{PREFIX}/hosts/s{i}"), "value": b64(json.dumps(entry(i, extra_route))), "lease": LEASE}
    post("/v3/kv/put", body)


def metric_sum(pattern):
    c = http.client.HTTPConnection(ETCD_HOST, int(ETCD_PORT), timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith("#") and re.search(pattern, line):
            total += float(line.rsplit(" ", 1)[1])
    return total


# Clean slate, then the simulated hosts.
post("/v3/kv/deleterange", {"key": b64(f"{PREFIX}/"), "range_end": b64(PREFIX + "0")})
LEASE = post("/v3/lease/grant", {"TTL": 3600})["ID"]
for i in range(N):
    put(i)

lines = queue.Queue()
t_start = time.monotonic()
p = subprocess.Popen([XGRE, "run", "-c", CFG], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def reader():
    for line in p.stdout:
        lines.put((time.monotonic(), line.rstrip("\n")))


threading.Thread(target=reader, daemon=True).start()


def wait_for(pred, limit=60.0):
    end = time.monotonic() + limit
    while True:
        try:
            t, line = lines.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            p.kill()
            raise SystemExit("xgre run did not say what was expected in time")
        if pred(line):
            return t, line
        if time.monotonic() > end:
            p.kill()
            raise SystemExit("xgre run did not say what was expected in time")


t_up, _ = wait_for(lambda l: "watching" in l)
t_sync, sync_line = wait_for(lambda l: "in sync" in l)
m = re.search(r"(\d+) host\(s\)", sync_line)
if not m or int(m.group(1)) != N:
    p.kill()
    raise SystemExit(f"xgre run synced to the wrong number of hosts: {sync_line}")

latencies = []
for k in range(CHANGES):
    i = (k * 7919) % N
    t0 = time.monotonic()
    put(i, extra_route=(k // N) % 2 == 0)
    t1, _ = wait_for(lambda l, i=i: f"host s{i} changed" in l, 10.0)
    latencies.append((t1 - t0) * 1000)
    time.sleep(0.01)

idle = None
if IDLE > 0:
    keepalive = r'grpc_method="LeaseKeepAlive"'
    writes = r'grpc_server_handled_total\{.*grpc_method="(Put|Txn|DeleteRange|LeaseGrant|LeaseRevoke)"'
    before = metric_sum(r"grpc_server_msg_received_total\{.*" + keepalive) + metric_sum(writes)
    time.sleep(IDLE)
    after = metric_sum(r"grpc_server_msg_received_total\{.*" + keepalive) + metric_sum(writes)
    idle = (after - before) * 60.0 / IDLE

p.terminate()
try:
    p.wait(timeout=10)
except subprocess.TimeoutExpired:
    p.kill()
print(json.dumps({
    "hosts": N,
    "sync_ms": (t_sync - t_up) * 1000,
    "start_to_sync_ms": (t_sync - t_start) * 1000,
    "change_ms": latencies,
    "idle_writes_per_min": idle,
}))
