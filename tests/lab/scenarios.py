"""Lab scenarios as a table of cases: the rows and the one runner that reads them.

A case stages a fault (console commands, a host powered off, a listener, a changed inventory, a task
run with another inventory), runs steps (fab tasks, a DB restart followed by the trigger, a call),
checks each step's exit code and its one-line message (a regex naming the host, the file, the fix),
checks what must be unchanged or changed, undoes the fault, runs the repair (a later run repairs it)
and checks that the lab is back at its baseline.

Every case starts from the module's baseline (the manifests of every host taken right after the
module's bootstrap, the chain settled) and leaves the lab there, so the cases run in any order or
alone (``-k <id>``). A case that finds the lab drifted (a previous case failed half-way) brings it
back with ``fab bootstrap`` first, saying so; it never relies on what the previous case left.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab import hosts as labhosts
from svrchain.core.trigger_status import TriggerRun, parse
from tests.lab.conftest import TRIGGER_BOUND, Lab

HOSTS = ("db", "web1", "web2")
KNOWN_HOSTS = "<known_hosts>"  # in an inventory patch: the case's own known_hosts file


# -- staging ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Console:
    """Run ``do`` on a host's console to stage the fault; ``undo`` (always run) takes it away."""

    host: str
    do: str
    undo: str = ""

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        lab.console(self.host, self.do)

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        if self.undo:
            lab.console(self.host, self.undo)


@dataclass(frozen=True)
class PowerOff:
    """The host powered off; powered on and booted again afterwards."""

    host: str

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        labhosts.stop_host(labhosts.host(self.host))

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        h = labhosts.host(self.host)
        if labhosts.init_pid(h) is None:
            labhosts.start_host(h)
        labhosts.wait_booted(h)


# Accepts TCP connections on an address and port, and never says a word (not an SSH server).
SILENT = ("import socket, sys, time; s = socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); "
          "print('listening', flush=True); time.sleep(600)")


@dataclass(frozen=True)
class Silent:
    """A listener in the host's own namespace that accepts TCP on ``port`` and sends no SSH banner."""

    host: str
    port: int

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        h = labhosts.host(self.host)
        p = subprocess.Popen(["ip", "netns", "exec", h.netns, sys.executable, "-c", SILENT, h.address,
                              str(self.port)], stdout=subprocess.PIPE, text=True)
        ctx.processes.append(p)
        assert p.stdout.readline().strip() == "listening"

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        for p in ctx.processes:
            p.kill()
            p.wait()


@dataclass(frozen=True)
class KeyChange:
    """The host's ed25519 host key replaced (kept aside), sshd reloaded: it offers a key nobody pinned."""

    host: str

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        lab.console(self.host, "cp -a /etc/ssh/ssh_host_ed25519_key /root/hk && cp -a /etc/ssh/ssh_host_ed25519_key.pub"
                               " /root/hk.pub && rm /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' "
                               "-f /etc/ssh/ssh_host_ed25519_key && pkill -HUP -x sshd")
        wait_host_key(lab, self.host)

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        lab.console(self.host, "test ! -e /root/hk || { mv /root/hk /etc/ssh/ssh_host_ed25519_key && mv /root/hk.pub "
                               "/etc/ssh/ssh_host_ed25519_key.pub && pkill -HUP -x sshd; }")
        wait_host_key(lab, self.host)


@dataclass(frozen=True)
class OnlyKeyType:
    """sshd on the host offers only its host key of ``kind`` (HostKeyAlgorithms, reloaded): a key of
    another type than the one pinned, as a man in the middle with his own key would offer."""

    host: str
    kind: str

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        key = f"/etc/ssh/ssh_host_{self.kind.split('-')[0]}_key"
        lab.console(self.host, f"ssh-keygen -q -t {self.kind.split('-')[0]} -N '' -f {key} && "
                               "cp -a /etc/ssh/sshd_config /root/sshd_config && "
                               f"sed -i '1i HostKeyAlgorithms {self.kind}\\nHostKey {key}' /etc/ssh/sshd_config && "
                               "pkill -HUP -x sshd")
        wait_host_key(lab, self.host, kind=self.kind.split("-")[0])

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        key = f"/etc/ssh/ssh_host_{self.kind.split('-')[0]}_key"
        lab.console(self.host, f"rm -f {key} {key}.pub; test ! -e /root/sshd_config || "
                               "{ mv /root/sshd_config /etc/ssh/sshd_config && pkill -HUP -x sshd; }")
        wait_host_key(lab, self.host)


