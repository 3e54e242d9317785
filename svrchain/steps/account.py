"""Least privilege on the web servers: the trigger's own unprivileged account and its one sudo rule.

With ``web.user`` other than root, the DB server's key logs in as that account; its forced command,
the gate, restarts the web server through a sudo rule that allows exactly ``web.restart_command``
as root. push-key creates the account when it is missing (a system account with no password and
``/bin/sh`` as its shell, so sshd can run the forced command), writes the rule (checked with
``visudo -c`` before it takes effect) and gives the account the gate's state directory.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from svrchain.core import authkeys, homes, render
from svrchain.core.errors import HostError
from svrchain.core.homes import KeysFile
from svrchain.core.plan import FileChange, FileState, Outcome, file_change
from svrchain.facts.web import WebFacts, home_of
from svrchain.remote.connection import Host
from svrchain.remote.files import file_state, probe
from svrchain.remote.group import Session

# The gate's state directory for $U (group $G): root-owned parents (755) with nothing but the
# per-account directories in them, and the account's own directory (700) with nothing of anyone
# else's in it; a directory that does not meet that is made afresh (its counters only cost a restart).
_STATE_DIR_SCRIPT = r"""
D="$R/$U"
for d in "$P" "$R"; do
    if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then
        echo "$d is not a directory; move it away and run push-key again" >&2
        exit 1
    fi
    mkdir -p "$d" && chown root:root "$d" && chmod 755 "$d" || exit 1
done
find "$R" -mindepth 1 -maxdepth 1 ! -type d -delete || exit 1
if [ -L "$D" ] || { [ -e "$D" ] && { [ ! -d "$D" ] || [ "$(stat -c %U "$D")" != "$U" ] ||
        [ -n "$(find "$D" -mindepth 1 \( ! -user "$U" -o -type l \) -print -quit)" ]; }; }; then
    rm -rf -- "$D" || exit 1
fi
install -d -o "$U" -g "$G" -m 700 "$D"
"""


def create_command(user: str) -> str:
    """A system account that can only be used with a key: no password ('*', which sshd, unlike
    '!', does not treat as a locked account), a shell to run the forced command with, its own group."""
    return (f"useradd --system --user-group --create-home --home-dir {shlex.quote(home_of(user))} "
            f"--shell /bin/sh --comment {shlex.quote(render.ACCOUNT_COMMENT)} -p '*' {shlex.quote(user)}")


def state_dir_command(user: str, group: str) -> str:
    """Give the account its own gate state directory (it keeps its lock and counters there)."""
    return (f"P={render.STATE_PARENT} R={render.GATE_STATE} U={shlex.quote(user)} G={shlex.quote(group)} "
            f"sh -c {shlex.quote(_STATE_DIR_SCRIPT)}")


def ensure_account(session: Session, web: Host, f: WebFacts, dry_run: bool) -> bool:
    """Create the account (a web.user other than root) when it is missing, and give web.user, root
    too, its own gate state directory; report one "account" line. Return True when the account was
    created (the web facts are then stale)."""
    user, dedicated = session.inv.web.user, session.inv.web.dedicated
    if dedicated and not f.sudo:
        raise HostError(
            f"{web.label}: sudo is not installed, and web.user {user!r} restarts the web server through "
            f"a sudo rule; install sudo (apt-get/yum install sudo) or set web.user: root in {session.inv.source}"
        )
    create = dedicated and not f.account
    group = user if create else f.group
    fix_state = state_dir_fix(user, group, f.statedir, create)
    commands = ([create_command(user)] if create else []) + fix_state
    if not commands:
        session.report(Outcome(web.name, "account", "ok", f"{user}, sudo rule only for the restart command"
                               if dedicated else f"{user}, gate state in {render.gate_state_dir(user)}"))
        return False
    what = ", ".join(
        ([f"create {user} (system account, no password, shell /bin/sh, home {home_of(user)})"] if create else [])
        + ([f"give {render.gate_state_dir(user)} to {user}"] if fix_state else []))
    if dry_run:
        session.report(Outcome(web.name, "account", "would change", what))
        return False
    for cmd in commands:
        web.check(cmd, what=what)
    session.forget(web)
    session.report(Outcome(web.name, "account", "changed", what))
    return create


def state_dir_fix(user: str, group: str, found: str, created: bool) -> list[str]:
    """The command that gives the account its gate state directory, when it does not have it
    (``found``: the web facts' statedir)."""
    want = f"directory 755 root root\ndirectory 755 root root\ndirectory 700 {user} {group}"
    if not created and found == want:
        return []
    return [state_dir_command(user, group)]


def sudo_check(session: Session, f: WebFacts) -> tuple[bool, str]:
    """Whether the account may run exactly the restart command through sudo, and nothing else."""
    user = session.inv.web.user
    want = render.sudo_command(session.inv)
    rules = f.sudo_rules
    if rules == (f"(root) NOPASSWD: {want}",):
        return True, f"{user} may run only '{want}' as root"
    if not rules:
        return False, f"{user} may not run the restart command through sudo (is {render.SUDOERS} included?)"
    return False, f"{user} may run: {'; '.join(rules)[:200]} (want only '(root) NOPASSWD: {want}')"


# --- editing accounts' authorized_keys, each as its own account -----------------------------


def read_files(web: Host, files: list[KeysFile]) -> dict[str, FileState]:
    """The exact bytes of some accounts' authorized_keys, each read as its account (one round trip)."""
    commands = {f.path: f"U={shlex.quote(f.user)}; F={shlex.quote(f.path)}; ufile \"$U\" \"$F\"" for f in files}
    _, r = probe(web, commands=commands)
    states = {path: file_state(web.label, path, res.code, res.raw) for path, res in r.items()}
    for path, state in states.items():
        if state.unsafe:
            raise HostError(f"{web.label}: {path} {state.unsafe}; svrchain will not touch it: check who made "
                            "it and why, remove it, then run again")
    return states


def without_lines(web: Host, files: list[KeysFile], drop: Callable[[str, str], bool]) -> list[FileChange]:
    """The edits that take out of ``files`` each line for which ``drop(path, line)`` holds (every
    other byte kept), each file read and written as its own account."""
    states = read_files(web, files) if files else {}
    changes = []
    for kf in files:
        state = states[kf.path]
        text = state.content.decode("utf-8", "surrogateescape")
        kept = "".join(ln for ln in text.splitlines(keepends=True) if not drop(kf.path, ln))
        change = file_change(homes.spec(state, kf.user, state.group or kf.user, kept), state)
        if change is not None:
            changes.append(change)
    return changes


def without_ours(web: Host, files: list[KeysFile], blob: str | None, marker: str) -> list[FileChange]:
    """The edits that take svrchain's lines out of ``files``, each written as its own account."""
    return without_lines(web, files, lambda _path, line: authkeys.is_ours(line, blob or "", marker))
