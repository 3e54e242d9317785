"""harden-sshd's operation (pure): svrchain's settings in sshd's configuration, checked with
``sshd -t`` and ``sshd -T`` once written (sshd must accept them and use them, else the file is put
back and sshd is not reloaded), then sshd reloaded; and uninstall's, which takes them out the same way.
"""

from __future__ import annotations

import shlex

from svrchain.core import authkeys, sshd
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileChange, FileSpec, FileState, Result, file_change
from svrchain.facts.sshd import SSHD, SshdFacts
from svrchain.ops import Change, Command, removal

# Reload sshd (SIGHUP: it re-executes itself with the new settings; open sessions stay) and wait
# until it listens again on new sockets, so that the login tried next meets the new settings.
RELOAD = r"""
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

IN_EFFECT = "public keys only, in effect (sshd -T)"


def first_line(text: str) -> str:
    """The first line that says something, for a one-line error."""
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "no output")[:200].rstrip(".")


def overridden(bad: list[str]) -> str:
    """Why sshd does not use svrchain's settings, and the fix."""
    return (f"({'; '.join(bad)}): a setting read earlier wins (an earlier file in sshd_config.d, or a line "
            "above the Include in sshd_config); remove that, then run harden-sshd again")


def sshd_check(own: sshd.Settings) -> Command:
    """After writing: sshd must accept the configuration (``sshd -t``) and use svrchain's ``own``
    settings (``sshd -T``); else the file is put back and sshd is not reloaded."""
    def problem(check: Result) -> str | None:
        if not check.ok:
            return f"sshd -t rejects it: {first_line(check.stderr or check.stdout)}; put back as it was, " \
                   "sshd not reloaded"
        bad = sshd.mismatches(own, sshd.effective(check.stdout))
        if bad:
            return f"sshd would not use it {overridden(bad)}; put back as it was, sshd not reloaded"
        return None

    return Command(f"{SSHD} -t && {SSHD} -T", problem=problem)


def reload_command(pidfile: str) -> Command:
    """Reload sshd (the pid in ``pidfile``) and wait until it listens again (the proof's line says
    "reloaded")."""
    return Command(f"set -- {shlex.quote(pidfile)}\n{RELOAD}")


def guarded(change: FileChange | None, removes: FileState | None, own: sshd.Settings, pidfile: str,
            said: str = "") -> Change:
    """Write ``change`` (or remove the file ``removes``), check it, then reload sshd: one Change."""
    files = (change,) if change else ()
    first = (removal(removes),) if removes else ()
    return Change(files, (*first, sshd_check(own), reload_command(pidfile)), said=said)


def own_settings(inv: Inventory, f: SshdFacts, server_version: str, admin_is_root: bool) -> sshd.Settings:
    """svrchain's settings for this sshd (the inventory's extra lines not included)."""
    return sshd.settings(authkeys.openssh_version(server_version), admin_is_root, f.supported,
                         list(f.host_key_types), inv.harden.algorithms)


def harden(inv: Inventory, f: SshdFacts, server_version: str, admin_is_root: bool) -> Change:
    """harden-sshd on one web server: svrchain's settings (then the inventory's extra lines) in a
    drop-in where sshd_config includes one, else in a block of sshd_config; checked, then reloaded."""
    if not f.effective_ok:
        raise SvrchainError(f"sshd -T fails with the current settings ({first_line(f.effective_text)}); "
                            "fix sshd's configuration first")
    own = own_settings(inv, f, server_version, admin_is_root)
    wanted = own + sshd.extra_settings(inv.harden.extra)
    main = f.main
    if not main.exists:
        raise SvrchainError(f"{sshd.MAIN} does not exist; is this sshd configured elsewhere?")
    if sshd.includes_dropins(main.content.decode("utf-8", "surrogateescape")):
        spec, state = FileSpec(sshd.DROPIN, sshd.dropin(wanted), 0o644, parent_mode=0o755), f.dropin
    else:
        text = sshd.with_block(main.content.decode("utf-8", "surrogateescape"), wanted)
        spec = FileSpec(sshd.MAIN, text.encode("utf-8", "surrogateescape"), main.mode or 0o644,
                        main.owner or "root", main.group or "root")
        state = main
    change = file_change(spec, state)
    if change is None:
        bad = sshd.mismatches(own, f.effective)
        if bad:
            raise SvrchainError(f"svrchain's settings are in place but sshd does not use them {overridden(bad)}")
        return Change(noop=IN_EFFECT)
    return guarded(change, None, own, sshd.pidfile(f.effective))


def unharden(f: SshdFacts) -> Change:
    """uninstall --sshd: svrchain's drop-in removed, or its block taken out of sshd_config (every
    other byte kept); checked and reloaded as harden-sshd's own change is."""
    pidfile = sshd.pidfile(f.effective)
    if f.dropin.exists:
        return guarded(None, f.dropin, [], pidfile, f"remove {sshd.DROPIN}")
    main = f.main
    if main.exists and sshd.BEGIN.encode() in main.content:
        text = sshd.without_block(main.content.decode("utf-8", "surrogateescape"))
        spec = FileSpec(sshd.MAIN, text.encode("utf-8", "surrogateescape"), main.mode or 0o644,
                        main.owner or "root", main.group or "root")
        return guarded(file_change(spec, main), None, [], pidfile, f"remove svrchain's block from {sshd.MAIN}")
    return Change(noop="no svrchain setting in sshd's configuration")


def put_back(change: Change) -> list[FileState]:
    """The files as found before ``change``: what a failed proof puts back."""
    return [c.state for c in change.files] + [s for c in change.commands for s in c.removes]
