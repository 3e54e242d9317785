"""When a run opens its SSH connections, seen on the wire: the TCP SYNs this machine sends to port 22
through the lab's bridge, with the kernel's timestamp of each (a raw packet socket, as root).

Independent of svrchain's own code: what it measures is when the first connection really opened after
the command started (the time spent starting Python and importing before it), and how many connections
each host was sent.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
from collections import Counter

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@ll")


def syn_to_ssh(frame: bytes) -> str | None:
    """The destination address of an Ethernet frame that is a TCP SYN (without ACK) to port 22 over
    IPv4, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    tcp = 14 + ihl
    if len(frame) < tcp + 14:
        return None
    port = struct.unpack_from("!H", frame, tcp + 2)[0]
    flags = frame[tcp + 13]
    if port != 22 or flags & 0x12 != 0x02:
        return None
    return socket.inet_ntoa(frame[30:34])


SO_ATTACH_FILTER = 26
# The kernel passes the socket only IPv4 TCP SYNs (without ACK) to port 22 (a classic BPF program, as
# `tcpdump -dd 'ip and tcp dst port 22 and tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn'` prints it):
# without it every frame of the run went through this process, on the cores the run itself uses.
_SYN_FILTER = (
    (0x28, 0, 0, 12), (0x15, 0, 11, 0x0800),  # ethertype IPv4
    (0x30, 0, 0, 23), (0x15, 0, 9, 6),  # protocol TCP
    (0x28, 0, 0, 20), (0x45, 7, 0, 0x1FFF),  # not a later fragment
    (0xB1, 0, 0, 14), (0x48, 0, 0, 16), (0x15, 0, 4, 22),  # destination port 22
    (0x50, 0, 0, 27), (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x02),  # SYN without ACK
    (0x06, 0, 0, 0x40000), (0x06, 0, 0, 0),  # accept / drop
)


def attach_syn_filter(sock: socket.socket) -> None:
    """Let the kernel drop every frame that is not a SYN to port 22 before it reaches ``sock``."""
    program = b"".join(struct.pack("HBBI", *op) for op in _SYN_FILTER)
    buf = ctypes.create_string_buffer(program)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                    struct.pack("HL", len(_SYN_FILTER), ctypes.addressof(buf)))


class Syns:
    """Record the SYNs to port 22 sent through ``device`` while the block runs."""

    def __init__(self, device: str):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        attach_syn_filter(self.sock)
        self.sock.settimeout(0.1)
        try:
            self.sock.bind((device, 0))
        except OSError:  # no such device (the lab is gone): nothing to see, the run says why
            self.sock.close()
        self.first: float | None = None  # the kernel's time (epoch seconds) of the first SYN
        self.per_host: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame, anc, _flags, addr = self.sock.recvmsg(128, socket.CMSG_SPACE(_TIMESPEC.size))
            except TimeoutError:
                continue
            except OSError:  # the bridge went down meanwhile: nothing goes through it (the run says why)
                self._stop.wait(0.05)
                continue
            if addr[2] != socket.PACKET_OUTGOING:
                continue
            host = syn_to_ssh(frame)
            if host is None:
                continue
            self.per_host[host] += 1
            if self.first is None:
                self.first = _stamp(anc)

    def __enter__(self) -> Syns:
        if self.sock.fileno() >= 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)  # the last frames already sent reach the socket
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sock.close()


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = _TIMESPEC.unpack(data[:_TIMESPEC.size])
            return sec + nsec / 1e9
    return time.time()
