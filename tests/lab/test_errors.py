"""Unreachable hosts, unknown and changed host keys, a port that does not speak SSH: one clear line per
host, non-zero exit, the other hosts still served, nothing changed; trust-hosts pins keys only after
showing them. A table of cases (tests/lab/scenarios.py reads them), each from the module's baseline."""

from __future__ import annotations

import re

import pytest

from lab import hosts as labhosts
from tests.lab.conftest import lab_of
from tests.lab.scenarios import (
    HOSTS,
    KNOWN_HOSTS,
    Call,
    Case,
    Console,
    Ctx,
    Fab,
    KnownHostsFile,
    Manifest,
    Silent,
    run_case,
    take_baseline,
)

pytestmark = pytest.mark.lab
NOTHING_CHANGED = tuple(Manifest(h) for h in HOSTS)


@pytest.fixture(scope="module")
def lab():
    """These checks do not depend on the init system: SysV hosts only."""
    yield from lab_of("sysv")


@pytest.fixture(scope="module")
def baseline(chain):
    return take_baseline(chain)


def fingerprints_shown(lab, ctx: Ctx) -> None:
    """trust-hosts --yes showed each host's own key (read on the host) and pinned exactly the lab's keys."""
    shown = ctx.results[-1].stdout
    for name in HOSTS:
        fp = lab.host(name).check_output("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert re.search(rf"^{name}\s+new\s+\S+ ssh-ed25519 {re.escape(fp)}$", shown, re.M), shown
    assert sorted(ctx.known.read_text().splitlines()) == sorted(
        (labhosts.STATE / "known_hosts").read_text().splitlines())


def nothing_pinned(lab, ctx: Ctx) -> None:
    assert ctx.known.read_text() == ""


def one_changed_one_unpinned(pinned: list[str]) -> str:
    """db: pinned; web1: a different key (the DB host's) under its address; web2: not pinned at all."""
    return f"{pinned[0]}\n198.18.0.21 ssh-ed25519 {pinned[0].split()[2]}\n"


CASES = [
    Case(
        "unreachable-web",
        inventory={"web.servers.1.address": "198.18.0.99"},
        steps=(Fab(("push-key",), 3,
                   out=(r"^web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.99:22\): cannot connect: .*"
                        r"is the host up and its address right in",),
                   err=(r"\Asvrchain: push-key: failed on web2 \(see above\)\s*\Z",)),),
        unchanged=NOTHING_CHANGED,
    ),
    Case(
        "unreachable-db-in-verify",
        stage=(Console("db", "pkill -x sshd", "/usr/sbin/sshd"),),
        # only a host unreachable: exit 3, not a gap (2)
        steps=(Fab(("verify",), 3, lab=True,
                   out=(r"^db\s+reachable\s+UNREACHABLE\s+db \(198\.18\.0\.10:22\): connection refused",)),),
        unchanged=NOTHING_CHANGED,
    ),
    Case(
        "unknown-and-changed-host-keys",
        known_hosts=one_changed_one_unpinned,
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        steps=(
            Fab(("push-key",), 3,
                out=(r"^web1 .* host key CHANGED: it offers ssh-ed25519 SHA256:\S+, not the key pinned in",
                     r"^web2 .* host key unknown: it is not pinned in .*`fab trust-hosts`")),
            # a changed key: not connected to; the new one waits for --yes
            Fab(("trust-hosts",), 3, out=(r"^web1\s+CHANGED", r"^web2\s+new\s"), err=(r"--yes",)),
        ),
        unchanged=(*NOTHING_CHANGED, KnownHostsFile()),  # nothing pinned without --yes
    ),
    Case(
        "trust-hosts-pins-after-showing",
        known_hosts=lambda pinned: "",
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        steps=(
            Fab(("trust-hosts", "--dry-run"), 0, out=(r"would pin 3 key\(s\)",)),
            Call(nothing_pinned),
            Fab(("trust-hosts", "--yes"), 0),
            Call(fingerprints_shown),
            Fab(("trust-hosts",), 0, count=((r"^\S+\s+ok\s", 3),)),
        ),
        unchanged=NOTHING_CHANGED,
    ),
    # web2's port 2222 accepts TCP in web2's own namespace and sends no SSH banner: push-key and
    # trust-hosts say so in one line (exit 3); verify --limit web1 checks web1 only. (That trust-hosts
    # checks such hosts at once, in one timeout, is tests/unit/test_cli_flags.py's, counted there.)
    Case(
        "banner-less-port",
        stage=(Silent("web2", 2222),),
        inventory={"web.servers.1.port": 2222},
        steps=(
            Fab(("push-key",), 3,
                out=(r"^web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.22:2222\): no SSH banner within 5s: "
                     r"something accepts TCP on that port but does not speak SSH",)),
            Fab(("trust-hosts",), 3, err=(r"\A\s*svrchain: web2: 198\.18\.0\.22:2222: no SSH banner within 5s",)),
            Fab(("verify", "--limit", "web1"), 0, lab=True,
                out=(r"\A[^\n]*db 198\.18\.0\.10, web1 198\.18\.0\.21 \(--limit: 1 of 2 web servers\)$",),
                not_out=(r"^web2\s",)),
        ),
        unchanged=NOTHING_CHANGED,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_error(chain, baseline, case, tmp_path):
    run_case(chain, baseline, case, tmp_path)