@dataclass(frozen=True)
class Install:
    """A fab task run with the case's inventory to stage the fault (e.g. the trigger installed with a
    readiness check that never passes); undone by ``undo`` run with the lab's inventory."""

    args: tuple[str, ...]
    undo: tuple[str, ...]

    def stage(self, lab: Lab, ctx: Ctx) -> None:
        r = lab.fab(*self.args, inventory=ctx.inventory)
        assert r.returncode == 0, r.stdout + r.stderr

    def unstage(self, lab: Lab, ctx: Ctx) -> None:
        r = lab.fab(*self.undo, inventory=ctx.base)
        assert r.returncode == 0, r.stdout + r.stderr


# -- what must be unchanged (or changed) -----------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """Every file, link and directory svrchain touches on the host, with modes, owners, checksums
    (less the paths under ``ignore``)."""

    host: str
    ignore: tuple[str, ...] = ()

    def read(self, lab: Lab, ctx: Ctx) -> object:
        return without(lab.manifest(self.host), self.ignore)


def without(manifest: list[str], ignore: tuple[str, ...]) -> list[str]:
    """A manifest less the lines of paths under ``ignore`` (find's lines and sha256sum's)."""
    def path(line: str) -> str:
        digest, sep, rest = line.partition("  ")
        if sep and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return rest
        return line.split(" ", 1)[0]

    return [x for x in manifest if not any(path(x) == p or path(x).startswith(p + "/") for p in ignore)]


@dataclass(frozen=True)
class Bytes:
    """A file's bytes on the host (read on its console)."""

    host: str
    path: str

    def read(self, lab: Lab, ctx: Ctx) -> object:
        # cat first on its own: a missing file fails the read (a pipe would hide it)
        return lab.console(self.host, f"cat {self.path} >/dev/null && cat {self.path} | base64 -w0").stdout


@dataclass(frozen=True)
class KnownHostsFile:
    """The case's own known_hosts file (on the admin's side)."""

    def read(self, lab: Lab, ctx: Ctx) -> object:
        return ctx.known.read_bytes()


@dataclass(frozen=True)
class ApachePid:
    host: str

    def read(self, lab: Lab, ctx: Ctx) -> object:
        return apache_pid(lab, self.host)


# -- steps ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fab:
    """``fab <args>`` with the case's inventory (``lab=True``: the module's own): its exit code, regexes
    that must match in its stdout / stderr (re.M), regexes that must not match its stdout, and how
    many times a regex matches its stdout. Never a traceback."""

    args: tuple[str, ...]
    exit: int
    out: tuple[str, ...] = ()
    err: tuple[str, ...] = ()
    not_out: tuple[str, ...] = ()
    count: tuple[tuple[str, int], ...] = ()
    lab: bool = False

    def run(self, lab: Lab, ctx: Ctx) -> None:
        r = lab.fab(*self.args, inventory=ctx.base if self.lab else ctx.inventory)
        ctx.results.append(r)
        said = r.stdout + r.stderr
        assert r.returncode == self.exit, f"fab {' '.join(self.args)}: exit {r.returncode}\n{said}"
        assert "Traceback" not in said, said
        for pattern in self.out:
            assert re.search(pattern, r.stdout, re.M), f"{pattern!r} not in\n{r.stdout}"
        for pattern in self.err:
            assert re.search(pattern, r.stderr, re.M), f"{pattern!r} not in\n{r.stderr}"
        for pattern in self.not_out:
            assert not re.search(pattern, r.stdout, re.M), f"{pattern!r} in\n{r.stdout}"
        for pattern, n in self.count:
            assert len(re.findall(pattern, r.stdout, re.M)) == n, f"{pattern!r} not {n} times in\n{r.stdout}"


@dataclass(frozen=True)
class DbRestart:
    """Restart the database on the DB host's console and wait for the trigger's run started after it:
    its result and each web server's state, and regexes on the trigger's log."""

    result: str
    webs: dict[str, str] = field(default_factory=dict)
    log: tuple[str, ...] = ()
    command: str = "service dbora restart"

    def run(self, lab: Lab, ctx: Ctx) -> None:
        t0 = float(lab.console("db", "date +%s.%N").stdout)
        lab.console("db", self.command)
        run = trigger_run(lab, t0)
        assert run.result == self.result, run
        assert {w: run.webs[w].state for w in self.webs} == self.webs, run
        log = lab.console("db", "cat /var/log/svr_restart.log").stdout
        for pattern in self.log:
            assert re.search(pattern, log, re.M), f"{pattern!r} not in\n{log}"


@dataclass(frozen=True)
class Call:
    """A step that is code (e.g. a transfer cut short through svrchain's own session)."""

    fn: Callable[[Lab, Ctx], None]

    def run(self, lab: Lab, ctx: Ctx) -> None:
        self.fn(lab, ctx)


