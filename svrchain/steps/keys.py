"""gen-key and push-key: the DB server's restricted key, and its one line on every web server."""

from __future__ import annotations

import shlex

from svrchain.core import authkeys, homes, render, tell
from svrchain.core.authkeys import PublicKey
from svrchain.core.errors import HostError, SvrchainError
from svrchain.core.homes import WebFacts
from svrchain.core.plan import FileSpec, FileState, Outcome
from svrchain.ops import key as ops_key
from svrchain.ops import web as ops_web
from svrchain.remote import sshauth
from svrchain.remote.apply import apply, apply_changes, apply_files
from svrchain.remote.connection import Host
from svrchain.remote.files import FILE_CMD, UFILE_CMD, file_state, probe
from svrchain.remote.group import Session, on_hosts
from svrchain.steps import account

SSH_VERSION = "ssh -V 2>&1"


def marker(session: Session) -> str:
    """The comment that names svrchain's key (and line) for this DB server and trigger."""
    return render.marker(session.inv)


# --- gen-key ----------------------------------------------------------------------------------


def gen_key_step(session: Session, dry_run: bool, rotate: bool = False) -> None:
    """Make sure the DB server has the dedicated, passphrase-less key (mode 600)."""
    host, q = session.db, shlex.quote(session.inv.key.path)
    _, r = probe(host, commands={
        "ssh": SSH_VERSION, "priv": f"stat -c '%a %U' {q}", "derived": f"ssh-keygen -y -P '' -f {q}",
        "pub": f"cat {q}.pub", "pubmode": f"stat -c '%a %U' {q}.pub",
    })
    pub = FileState(f"{session.inv.key.path}.pub", r["pub"].ok, r["pub"].raw if r["pub"].ok else b"", 0o644,
                    "root", "root")
    facts = ops_key.KeyFacts(r["ssh"].stdout, r["priv"].stdout if r["priv"].ok else None,
                             r["derived"].stdout if r["derived"].ok else None, pub, r["pubmode"].stdout)
    try:
        change = ops_key.key(session.inv, facts, rotate)
    except SvrchainError as exc:
        raise HostError(f"{host.label}: {exc}") from None
    apply(session, host, "gen-key", change, dry_run)


@on_hosts(lock=True)
def run_gen_key(s: Session, rotate: bool = False, dry_run: bool = False) -> None:
    """What `fab gen-key` does (its flags and help: tasks/)."""
    s.run_steps("gen-key", [("gen-key", lambda: gen_key_step(s, dry_run, rotate))])


# --- push-key ---------------------------------------------------------------------------------

# With $U the web user, $H its home and $G its group (set once, in the probe's prelude). The
# server's OpenSSH version comes from its SSH banner, already received (Host.server_version).
_WEB_PROBE = {
    "account": '[ -n "$H" ] && echo "$H $G"',
    "home": 'stat -c %U -- "$H"',
    "sshdir": 'upath "$U" "$H/.ssh" && stat -c "%a %U" -- "$H/.ssh"',
    "authkeys": 'F="$H/.ssh/authorized_keys"; ' + UFILE_CMD,
    "scan": homes.SCAN,
    "hostkeys": "cat /etc/ssh/ssh_host_*_key.pub",
    "gate": f"F={render.GATE}; " + FILE_CMD,
    **account.PROBE,
}


def db_public_key(session: Session) -> PublicKey | None:
    """The DB server's public key, read over SSH once per run (None when it does not exist yet)."""
    def read() -> PublicKey | None:
        path = session.inv.key.path + ".pub"
        _, r = probe(session.db, commands={"pub": f"cat {shlex.quote(path)}"})
        return authkeys.parse_public_key(r["pub"].stdout) if r["pub"].ok else None

    return session.fact(f"db-key:{session.db.name}", read)


def held_keys(session: Session) -> homes.HeldKeys:
    """The public keys held on the DB server (its accounts' ~/.ssh, /etc/svrchain), read once per run."""
    def read() -> homes.HeldKeys:
        _, r = probe(session.db, commands={"held": homes.HELD_SCAN})
        if not r["held"].ok:
            raise HostError(f"{session.db.label}: reading the keys held there failed: {r['held'].stdout.strip()[:200]}")
        return homes.parse_held(r["held"].stdout)

    return session.fact(f"db-held:{session.db.name}", read)


def own_keys(session: Session) -> frozenset[str]:
    """The admin's own keys (connect.identity's, and every key the agent offers), as blobs."""
    return session.fact("own-keys", lambda: sshauth.own_blobs(session.dialer.auth))


def bypasses(session: Session, web: Host) -> homes.Bypasses:
    """The lines on ``web`` that the DB server's keys open around the gate (see homes.bypasses)."""
    inv, key = session.inv, db_public_key(session)
    return homes.bypasses(web_facts(session, web), (key.blob if key else None, marker(session)),
                          held_keys(session).keys, own_keys(session),
                          (inv.web.restart_command.split()[0], inv.db.from_addresses), session.db.name)


def _web_prelude(user: str) -> str:
    return (f'U={shlex.quote(user)}; IFS=: read -r _ _ _ _ _ H _ <<EOF\n$(getent passwd "$U")\nEOF\n'
            'G=$(id -gn "$U" 2>/dev/null)')


def gate_state(web: Host, r: dict) -> FileState:
    """The gate script's state on a web server, from its web facts."""
    return file_state(web.label, render.GATE, r["gate"].code, r["gate"].raw)


