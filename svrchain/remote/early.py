"""The run's first connections, opened at once before Fabric, Paramiko and the inventory's models are
imported (issue 23, "Start fast": the first connection within 0.3 s of the command starting).

:func:`start` (the ``svrchain`` command's first act) reads only what connecting needs from the
inventory (:mod:`svrchain.core.early`: the task, the hosts' IP addresses and ports, all strictly
checked), runs the lab's guard for a ``lab: true`` inventory before any packet, and starts a
non-blocking TCP connect to every host of the run. The run then imports the rest and validates the
whole inventory while those connect; :meth:`svrchain.remote.connection.Dialer.tcp` takes a host's
socket (:func:`take`) and hands it to Paramiko, which checks the host key as always. A socket nobody
takes, or every socket when the validation fails, is closed (:func:`discard`): nothing was sent but a
TCP handshake. Anything unexpected here means no early connection: the run connects as it always did.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from errno import EINPROGRESS
from pathlib import Path

from svrchain.core import early
from svrchain.remote import labguard

MAX_BYTES = 1 << 20  # a larger inventory is read the usual way


@dataclass(frozen=True)
class Pending:
    """A connect in flight: its socket and when it started."""

    sock: socket.socket
    started: float


_pending: dict[tuple[Path, str, int], Pending] = {}
_lock = threading.Lock()


def inventory_path(wanted: early.Wanted, env: Mapping[str, str]) -> Path | None:
    """The inventory the run will use, when the command line or $INVENTORY names it (a .env is left
    to the usual path), as :func:`svrchain.remote.runopts.inventory_choice` resolves it."""
    given = wanted.inventory or env.get("INVENTORY")
    return Path(os.path.expanduser(given)) if given else None


def load_yaml(text: bytes) -> object:
    """The YAML document's data, safely (no tags but YAML's own), C's parser when built; a key given twice
    in one mapping is an error (the full check refuses it: ``lab: true`` then ``lab: false`` must not
    slip past the lab's guard)."""
    import yaml  # (light next to Fabric)

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            if len(set(keys)) != len(keys):
                raise ValueError("a key given twice")
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=Loader)


def read_plan(argv: list[str], env: Mapping[str, str]) -> tuple[Path, early.Plan] | None:
    """The inventory and the hosts to connect to early, None when this run does not (or cannot tell)."""
    wanted = early.wanted(argv)
    path = inventory_path(wanted, env) if wanted else None
    if wanted is None or path is None or not path.is_file() or path.stat().st_size > MAX_BYTES:
        return None
    found = early.plan(load_yaml(path.read_bytes()), wanted.limit)
    if found is None:
        return None
    if found.lab:  # the lab's guard: every address and health URL host through the lab's bridge
        devices = labguard.route_devices(found.guarded)
        if any(devices[a] != labguard.LAB_BRIDGE for a in found.guarded):
            return None
    return path.resolve(), found


def start(argv: list[str], env: Mapping[str, str]) -> int:
    """Start connecting to the hosts of the run ``argv`` asks for (without the program's name): how
    many connects were started (0: none; the run connects the usual way)."""
    try:
        found = read_plan(argv, env)
    except Exception:  # any doubt: no early connection (the usual path says what is wrong)
        return 0
    if found is None:
        return 0
    source, p = found
    started = 0
    for t in p.targets:
        sock = socket.socket(socket.AF_INET6 if ":" in t.address else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if sock.connect_ex((t.address, t.port)) not in (0, EINPROGRESS):
            sock.close()  # (connected the usual way, which says why it fails)
            continue
        with _lock:
            _pending[(source, t.address, t.port)] = Pending(sock, time.monotonic())
        started += 1
    return started


def take(source: Path, address: str, port: int, timeout: float) -> socket.socket | None:
    """The connection started early to ``address:port`` for the inventory at ``source``, once
    connected (within ``timeout`` of its start), as :func:`socket.create_connection` leaves one; None
    when none was started, or when the host has closed it meanwhile (then the usual way opens a new
    one). Taken once: a second connection to the host is opened the usual way. A failed connect raises
    the same errors (ConnectionRefusedError, TimeoutError, OSError)."""
    with _lock:
        p = _pending.pop((source.resolve(), address, port), None)
    if p is None:
        return None
    try:
        connected(p, timeout)
    except BaseException:
        p.sock.close()
        raise
    if hung_up(p.sock):  # e.g. sshd's LoginGraceTime passed while the run waited for a host lock
        p.sock.close()
        return None
    p.sock.settimeout(timeout)
    return p.sock


def connected(p: Pending, timeout: float) -> None:
    """Wait until ``p``'s connect has completed (within ``timeout`` of its start); its error raised."""
    poll = select.poll()
    poll.register(p.sock, select.POLLOUT)
    if not poll.poll(max(0.0, timeout - (time.monotonic() - p.started)) * 1000):
        raise TimeoutError("timed out")
    err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))  # (its subclass: ConnectionRefusedError, ...)


def hung_up(sock: socket.socket) -> bool:
    """Whether the host has already closed its end of the connection (it is then opened anew)."""
    poll = select.poll()
    poll.register(sock, getattr(select, "POLLRDHUP", 0x2000))
    return any(ev & (getattr(select, "POLLRDHUP", 0x2000) | select.POLLHUP | select.POLLERR)
               for _, ev in poll.poll(0))


def discard() -> None:
    """Close every connection started early that nobody took (the run ended, or never got to them)."""
    with _lock:
        left = list(_pending.values())
        _pending.clear()
    for p in left:
        p.sock.close()


def pending() -> list[tuple[Path, str, int]]:
    """The connections started early and not taken yet: (inventory, address, port)."""
    with _lock:
        return list(_pending)