# -- the row ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One scenario. ``inventory``: dotted paths into the lab's inventory and their values (list
    indexes as numbers; ``KNOWN_HOSTS`` stands for the case's known_hosts file, written from
    ``known_hosts(pinned lines)``). ``unchanged``/``changed``/``grows``: read after staging and again
    after the steps, before the fault is undone; ``undo_then``: again after the undo. ``repair``: steps
    run after the undo (a later run repairs it), before the baseline is checked."""

    id: str
    stage: tuple = ()
    steps: tuple = ()
    inventory: dict = field(default_factory=dict)
    known_hosts: Callable[[list[str]], str] | None = None
    unchanged: tuple = ()
    changed: tuple = ()
    undo_then: tuple = ()  # probes read after the undo that must equal what they were after staging
    grows: tuple = ()  # (probe, n): a count that must grow by exactly n
    repair: tuple = ()

    def __str__(self) -> str:
        return self.id


@dataclass
class Ctx:
    """What one case's run holds: its inventory file, processes it started, fab results."""

    tmp: Path
    base: Path | None = None  # the module's inventory (None: the lab's)
    inventory: Path | None = None  # the case's (the module's when the case patches nothing)
    known: Path | None = None
    processes: list = field(default_factory=list)
    results: list = field(default_factory=list)
    staged: dict = field(default_factory=dict)


def patched_inventory(case: Case, tmp: Path, base: Path | None) -> Ctx:
    """The case's inventory: the module's (``base``, else the lab's) with the case's patch applied."""
    ctx = Ctx(tmp, base=base)
    if case.known_hosts is not None:
        ctx.known = tmp / "known_hosts"
        ctx.known.write_text(case.known_hosts((labhosts.STATE / "known_hosts").read_text().splitlines()))
    if not case.inventory:
        ctx.inventory = base
        return ctx
    data = yaml.safe_load(base.read_text()) if base else labhosts.inventory_data()
    for dotted, value in case.inventory.items():
        *path, last = dotted.split(".")
        node = data
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value == KNOWN_HOSTS:
            value = str(ctx.known)
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    ctx.inventory = tmp / "inv.yaml"
    ctx.inventory.write_text(yaml.safe_dump(data))
    return ctx


# -- the baseline -------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """Where every case of a module starts and ends: every host's manifest, the module's inventory
    (None: the lab's), and whether svrchain is installed (then the chain is settled and ``fab verify``
    exits 0 there)."""

    manifests: dict[str, list[str]]
    inventory: Path | None = None
    chain: bool = True
    ignore: tuple[str, ...] = ()  # paths left out of the manifests


def take_baseline(lab: Lab, inventory: Path | None = None, chain: bool = True, warm: bool = True,
                  ignore: tuple[str, ...] = ()) -> Baseline:
    """The module's baseline. With the chain: right after the module's bootstrap, settled, ``fab verify``
    clean; ``warm``: after one run of the chain too (so the gates' and the trigger's state files exist,
    as after any case that restarts a web server)."""
    if chain:
        if warm:
            r = lab.fab("restart-chain", "--yes", inventory=inventory)
            assert r.returncode == 0, r.stdout + r.stderr
        lab.settled()
        v = lab.fab("verify", inventory=inventory)
        assert v.returncode == 0, v.stdout + v.stderr
    return Baseline({h: without(m, ignore) for h, m in manifests(lab).items()}, inventory, chain, ignore)


def difference(old: object, new: object) -> object:
    """What differs between two reads of a probe: the lines in only one of them, for manifests."""
    if isinstance(old, list) and isinstance(new, list):
        return sorted(set(old) ^ set(new))[:20]
    return (old, new)


def manifests(lab: Lab) -> dict[str, list[str]]:
    """Every host's manifest, read on the hosts at once."""
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        return dict(zip(HOSTS, pool.map(lab.manifest, HOSTS), strict=True))


def drift(lab: Lab, baseline: Baseline) -> dict[str, list[str]]:
    """What differs from the baseline, per host (lines only in one of the two), and hosts whose sshd does
    not answer."""
    out = {h: ["sshd does not answer"] for h in HOSTS if not sshd_answers(h)}
    for h, now in manifests(lab).items():
        now = without(now, baseline.ignore)
        if now != baseline.manifests[h]:
            out[h] = difference(baseline.manifests[h], now)
    return out


