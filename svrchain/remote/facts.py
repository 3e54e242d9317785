"""Reading facts: every fact a step (or a whole run) needs from a host, in one probe; and the facts
every task reads, by name (the web facts, the DB server's key, the keys held there, the bypasses).

Each fact is kept for the run (by its name and the host's); ``Session.forget(host)``, which every
change calls, drops the host's facts, so that the next ``gather`` reads again only those it asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from svrchain.core import authkeys, homes, render
from svrchain.core.authkeys import PublicKey
from svrchain.core.errors import HostError, SvrchainError
from svrchain.core.inventory import Inventory
from svrchain.facts import Fact, Raw
from svrchain.facts.db import HeldKeysFact, KeyFact
from svrchain.facts.web import WebFact, WebFacts
from svrchain.remote import sshauth
from svrchain.remote.connection import Host
from svrchain.remote.files import probe
from svrchain.remote.group import Session

T = TypeVar("T")


def key(fact: Fact, host: Host) -> str:
    """The fact's key in the run's table (the host's name last: ``Session.forget`` matches it)."""
    return f"fact {fact.name}:{host.name}"


def get(session: Session, host: Host, fact: Fact[T]) -> T:
    """One fact of ``host``, read (alone) unless this run has it already."""
    return gather(session, host, [fact])[0]


def gather(session: Session, host: Host, facts: Sequence[Fact]) -> list[Any]:
    """``facts`` of ``host``, in that order: those this run does not have yet read in one probe."""
    return session.facts_once([key(f, host) for f in facts],
                              lambda keys: read(session.inv, host, [f for f in facts if key(f, host) in keys]))


def prefetch(session: Session, host: Host, *groups: Sequence[Fact]) -> None:
    """Start reading ``host``'s facts in the background: each group in one probe, one group after
    another (see Session.prefetch_facts)."""
    def reader(facts: Sequence[Fact]) -> Callable[[set], dict]:
        return lambda keys: read(session.inv, host, [f for f in facts if key(f, host) in keys])

    session.prefetch_facts(*(([key(f, host) for f in facts], reader(facts)) for facts in groups))


def read(inv: Inventory, host: Host, facts: Sequence[Fact]) -> dict[str, object]:
    """Run one probe for ``facts``; each parsed (or the error its parser raised), by key."""
    files = list(dict.fromkeys(p for f in facts for p in f.files(inv)))
    commands = {f"{f.name}/{n}": c for f in facts for n, c in f.commands(inv).items()}
    preludes = list(dict.fromkeys(p for p in (f.prelude(inv) for f in facts) if p))
    stdins = [s for s in (f.stdin(inv) for f in facts) if s]
    if len(stdins) > 1:
        raise ValueError("two facts read stdin in one probe")
    first = [f"{f.name}/{n}" for f in facts for n in f.first]
    states, results = probe(host, files, commands, "\n".join(preludes), stdins[0] if stdins else b"", first)
    out: dict[str, object] = {}
    for f in facts:
        mine = {n.split("/", 1)[1]: r for n, r in results.items() if n.split("/", 1)[0] == f.name}
        raw = Raw(host.label, {p: states[p] for p in f.files(inv)}, mine)
        try:
            out[key(f, host)] = f.parse(inv, raw)
        except Exception as exc:  # kept for the step that uses this fact: it fails there, not here
            out[key(f, host)] = exc
    return out


# --- the facts every task reads, by name ---------------------------------------------------------


def db_public_key(session: Session) -> PublicKey | None:
    """The DB server's public key, read over SSH once per run (None when it does not exist yet)."""
    return get(session, session.db, KeyFact()).public_key()


def held_keys(session: Session) -> homes.HeldKeys:
    """The public keys held on the DB server (its accounts' ~/.ssh, /etc/svrchain), read once per run."""
    return get(session, session.db, HeldKeysFact())


def own_keys(session: Session) -> frozenset[str]:
    """The admin's own keys (connect.identity's, and every key the agent offers), as blobs."""
    return session.fact("own-keys", lambda: sshauth.own_blobs(session.dialer.auth))


def bypasses(session: Session, web: Host) -> homes.Bypasses:
    """The lines on ``web`` that the DB server's keys open around the gate (see homes.bypasses)."""
    inv, key = session.inv, db_public_key(session)
    return homes.bypasses(web_facts(session, web), (key.blob if key else None, render.marker(session.inv)),
                          held_keys(session).keys, own_keys(session),
                          (inv.web.restart_command.split()[0], inv.db.from_addresses), session.db.name)


def web_facts(session: Session, web: Host) -> WebFacts:
    """What is known of ``web``'s accounts: web.user's home and authorized_keys (read as web.user),
    every account's authorized_keys, and the gate, sudo and host key facts.

    Read once per run: a later step (bootstrap's verify) reuses them unless this run changed the host.
    """
    return get(session, web, WebFact())


def host_keys(web: Host, lines: tuple[str, ...]) -> list[PublicKey]:
    """The web server's own host keys, checked against the key the admin connection saw."""
    keys = []
    for line in lines:
        try:
            keys.append(authkeys.parse_public_key(line))
        except SvrchainError:
            continue
    seen = web.connection().client.get_transport().get_remote_server_key()
    if not any(k.blob == seen.get_base64() for k in keys):
        raise HostError(
            f"{web.label}: the host keys sshd reports do not include the one this connection saw; "
            "refusing to pin them"
        )
    return keys
