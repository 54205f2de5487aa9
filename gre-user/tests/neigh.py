"""Ask once, as a VM's stack would, and print the answer's fields as JSON.

    neigh.py arp IFACE TARGET_IP   ARP who-has, broadcast (RFC 826)
    neigh.py nd IFACE TARGET_IP6   Neighbour Solicitation to the target's
                                   solicited-node group, with our
                                   link-layer address (RFC 4861 4.3)

Prints {"answered": false} when nothing answers within 2 s.
"""
import json
import sys

import socket

from scapy.all import ARP, Ether, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6, conf, get_if_addr, get_if_hwaddr, srp1
from scapy.layers.inet6 import in6_getnsma, in6_getnsmac
from scapy.utils6 import inet_pton

conf.verb = 0
kind, iface, target = sys.argv[1:4]
mac = get_if_hwaddr(iface)
out = {"answered": False}
if kind == "arp":
    q = Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=1, hwsrc=mac, psrc=get_if_addr(iface), pdst=target)
    r = srp1(q, iface=iface, timeout=2)
    if r is not None and ARP in r:
        a = r[ARP]
        out = {
            "answered": True, "eth_src": r.src, "eth_dst": r.dst, "op": a.op, "htype": a.hwtype, "ptype": a.ptype,
            "hlen": a.hwlen, "plen": a.plen, "sha": a.hwsrc, "spa": a.psrc, "tha": a.hwdst, "tpa": a.pdst,
            "asker_ip": q[ARP].psrc,
        }
else:
    src = sys.argv[4]
    group = socket.inet_ntop(socket.AF_INET6, in6_getnsma(inet_pton(socket.AF_INET6, target)))
    q = (Ether(dst=in6_getnsmac(inet_pton(socket.AF_INET6, group)), src=mac) / IPv6(src=src, dst=group, hlim=255)
         / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    r = srp1(q, iface=iface, timeout=2, filter="icmp6 and ip6[40] == 136")
    if r is not None and ICMPv6ND_NA in r:
        na = r[ICMPv6ND_NA]
        sent = na.cksum
        # The same message built afresh: scapy computes its checksum.
        fresh = IPv6(bytes(IPv6(src=r[IPv6].src, dst=r[IPv6].dst, hlim=r[IPv6].hlim) / ICMPv6ND_NA(R=na.R, S=na.S, O=na.O, tgt=na.tgt)
                           / ICMPv6NDOptDstLLAddr(lladdr=r[ICMPv6NDOptDstLLAddr].lladdr)))
        out = {
            "answered": True, "eth_src": r.src, "eth_dst": r.dst, "ip_src": r[IPv6].src, "ip_dst": r[IPv6].dst,
            "hlim": r[IPv6].hlim, "plen": r[IPv6].plen, "type": na.type, "code": na.code, "R": na.R, "S": na.S, "O": na.O,
            "tgt": na.tgt, "tlla": r[ICMPv6NDOptDstLLAddr].lladdr if ICMPv6NDOptDstLLAddr in r else None,
            "cksum": sent, "cksum_expected": fresh[ICMPv6ND_NA].cksum,
        }
print(json.dumps(out))