def sshd_answers(name: str, timeout: float = 10) -> bool:
    """sshd on the host sends its banner (waited for: an sshd just started may not listen yet)."""
    address = labhosts.host(name).address
    end = time.monotonic() + timeout
    while not labhosts.ssh_answers(address, connect_timeout=2, read_timeout=2):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def at_baseline(lab: Lab, baseline: Baseline) -> None:
    """Before a case: every host up, the chain settled, every manifest as at the baseline. With the chain,
    a lab that drifted (a previous case failed half-way) is bootstrapped again, with a warning, and checked."""
    for h in HOSTS:
        lh = labhosts.host(h)
        if labhosts.init_pid(lh) is None:
            labhosts.start_host(lh)
            labhosts.wait_booted(lh)
    if baseline.chain:
        lab.settled()
    found = drift(lab, baseline)
    if found and baseline.chain:
        warnings.warn(f"the lab drifted from its baseline before this case, bootstrapping again: {found}",
                      stacklevel=2)
        r = lab.fab("bootstrap", inventory=baseline.inventory)
        assert r.returncode == 0, r.stdout + r.stderr
        lab.settled()
        found = drift(lab, baseline)
    assert found == {}, f"the lab is not at its baseline: {found}"


def run_case(lab: Lab, baseline: Baseline, case: Case, tmp: Path) -> None:
    """Stage, run, check, undo, repair; then the lab must be at its baseline again (with the chain:
    settled; after a repair, ``fab verify`` exit 0). Prints how long each part took."""
    t0 = time.monotonic()
    at_baseline(lab, baseline)
    t1 = time.monotonic()
    ctx = patched_inventory(case, tmp, baseline.inventory)
    staged = []
    try:
        for s in case.stage:
            staged.append(s)
            s.stage(lab, ctx)
        before = {p: p.read(lab, ctx) for p in (*case.unchanged, *case.changed, *case.undo_then)}
        counted = {p: p.read(lab, ctx) for p, _ in case.grows}
        for step in case.steps:
            step.run(lab, ctx)
        for p in case.unchanged:
            now = p.read(lab, ctx)
            assert now == before[p], f"{p} changed: {difference(before[p], now)}"
        for p in case.changed:
            assert p.read(lab, ctx) != before[p], f"{p} did not change"
        for p, n in case.grows:
            # what a host logs is written a moment later: wait for it (a bound, not a measured time)
            end = time.monotonic() + 10
            while p.read(lab, ctx) < counted[p] + n and time.monotonic() < end:
                time.sleep(0.2)
            assert p.read(lab, ctx) == counted[p] + n, f"{p}: not {counted[p]} + {n}"
    finally:
        for s in reversed(staged):
            s.unstage(lab, ctx)
    for p in case.undo_then:
        assert p.read(lab, ctx) == before[p], f"{p} is not as it was after the undo"
    t2 = time.monotonic()
    for step in case.repair:
        step.run(lab, ctx)
    t3 = time.monotonic()
    if baseline.chain:
        lab.settled()
    assert drift(lab, baseline) == {}, "the case left the lab changed"
    if baseline.chain and case.repair:  # the repair repaired it: nothing owed, every check ok
        v = lab.fab("verify", inventory=baseline.inventory)
        assert v.returncode == 0, v.stdout + v.stderr
    t4 = time.monotonic()
    print(f"case {case.id}: baseline checked {t1 - t0:.1f}s, staged/run/undone {t2 - t1:.1f}s, "
          f"repaired {t3 - t2:.1f}s, back at the baseline {t4 - t3:.1f}s")


# -- helpers the rows use ----------------------------------------------------------------------------


def apache_pid(lab: Lab, web: str) -> str:
    return lab.console(web, "cat /var/run/apache2/apache2.pid", check=False).stdout.strip()


def trigger_run(lab: Lab, since: float, timeout: float = TRIGGER_BOUND) -> TriggerRun:
    """The trigger's status for its first run started after ``since`` (read on the DB host's console)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        run = parse(lab.console("db", "cat /var/lib/svrchain/svr_restart.status", check=False).stdout)
        if (run.started or 0) >= since and run.done:
            return run
        time.sleep(0.3)
    raise AssertionError("the trigger did not finish")


def wait_host_key(lab: Lab, web: str, timeout: float = 30, kind: str = "ed25519") -> None:
    """Wait until sshd on ``web`` offers the host key of ``kind`` now in its file (it reloaded after a
    change), and, for ed25519, no longer only another type."""
    address = labhosts.host(web).address
    want = lab.console(web, f"cut -d' ' -f2 /etc/ssh/ssh_host_{kind}_key.pub").stdout.strip()
    end = time.monotonic() + timeout
    while True:
        r = subprocess.run(["ssh-keyscan", "-T", "2", "-t", kind, address], capture_output=True, text=True)
        if want in r.stdout.split():
            return
        assert time.monotonic() < end, f"{web}: sshd does not offer its new host key"
        time.sleep(0.2)
