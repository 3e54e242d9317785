"""The bench's wire-level connection counter: which frames are a connection opening to sshd."""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import pytest

from bench.sniff import ETH_P_ALL, attach_syn_filter, syn_to_ssh


def frame(dport: int = 22, flags: int = 0x02, proto: int = 6, ethertype: bytes = b"\x08\x00",
          dst: str = "198.18.0.21", ihl: int = 5) -> bytes:
    """An Ethernet + IPv4 + TCP frame from the controller to ``dst``."""
    eth = b"\xaa" * 6 + b"\xbb" * 6 + ethertype
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 40, 0, 0, 64, proto, 0,
                     socket.inet_aton("198.18.0.1"), socket.inet_aton(dst)) + b"\0" * (4 * ihl - 20)
    tcp = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 0x50, flags, 64240, 0, 0)
    return eth + ip + tcp


def test_a_syn_to_port_22_names_its_host():
    assert syn_to_ssh(frame()) == "198.18.0.21"
    assert syn_to_ssh(frame(ihl=6, dst="198.18.0.10")) == "198.18.0.10"  # IPv4 options


@pytest.mark.parametrize("other", [
    frame(flags=0x12),  # SYN-ACK: the host's answer, not a connection opening
    frame(flags=0x10),  # an ACK of a connection already open
    frame(dport=80),  # the load generator's requests
    frame(proto=17),  # UDP
    frame(ethertype=b"\x86\xdd"),  # IPv6
    frame()[:40],  # cut short
])
def test_anything_else_is_not_a_connection(other):
    assert syn_to_ssh(other) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw packet socket needs root")
def test_the_kernel_passes_only_syns_to_port_22():
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        attach_syn_filter(sock)
        sock.bind(("lo", 0))
        sock.settimeout(0.2)
        for port in (9, 22, 80):  # nothing listens on 127.0.0.9: each SYN is answered with a RST
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.9", port), timeout=2):
                pass
        seen = []
        with contextlib.suppress(TimeoutError):
            while True:
                seen.append(sock.recv(128))
    assert seen and {syn_to_ssh(f) for f in seen} == {"127.0.0.9"}  # the SYN to 22, not 9's or 80's, no RST
