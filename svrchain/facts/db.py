"""The DB server's facts: its init system, each service's files and state, the restart key, the
pinned web host keys, the keys held there, and what uninstall finds of svrchain's files
(``ops.db.db_facts`` lists those a bootstrap reads, in one probe before its first step).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from svrchain.core import authkeys, homes, render, sysv
from svrchain.core.errors import HostError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState
from svrchain.facts import Fact, Raw

# --- the init system ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitSystem:
    """How the host boots, and its SysV registrations."""

    found: str  # "systemd" or "sysv", as detected
    tool: str  # the SysV registration tool: "chkconfig", "update-rc.d", or '' (none)
    links: dict[str, dict[str, list[str]]]  # every rc link: {service: {runlevel: [link names]}}

    def last_links(self, service: str) -> dict[str, str]:
        """A service's links by runlevel (the last of a level)."""
        return {lv: names[-1] for lv, names in self.links.get(service, {}).items()}


class InitFact(Fact[InitSystem]):
    name = "init"

    def commands(self, inv: Inventory) -> dict[str, str]:
        return dict(sysv.PROBE)

    def parse(self, inv: Inventory, raw: Raw) -> InitSystem:
        return InitSystem(raw.results["init"].stdout.strip() or "sysv", sysv.tool_name(raw.results["tool"].stdout),
                          sysv.link_lists(raw.results["links"].stdout))


def init_of(inv: Inventory, label: str, found: InitSystem) -> tuple[str, str]:
    """(init system, SysV registration tool or '') of the DB server: the inventory's choice, or
    detected; refused in one line where a service could not be registered."""
    init = found.found if inv.db.init == "auto" else inv.db.init
    if init == "systemd":
        return init, ""
    if inv.db.unit:
        raise HostError(f"{label}: db.unit {inv.db.unit} needs systemd, but this host boots "
                        "with SysV init; use db.script or db.oracle instead")
    if not found.tool:
        raise HostError(
            f"{label}: neither chkconfig nor update-rc.d is installed; install one (Debian: "
            "init-system-helpers + insserv) to register services"
        )
    return init, found.tool


# --- a service's files and state ------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    """A service's files as found (both init systems' and chkconfig's override), and its state."""

    states: dict[str, FileState]
    enabled: str  # what `systemctl is-enabled` says of its unit ('' off systemd)
    up: bool  # whether it runs now (read only for a service that must run)


def override_path(service: str) -> str:
    """The file in /etc/chkconfig.d that chkconfig would read over the service's header."""
    return f"{sysv.OVERRIDES}/{service}"


class ServiceFact(Fact[ServiceState]):
    """A service's files (``paths``, and chkconfig's override of ``service``), whether its ``unit`` is
    enabled and (``running``) whether it runs."""

    def __init__(self, service: str, unit: str, paths: list[str], running: bool = False):
        self.service, self.unit, self.paths, self.running = service, unit, paths, running
        self.name = f"service-{service}" + ("-running" if running else "")

    def files(self, inv: Inventory) -> list[str]:
        return sorted({*self.paths, override_path(self.service)})

    def commands(self, inv: Inventory) -> dict[str, str]:
        name, unit = self.service, self.unit
        up = sysv.status_command(name, unit)
        return {"enabled": sysv.enabled_command(unit), **({"up": up} if self.running else {})}

    def parse(self, inv: Inventory, raw: Raw) -> ServiceState:
        up = raw.results.get("up")
        return ServiceState(raw.states, raw.results["enabled"].stdout.strip(), bool(up and up.ok))


# --- the restart key ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFacts:
    """The DB server's restart key: what gen-key reads, verify checks and push-key installs."""

    ssh_version: str  # `ssh -V`
    priv: str | None  # "<mode> <owner>" of the private key; None when there is none
    derived: str | None  # its public half, derived without a passphrase; None when that fails
    pub: FileState  # the .pub file as found
    pubmode: str  # "<mode> <owner>" of the .pub file

    def public_key(self) -> authkeys.PublicKey | None:
        """The public key in the .pub file (None when there is none yet)."""
        return authkeys.parse_public_key(self.pub.content.decode(errors="replace")) if self.pub.exists else None


