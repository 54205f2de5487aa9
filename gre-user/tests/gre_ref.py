#!/usr/bin/python3
"""Independent reference for the packet tests: builds GRE frames with scapy.

Reads a JSON list of frame specs on stdin, writes a JSON list of hex frames.
Each spec: {"eth": [dst, src], "ip": {"src", "dst", "tos", "id"} or "ip6": {"src",
"dst", "tc", "fl"}, "gre": {"key",
"seq", "csum"}, "inner_hex": "..."}.
"""
import json
import sys

from scapy.all import GRE, IP, IPv6, Ether, Raw, conf  # noqa: E402

conf.verb = 0
out = []
for spec in json.load(sys.stdin):
    g = spec["gre"]
    gre = GRE(proto=spec.get("proto", 0x0800))
    if g.get("csum"):
        gre.chksum_present = 1
    if g.get("key") is not None:
        gre.key_present = 1
        gre.key = g["key"]
    if g.get("seq") is not None:
        gre.seqnum_present = 1
        gre.sequence_number = g["seq"]
    if "ip6" in spec:
        ip6 = spec["ip6"]
        outer = Ether(dst=spec["eth"][0], src=spec["eth"][1], type=0x86DD) / IPv6(
            src=ip6["src"], dst=ip6["dst"], tc=ip6.get("tc", 0), fl=ip6.get("fl", 0), hlim=64, nh=47
        )
    else:
        ip = spec["ip"]
        outer = Ether(dst=spec["eth"][0], src=spec["eth"][1], type=0x0800) / IP(
            src=ip["src"], dst=ip["dst"], tos=ip.get("tos", 0), id=ip.get("id", 0), flags="DF", ttl=64, proto=47
        )
    frame = outer / gre / Raw(bytes.fromhex(spec["inner_hex"]))
    out.append(bytes(frame).hex())
json.dump(out, sys.stdout)
