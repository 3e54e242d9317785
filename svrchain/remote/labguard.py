"""The built-in lab's guard: an inventory marked ``lab: true`` runs only while every host it names is
routed through the lab's bridge, so no packet meant for the lab ever leaves this machine. Light (no
Fabric, no inventory model): the early connect (:mod:`svrchain.remote.early`) runs it before any packet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from svrchain.core.errors import BadInventory

# The bridge the built-in lab's hosts hang off (lab/hosts.py: BRIDGE); an inventory with ``lab: true``
# runs only when the route to each of its hosts goes through it.
LAB_BRIDGE = "svrlab0"

def route_device(address: str) -> str | None:
    """The network interface this machine would send a packet for ``address`` through."""
    return route_devices([address])[address]


# The first word of ``ip route get``'s answer when the route is of a special type.
_ROUTE_TYPE = r"(?:local|broadcast|multicast|anycast|unicast|unreachable|blackhole|prohibit|throw|nat)"
_ROUTE_LINE = re.compile(rf"^(?:{_ROUTE_TYPE}\s+)?(\S+)\s.*?\bdev (\S+)", re.M)


def route_devices(addresses: Iterable[str]) -> dict[str, str | None]:
    """The network interface this machine would send a packet for each address through (None: no
    route, or not an IP address), asked of the kernel with one ``ip`` for all of them."""
    addresses = list(addresses)
    canonical = {}
    for a in addresses:
        with contextlib.suppress(ValueError):  # a name is never looked up (it would ask a DNS server)
            canonical[a] = str(ipaddress.ip_address(a))
    found: dict[str, str] = {}
    if canonical:
        ip = shutil.which("ip") or "/usr/sbin/ip"
        asks = "".join(f"route get {c}\n" for c in dict.fromkeys(canonical.values()))
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([ip, "-o", "-force", "-batch", "-"], input=asks, capture_output=True, text=True,
                                 timeout=5).stdout
            found = dict(_ROUTE_LINE.findall(out))
    return {a: found.get(canonical[a]) if a in canonical else None for a in addresses}


def check_lab(source: Path, addresses: list[str]) -> None:
    """An inventory marked ``lab: true`` runs only while the lab is up: every host (an inventory
    address, a health URL's host, an ssh config's HostName or ProxyJump) is routed through the lab's
    bridge, so no packet meant for the lab ever leaves this machine."""
    devices = route_devices(addresses)
    for address in addresses:
        dev = devices[address]
        if dev != LAB_BRIDGE:
            raise BadInventory(
                f"{source} is the built-in lab's inventory (lab: true) and the lab is not up ({address} "
                f"would go {'through ' + dev if dev else 'nowhere'}, not the lab's bridge {LAB_BRIDGE}): "
                "run `make lab-up` first"
            )