class KeyFact(Fact[KeyFacts]):
    name = "key"

    def files(self, inv: Inventory) -> list[str]:
        return [f"{inv.key.path}.pub"]

    def commands(self, inv: Inventory) -> dict[str, str]:
        q = shlex.quote(inv.key.path)
        return {"ssh": "ssh -V 2>&1", "priv": f"stat -c '%a %U' {q}", "derived": f"ssh-keygen -y -P '' -f {q}",
                "pubmode": f"stat -c '%a %U' {q}.pub"}

    def parse(self, inv: Inventory, raw: Raw) -> KeyFacts:
        r = raw.results
        return KeyFacts(r["ssh"].stdout, r["priv"].stdout.strip() if r["priv"].ok else None,
                        r["derived"].stdout if r["derived"].ok else None, raw.states[f"{inv.key.path}.pub"],
                        r["pubmode"].stdout.strip())


# --- the web servers' host keys, pinned for the trigger; the keys held on the DB server --------------


class KnownHostsFact(Fact[FileState]):
    name = "known-hosts"

    def files(self, inv: Inventory) -> list[str]:
        return [inv.trigger.known_hosts]

    def parse(self, inv: Inventory, raw: Raw) -> FileState:
        return raw.states[inv.trigger.known_hosts]


class HeldKeysFact(Fact[homes.HeldKeys]):
    """The public keys held on the DB server (its accounts' ~/.ssh, /etc/svrchain)."""

    name = "held-keys"

    def commands(self, inv: Inventory) -> dict[str, str]:
        return {"held": homes.HELD_SCAN}

    def parse(self, inv: Inventory, raw: Raw) -> homes.HeldKeys:
        held = raw.results["held"]
        if not held.ok:
            raise HostError(f"{raw.label}: reading the keys held there failed: {held.stdout.strip()[:200]}")
        return homes.parse_held(held.stdout)


@dataclass(frozen=True)
class Installed:
    """What uninstall finds of svrchain's files on the DB server."""

    present: frozenset[str]  # which of the paths asked about exist
    ours: frozenset[str]  # which of them hold svrchain's mark
    original: str  # the site's own init script svrchain replaced (its first backup), or ''
    state_dirs: tuple[str, ...]  # svrchain's state directories that exist


# $1: a path. Prints the first backup svrchain kept of it, if that backup is not svrchain's own
# file: the site's file that svrchain replaced ($B: the backups, $M: svrchain's mark).
_ORIGINAL = r"""
orig() {
    name=$(printf %s "$1" | tr / %)
    first=$(ls -1 "$B" 2>/dev/null | grep -E "^$(printf %s "$name" | sed 's/[.]/[.]/g')[.][0-9]{8}T" | sort | head -n 1)
    [ -n "$first" ] && ! grep -q "$M" "$B/$first" && echo "$B/$first"
    true
}
"""


class InstalledFact(Fact[Installed]):
    """Which of ``paths`` exist and are svrchain's, the site's own ``init_script`` that svrchain
    replaced (its first backup in ``backups``), and svrchain's state directories."""

    name = "installed"

    def __init__(self, paths: list[str], backups: str, init_script: str | None):
        self.paths, self.backups, self.init_script = paths, backups, init_script

    def prelude(self, inv: Inventory) -> str:
        return f"B={shlex.quote(self.backups)}; M={shlex.quote(render.MARK)}\n{_ORIGINAL}"

    def commands(self, inv: Inventory) -> dict[str, str]:
        quoted = " ".join(shlex.quote(p) for p in self.paths)
        return {
            "present": f"for f in {quoted}; do [ -e \"$f\" ] && echo \"$f\"; done; true",
            "ours": f"grep -l {shlex.quote(render.MARK)} {quoted} 2>/dev/null; true",
            "orig-init": f"orig {shlex.quote(self.init_script or '-')}",
            # (/run/<trigger> held the SSH control sockets before they moved to RUN_DIR, which housekeeping removes.)
            "state": f"ls -d {render.STATE_PARENT} /run/{shlex.quote(inv.trigger.name)} 2>/dev/null; true",
        }

    def parse(self, inv: Inventory, raw: Raw) -> Installed:
        r = raw.results
        return Installed(frozenset(r["present"].stdout.split()), frozenset(r["ours"].stdout.split()),
                         r["orig-init"].stdout.strip(), tuple(r["state"].stdout.split()))
