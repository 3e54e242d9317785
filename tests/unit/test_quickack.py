"""The admin connection's socket acknowledges at once: TCP_QUICKACK set again before every read (the
kernel clears it by itself), everything else the socket's own. Its effect (about 40 ms less before the
first command on every host: sshd's Nagle waiting for a delayed ACK) is measured by the bench."""

from __future__ import annotations

import socket

import pytest

from svrchain.remote.connection import QuickAck

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux only")


def test_every_read_turns_quick_acks_on_again():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as raw:
        peer, _ = server.accept()
        with peer:
            sock = QuickAck(raw)
            for chunk in (b"first", b"second"):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)  # as the kernel leaves it
                peer.sendall(chunk)
                assert sock.recv(64) == chunk
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
            sock.settimeout(0.5)  # the rest is the socket's own
            assert raw.gettimeout() == 0.5
            sock.sendall(b"back")
            assert peer.recv(64) == b"back"
