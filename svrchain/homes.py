"""authorized_keys in the accounts' homes, handled without ever acting as root through them.

A home belongs to its account, which may be hostile (it is the web application's, or the one the
restricted key logs in to). So every file in a home is read and written as that account itself
(``setpriv``), never through a symbolic link, and never when another account owns it: nothing the
account plants can make root read, write, chown or chmod anything else. This module finds svrchain's
lines in every account (a line left in an account that is no longer ``web.user`` must go) and the
lines a hand-made setup left that restart the web server around the gate (see ``adopt``).
"""

from __future__ import annotations

from dataclasses import dataclass

from svrchain import authkeys
from svrchain.errors import HostError
from svrchain.plan import FileSpec, FileState, Result

# Every account's authorized_keys files, read as the account (no link followed, none another
# account owns): "F<TAB>user<TAB>path", then "L<TAB>line" for each of its lines.
SCAN = r"""getent passwd | while IFS=: read -r u _ _ _ _ h _; do
    case $h in /*) ;; *) continue ;; esac
    for f in "$h/.ssh/authorized_keys" "$h/.ssh/authorized_keys2"; do
        upath "$u" "$f" >/dev/null 2>&1 || continue
        printf 'F\t%s\t%s\n' "$u" "$f"
        as "$u" sed 's/^/L\t/' -- "$f" 2>/dev/null
        echo
    done
done"""


@dataclass(frozen=True)
class KeysFile:
    """One account's authorized_keys file, as the account itself read it."""

    user: str
    path: str
    lines: tuple[str, ...]


def parse_scan(text: str) -> list[KeysFile]:
    """The files SCAN printed (each path once)."""
    files: list[KeysFile] = []
    current: tuple[str, str] | None = None
    lines: list[str] = []
    for raw in text.split("\n"):
        tag, _, rest = raw.partition("\t")
        if tag == "F":
            if current:
                files.append(KeysFile(*current, tuple(lines)))
            user, _, path = rest.partition("\t")
            current, lines = (user, path), []
        elif tag == "L" and current:
            lines.append(rest.rstrip("\r"))
    if current:
        files.append(KeysFile(*current, tuple(lines)))
    seen: set[str] = set()
    return [f for f in files if not (f.path in seen or seen.add(f.path))]


@dataclass(frozen=True)
class WebFacts:
    """What push-key, verify, rotate-key and uninstall know of a web server's accounts."""

    user: str
    home: str
    group: str
    keys: FileState  # web.user's authorized_keys, read as web.user
    sshdir: str  # "<mode> <owner>" of web.user's ~/.ssh, '' when missing
    unsafe: str | None  # why svrchain will not touch web.user's home (a link, a foreign owner)
    files: tuple[KeysFile, ...]  # every account's authorized_keys
    gate: FileState  # the gate script
    sudoers: FileState  # the sudo rule svrchain writes for a dedicated web.user
    r: dict[str, Result]


def unsafe_reason(user: str, home: str, home_owner: str, sshdir: Result, keys: FileState) -> str | None:
    """Why web.user's ~/.ssh cannot be touched safely: a link or another account on the way."""
    if home_owner not in ("", user, "root"):
        return f"{home} is owned by {home_owner}, not {user} or root"
    if sshdir.code == 45:
        return f"{home}/.ssh {sshdir.stdout.strip()}"
    if keys.unsafe:
        return f"{keys.path} {keys.unsafe}"
    return None


def refusal(label: str, facts: WebFacts) -> HostError:
    """The one line that says push-key will not act in ``label``'s web.user's home, and what to do."""
    return HostError(
        f"{label}: {facts.unsafe}; svrchain never follows a link or acts through another account's "
        f"file in {facts.user}'s home (it could make root touch a file the account must not reach): check who "
        "made it and why, remove it, then run push-key again"
    )


def spec(state: FileState, user: str, group: str, text: str) -> FileSpec:
    """authorized_keys with ``text``, written as ``user`` (who owns it), .ssh made 700 if missing."""
    return FileSpec(state.path, text.encode("utf-8", "surrogateescape"), 0o600, owner=user, group=group,
                    parent_mode=0o700, runas=user)


def stale(facts: WebFacts, blob: str | None, marker: str, keep_user: str | None) -> list[KeysFile]:
    """Files of accounts other than ``keep_user`` holding a line of svrchain's (by key or marker)."""
    return [f for f in facts.files if f.user != keep_user
            and any(authkeys.is_ours(line, blob or "", marker) for line in f.lines)]


@dataclass(frozen=True)
class Legacy:
    """A line that is not svrchain's but lets the DB server restart the web server around the gate."""

    user: str
    path: str
    number: int  # 1-based line number
    line: str
    reason: str

    @property
    def blob(self) -> str:
        return authkeys.line_blob(self.line) or ""

    @property
    def fingerprint(self) -> str:
        try:
            return authkeys.PublicKey("", self.blob).fingerprint
        except ValueError:  # binascii.Error: a damaged blob
            return "(damaged key)"

    def where(self) -> str:
        return f"{self.path}:{self.number} ({self.user}, key {self.fingerprint}) {self.reason}"


def legacy(facts: WebFacts, blob: str | None, marker: str, program: str, db_addresses: list[str]) -> list[Legacy]:
    """Every line, in every account, that is not svrchain's and can restart the web server from the
    DB server outside the gate (its forced command runs the restart program, or it admits the DB's
    address)."""
    found = []
    for f in facts.files:
        for n, line in enumerate(f.lines, 1):
            if authkeys.is_ours(line, blob or "", marker):
                continue
            why = authkeys.legacy_reason(line, program, db_addresses)
            if why:
                found.append(Legacy(f.user, f.path, n, line, why))
    return found
