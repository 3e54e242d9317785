"""Least privilege on the web servers: the trigger's own unprivileged account and its one sudo rule.

With ``web.user`` other than root, the DB server's key logs in as that account; its forced command,
the gate, restarts the web server through a sudo rule that allows exactly ``web.restart_command``
as root. push-key creates the account when it is missing (a system account with no password and
``/bin/sh`` as its shell, so sshd can run the forced command), writes the rule (checked with
``visudo -c`` before it takes effect) and gives the account the gate's state directory.
"""

from __future__ import annotations

import shlex

from tasks import render
from tasks.plan import FileSpec, FileState, Outcome
from tasks.remote import FILE_CMD, Host, HostError, Session

# Added to the web facts' probe (one round trip); $U is the web user.
PROBE = {
    "visudo": "command -v sudo && command -v visudo",
    "sudoers": f"F={render.SUDOERS}; " + FILE_CMD,
    "gecos": 'getent passwd "$U" | cut -d: -f5',
    "sudo_list": 'sudo -n -l -U "$U"',
    "statedir": f'stat -c "%a %U %G" {render.GATE_STATE} && find {render.GATE_STATE} '
                '\\( ! -user "$U" -o ! -group "$G" \\) -print | head -n 3',
}


def home_of(user: str) -> str:
    """The home push-key gives the account it creates."""
    return f"/var/lib/{user}"


def create_command(user: str) -> str:
    """A system account that can only be used with a key: no password ('*', which sshd, unlike
    '!', does not treat as a locked account), a shell to run the forced command with, its own group."""
    return (f"useradd --system --user-group --create-home --home-dir {shlex.quote(home_of(user))} "
            f"--shell /bin/sh --comment {shlex.quote(render.ACCOUNT_COMMENT)} -p '*' {shlex.quote(user)}")


def state_dir_command(user: str, group: str) -> str:
    """The gate's state directory, owned by the account (it keeps its lock and counters there)."""
    d, u = render.GATE_STATE, shlex.quote(user)
    return f"mkdir -p {d} && chown -R {u}:{shlex.quote(group)} {d} && chmod 750 {d}"


def sudoers_spec(session: Session) -> FileSpec:
    """The rule file: mode 440, and visudo must accept it before it is put in place."""
    return FileSpec(render.SUDOERS, render.sudoers(session.inv), 0o440, parent_mode=0o750,
                    validate='visudo -c -f "$1"')


def sudoers_state(web: Host, r: dict) -> FileState:
    return web.file_state(render.SUDOERS, r["sudoers"].code, r["sudoers"].raw)


def ensure_account(session: Session, web: Host, r: dict, dry_run: bool) -> bool:
    """Create the account when it is missing and give it the gate's state directory; report one
    "account" line. Return True when the account was created (the web facts are then stale)."""
    user = session.inv.web.user
    if not r["visudo"].ok:
        raise HostError(
            f"{web.label}: sudo is not installed, and web.user {user!r} restarts the web server through "
            f"a sudo rule; install sudo (apt-get/yum install sudo) or set web.user: root in {session.inv.source}"
        )
    create = not r["account"].ok
    group = user if create else r["account"].stdout.split()[1]
    fix_state = state_dir_fix(user, group, r, create)
    commands = ([create_command(user)] if create else []) + fix_state
    if not commands:
        session.report(Outcome(web.name, "account", "ok", f"{user}, sudo rule only for the restart command"))
        return False
    what = ", ".join(
        ([f"create {user} (system account, no password, shell /bin/sh, home {home_of(user)})"] if create else [])
        + ([f"give {render.GATE_STATE} to {user}"] if fix_state else []))
    if dry_run:
        session.report(Outcome(web.name, "account", "would change", what))
        return False
    for cmd in commands:
        web.check(cmd, what=what)
    session.forget(web)
    session.report(Outcome(web.name, "account", "changed", what))
    return create


def state_dir_fix(user: str, group: str, r: dict, created: bool) -> list[str]:
    """The command that gives the gate's state directory to the account, when it does not have it."""
    lines = r["statedir"].stdout.split("\n")
    if not created and r["statedir"].ok and lines[0].split() == ["750", user, group] and not "".join(lines[1:]).strip():
        return []
    return [state_dir_command(user, group)]


def sudo_rules(listing: str) -> list[str]:
    """The commands ``sudo -l -U <user>`` says the user may run (lines like ``(root) NOPASSWD: /x y``)."""
    return [ln.strip() for ln in listing.splitlines() if ln.startswith("    (")]


def sudo_check(session: Session, r: dict) -> tuple[bool, str]:
    """Whether the account may run exactly the restart command through sudo, and nothing else."""
    user = session.inv.web.user
    want = render.sudo_command(session.inv)
    rules = sudo_rules(r["sudo_list"].stdout)
    if rules == [f"(root) NOPASSWD: {want}"]:
        return True, f"{user} may run only '{want}' as root"
    if not rules:
        return False, f"{user} may not run the restart command through sudo (is {render.SUDOERS} included?)"
    return False, f"{user} may run: {'; '.join(rules)[:200]} (want only '(root) NOPASSWD: {want}')"
