"""When a run opens its SSH connections, seen on the wire: the TCP SYNs this machine sends to port 22
through the lab's bridge, with the kernel's timestamp of each (a raw packet socket, as root).

Independent of svrchain's own code: what it measures is when the first connection really opened after
the command started (the time spent starting Python and importing before it), and how many connections
each host was sent.
"""

from __future__ import annotations

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


class Syns:
    """Record the SYNs to port 22 sent through ``device`` while the block runs."""

    def __init__(self, device: str):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
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