def web_facts(session: Session, web: Host) -> WebFacts:
    """What is known of ``web``'s accounts: web.user's home and authorized_keys (read as web.user),
    every account's authorized_keys, and the gate, sudo and host key facts.

    Read once per run: a later step (bootstrap's verify) reuses them unless this run changed the host.
    """
    return session.fact(f"web-facts:{web.name}", lambda: _read_web_facts(session, web))


def _read_web_facts(session: Session, web: Host) -> WebFacts:
    user = session.inv.web.user
    _, r = probe(web, commands=_WEB_PROBE, prelude=_web_prelude(user))
    if not r["scan"].ok:
        said = r["scan"].stdout.strip()[-200:]
        raise HostError(f"{web.label}: reading the accounts' authorized_keys failed: {said}; install what it "
                        "names (awk, setpriv, timeout) and run again")
    files = tuple(homes.parse_scan(r["scan"].stdout))
    command = homes.scan_settings(r["scan"].stdout)[1]
    gate, sudoers = gate_state(web, r), account.sudoers_state(web, r)
    if session.inv.web.dedicated and not r["account"].ok:  # push-key creates it
        home = account.home_of(user)
        return WebFacts(user, home, user, FileState(f"{home}/.ssh/authorized_keys", exists=False), "", None, files,
                        gate, sudoers, r, command)
    if not r["account"].ok or len(r["account"].stdout.split()) != 2:
        raise HostError(
            f"{web.label}: no account {user!r} (web.user in {session.inv.source}); create it or "
            "change web.user"
        )
    home, group = r["account"].stdout.split()
    keys = file_state(web.label, f"{home}/.ssh/authorized_keys", r["authkeys"].code, r["authkeys"].raw)
    unsafe = homes.unsafe_reason(user, home, r["home"].stdout.strip(), r["sshdir"], keys)
    sshdir = r["sshdir"].stdout.strip() if r["sshdir"].ok else ""
    return WebFacts(user, home, group, keys, sshdir, unsafe, files, gate, sudoers, r, command)


def expected_line(session: Session, key: PublicKey, ssh_version_text: str) -> str:
    """The authorized_keys line for ``key`` on a web server with that OpenSSH version."""
    return ops_web.restricted_line(session.inv, key, ssh_version_text)


def host_keys(web: Host, text: str) -> list[PublicKey]:
    """The web server's own host keys, checked against the key the admin connection saw."""
    keys = []
    for line in text.splitlines():
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


def push_key_step(session: Session, dry_run: bool) -> None:
    """Install the restricted line on every web server and pin their host keys on the DB server."""
    inv = session.inv
    key = db_public_key(session)
    if key is None and not dry_run:
        raise HostError(f"{session.db.label}: {inv.key.path}.pub does not exist; run {tell.command('gen-key')} first")

    def one(web: Host) -> list[str]:
        f = web_facts(session, web)
        if account.ensure_account(session, web, f.r, dry_run):
            f = web_facts(session, web)  # read again: the account is new
        if f.unsafe:
            raise homes.refusal(web.label, f)
        pins = [authkeys.known_hosts_line(web.address, web.port, k) for k in host_keys(web, f.r["hostkeys"].stdout)]
        if key is None:
            session.report(Outcome(web.name, "push-key", "would change",
                                   f"{f.keys.path}: add the line of the key gen-key creates"))
            return pins
        apply(session, web, "push-key", ops_web.push_key(inv, key, f, web.server_version()), dry_run)
        remove_stale(session, web, f, key.blob, dry_run)
        return pins

    results = session.each(session.webs, one, step="push-key")
    session.report_failures(results)
    pin_host_keys(session, results.succeeded, dry_run)


def remove_stale(session: Session, web: Host, facts: WebFacts, blob: str | None, dry_run: bool) -> None:
    """Take svrchain's lines out of every account but web.user (left by an earlier web.user), each
    file rewritten as its own account; one "stale-lines" line when there were any."""
    files = homes.stale(facts, blob, marker(session), facts.user)
    changes = account.without_ours(web, files, blob, marker(session))
    if changes:
        where = ", ".join(f"{c.spec.runas} ({c.spec.path})" for c in changes)
        apply_changes(session, web, "stale-lines", changes, dry_run,
                      f"remove svrchain's line from {where}: web.user is {facts.user}")


def pin_host_keys(session: Session, pinned: dict[str, list[str]], dry_run: bool) -> None:
    """Write the trigger's known_hosts on the DB server: the web servers' keys, read from themselves.

    Lines of web servers that could not be read this run (or not in --limit) are kept as they were.
    """
    path = session.inv.trigger.known_hosts
    states, _ = probe(session.db, [path])
    old = states[path].content.decode() if states[path].exists else ""
    lines: list[str] = []
    for web in session.all_webs:
        if web.name in pinned:
            lines += pinned[web.name]
        else:
            name = web.address if web.port == 22 else f"[{web.address}]:{web.port}"
            lines += [x for x in old.splitlines() if x.split(" ", 1)[0] == name]
    spec = FileSpec(path, "".join(x + "\n" for x in lines).encode(), 0o644, parent_mode=0o755)
    apply_files(session, session.db, "pin-host-keys", [spec], states, dry_run,
                ok_detail=f"{path}: {len(lines)} key(s) of {len(pinned)} web server(s)")


@on_hosts(lock=True)
def run_push_key(s: Session, dry_run: bool = False) -> None:
    """What `fab push-key` does (its flags and help: tasks/)."""
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    s.run_steps("push-key", [("push-key", lambda: push_key_step(s, dry_run))])
