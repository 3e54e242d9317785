"""harden-sshd: public-key logins only on the web servers, without ever locking the admin out.

A change is written (atomically, the old file kept), checked with ``sshd -t`` and ``sshd -T``
(sshd must accept it and actually use it), and only then sshd is reloaded; a fresh SSH login is
tried after the reload. If any of that fails, the old file is put back (and sshd reloaded again
if it had been): the host ends as it was, and the run says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from svrchain.core import authkeys, sshd
from svrchain.core.errors import HostError
from svrchain.core.plan import FileChange, FileSpec, Outcome, file_change
from svrchain.remote.connection import Host
from svrchain.remote.files import probe, restore, write
from svrchain.remote.group import Session, on_hosts

SSHD = "$(command -v sshd || echo /usr/sbin/sshd)"

_PROBE = {
    "effective": f"{SSHD} -T",
    "supported": "for q in kex cipher mac; do printf '%s ' $q; ssh -Q $q | tr '\\n' ' '; echo; done",
    "hostkeys": f"for k in $({SSHD} -T | awk '$1==\"hostkey\"{{print $2}}'); do "
                "cut -d' ' -f1 \"$k.pub\" 2>/dev/null || ssh-keygen -y -f \"$k\" | cut -d' ' -f1; done",
}

# Reload sshd (SIGHUP: it re-executes itself with the new settings; open sessions stay) and wait
# until it listens again on new sockets, so that the login tried next meets the new settings.
_RELOAD = r"""
pid=$(cat "$1" 2>/dev/null || systemctl show -p MainPID --value ssh 2>/dev/null)
[ -n "$pid" ] && [ "$pid" != 0 ] || { echo "cannot find sshd's process ($1)" >&2; exit 1; }
socks() { for f in /proc/"$pid"/fd/*; do readlink "$f"; done 2>/dev/null | grep socket | sort | tr '\n' ' '; }
before=$(socks)
kill -HUP "$pid"
for _ in $(seq 100); do
    now=$(socks)
    [ -n "$now" ] && [ "$now" != "$before" ] && exit 0
    sleep 0.05
done
echo "sshd did not listen again within 5s of SIGHUP" >&2
exit 1
"""


def _supported(text: str) -> dict[str, set[str]]:
    out = {}
    for line in text.splitlines():
        query, *algs = line.split()
        out[query] = set(algs)
    return out


def plan(session: Session, web: Host) -> tuple[FileChange | None, sshd.Settings, dict[str, str]]:
    """What harden-sshd would change on ``web``: (the file change or None, svrchain's own settings,
    sshd's effective settings now)."""
    states, r = probe(web, [sshd.MAIN, sshd.DROPIN], _PROBE)
    if not r["effective"].ok:
        raise HostError(f"{web.label}: sshd -T fails with the current settings ({_first(r['effective'].stdout)}); "
                        "fix sshd's configuration first")
    h = session.inv.harden
    own = sshd.settings(authkeys.openssh_version(web.server_version()), web.user == "root",
                        _supported(r["supported"].stdout), r["hostkeys"].stdout.split(), h.algorithms)
    wanted = own + sshd.extra_settings(h.extra)
    main = states[sshd.MAIN]
    if not main.exists:
        raise HostError(f"{web.label}: {sshd.MAIN} does not exist; is this sshd configured elsewhere?")
    if sshd.includes_dropins(main.content.decode("utf-8", "surrogateescape")):
        spec = FileSpec(sshd.DROPIN, sshd.dropin(wanted), 0o644, parent_mode=0o755)
        state = states[sshd.DROPIN]
    else:
        text = sshd.with_block(main.content.decode("utf-8", "surrogateescape"), wanted)
        spec = FileSpec(sshd.MAIN, text.encode("utf-8", "surrogateescape"), main.mode or 0o644,
                        main.owner or "root", main.group or "root")
        state = main
    return file_change(spec, state), own, sshd.effective(r["effective"].stdout)


def _first(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "no output")[:200].rstrip(".")


def fresh_login(web: Host, attempts: int = 3) -> None:
    """Log in again on a new connection as the admin (and through sudo, if the admin uses it)."""
    for i in range(attempts):
        twin = web.twin()
        try:
            twin.check("true", what="a command on a fresh connection")
            return
        except HostError:
            if i == attempts - 1:
                raise
            time.sleep(0.3)
        finally:
            twin.close()


def reload(web: Host, pidfile: str) -> None:
    web.check(_RELOAD, pidfile, what="reloading sshd")


def _overridden(bad: list[str]) -> str:
    return (f"({'; '.join(bad)}): a setting read earlier wins (an earlier file in sshd_config.d, or a line "
            "above the Include in sshd_config); remove that, then run harden-sshd again")


def safe_apply(web: Host, change: FileChange, own: sshd.Settings, pidfile: str,
               put: Callable[[], None] | None = None) -> str:
    """Write ``change`` (or ``put`` it another way, e.g. a removal), check it, reload, prove a fresh
    login; put the old file back on any failure."""
    path = change.spec.path
    (put or (lambda: write(web, change)))()
    check = web.run(f"{SSHD} -t && {SSHD} -T")
    problem = None
    if not check.ok:
        problem = f"sshd -t rejects it: {_first(check.stderr or check.stdout)}"
    else:
        bad = sshd.mismatches(own, sshd.effective(check.stdout))
        if bad:
            problem = f"sshd would not use it {_overridden(bad)}"
    if problem:
        restore(web, change.state)
        raise HostError(f"{web.label}: {path}: {problem}; put back as it was, sshd not reloaded")
    reload(web, pidfile)
    try:
        fresh_login(web)
    except HostError as exc:
        restore(web, change.state)
        reload(web, pidfile)
        try:
            fresh_login(web)
        except HostError as again:
            raise HostError(
                f"{web.label}: a fresh login failed after the reload ({exc}), and still fails after putting "
                f"{path} back ({again}); keep your open sessions and check sshd by hand") from None
        raise HostError(f"{web.label}: a fresh login failed after the reload ({exc}); {path} was put back and "
                        "sshd reloaded: the admin can log in again") from None
    return "sshd -t ok, reloaded, a fresh login works"


def harden_one(session: Session, web: Host, dry_run: bool) -> Outcome:
    change, own, seen = plan(session, web)
    if change is None:
        bad = sshd.mismatches(own, seen)
        if bad:
            raise HostError(f"{web.label}: svrchain's settings are in place but sshd does not use them "
                            f"{_overridden(bad)}")
        return session.report(Outcome(web.name, "harden-sshd", "ok", "public keys only, in effect (sshd -T)"))
    detail = f"{change.spec.path} ({', '.join(change.reasons)})"
    if dry_run:
        return session.report(Outcome(web.name, "harden-sshd", "would change", detail, [change.diff()]),
                              show_diff=True)
    done = safe_apply(web, change, own, sshd.pidfile(seen))
    return session.report(Outcome(web.name, "harden-sshd", "changed", f"{detail}: {done}", [change.diff()]))


def harden_step(session: Session, dry_run: bool) -> None:
    """The first web server alone, then (if it went well) the others in parallel."""
    def one(web: Host) -> None:
        try:
            harden_one(session, web, dry_run)
        except HostError as exc:
            session.fail(web.name, "harden-sshd", exc)

    first, rest = session.webs[0], session.webs[1:]
    one(first)
    if any(o.failed for o in session.outcomes) and not dry_run:
        for web in rest:
            session.report(Outcome(web.name, "harden-sshd", "skipped", f"not tried: it failed on {first.name}"))
        return
    session.each(rest, one, step="harden-sshd")  # one reports its own errors as they happen


@on_hosts(lock=True)
def run_harden_sshd(s: Session, dry_run: bool = False) -> None:
    """What `fab harden-sshd` does (its flags and help: tasks/)."""
    s.prefetch(s.webs)
    harden_step(s, dry_run)
    s.finish("harden-sshd")
