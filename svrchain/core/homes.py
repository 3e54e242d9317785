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
from typing import TYPE_CHECKING

from svrchain.core import authkeys
from svrchain.core.errors import HostError
from svrchain.core.plan import FileSpec, FileState, Result

if TYPE_CHECKING:  # (the web facts are read with this module's SCAN)
    from svrchain.facts.web import WebFacts

# Every account's authorized_keys files where sshd reads them (``sshd -T``'s AuthorizedKeysFile, its
# %h %u %U %% tokens expanded, relative paths in the home), each read as the account itself, as sshd
# does: its type checked before it is opened (a FIFO, device or socket is never opened), at most
# $MAXB bytes, in bounded time. "P<TAB>patterns" and "C<TAB>AuthorizedKeysCommand" first; then
# "F<TAB>user<TAB>path" and "L<TAB>line" for each line read ("N<TAB>note" for a link), or
# "X<TAB>user<TAB>path" and "N<TAB>why" for a file that is there but was not read. Needs ufile's helpers.
SCAN = r"""set -f
command -v awk >/dev/null || { echo "awk is missing: the accounts' authorized_keys cannot be located"; exit 3; }
T=$("$(command -v sshd || echo /usr/sbin/sshd)" -T 2>/dev/null)
P=$(printf '%s\n' "$T" | sed -n 's/^authorizedkeysfile //p')
[ -n "$P" ] || P=".ssh/authorized_keys .ssh/authorized_keys2"
printf 'P\t%s\nC\t%s\n' "$P" "$(printf '%s\n' "$T" | sed -n 's/^authorizedkeyscommand //p')"
# Every account's files, expanded in one awk for all accounts (two lines each: the account, the path):
# not one awk per account and pattern (about 50 processes on a plain Debian host, 0.14 s per host).
getent passwd | P=$P awk -F: 'BEGIN { n = split(ENVIRON["P"], pats, " ") }
    substr($6, 1, 1) == "/" { for (j = 1; j <= n; j++) { p = pats[j]; if (p == "none") continue; o = ""
        while ((i = index(p, "%")) > 0) {
            c = substr(p, i + 1, 1); o = o substr(p, 1, i - 1); p = substr(p, i + 2)
            if (c == "h") o = o $6; else if (c == "u") o = o $1
            else if (c == "U") o = o $3; else o = o "%" c
        }
        o = o p; if (substr(o, 1, 1) != "/") o = $6 "/" o; print $1; print o } }' |
while IFS= read -r u && IFS= read -r f; do
    { [ -e "$f" ] || [ -L "$f" ]; } && as "$u" test -e "$f" 2>/dev/null || continue
    why=$(uregular "$u" "$f") || { printf 'X\t%s\t%s\nN\t%s\n' "$u" "$f" "$why"; continue; }
    as "$u" test -r "$f" || continue
    if ! uread "$u" "$f" >"$d/scan.k" 2>/dev/null; then
        printf 'X\t%s\t%s\nN\t%s\n' "$u" "$f" "could not be read within 10 s"; continue
    fi
    printf 'F\t%s\t%s\n' "$u" "$f"
    [ ! -L "$f" ] || printf 'N\ta symbolic link\n'
    sed 's/^/L\t/' -- "$d/scan.k"
    echo
done
rm -f -- "$d/scan.k"
"""


@dataclass(frozen=True)
class KeysFile:
    """One account's authorized_keys file, as the account itself read it (``unread``: why it was not)."""

    user: str
    path: str
    lines: tuple[str, ...]
    note: str = ""  # "a symbolic link": sshd follows it, and so did the read (as the account)
    unread: str = ""


def parse_scan(text: str) -> list[KeysFile]:
    """The files SCAN printed (each path once)."""
    files: list[KeysFile] = []
    current: list | None = None  # [user, path, lines, note, unread?]
    for raw in text.split("\n"):
        tag, _, rest = raw.partition("\t")
        if tag in ("F", "X"):
            if current:
                files.append(_keys_file(current))
            user, _, path = rest.partition("\t")
            current = [user, path, [], "", tag == "X"]
        elif tag == "L" and current and not current[4]:
            current[2].append(rest.rstrip("\r"))
        elif tag == "N" and current:
            current[3] = rest
    if current:
        files.append(_keys_file(current))
    seen: set[str] = set()
    return [f for f in files if not (f.path in seen or seen.add(f.path))]


def _keys_file(c: list) -> KeysFile:
    user, path, lines, note, unread = c
    return KeysFile(user, path, tuple(lines), "" if unread else note, note or "not read" if unread else "")


def scan_settings(text: str) -> tuple[str, str]:
    """(AuthorizedKeysFile, AuthorizedKeysCommand) as SCAN found them in ``sshd -T`` ('' when none)."""
    found = {"P": "", "C": ""}
    for raw in text.split("\n"):
        tag, _, rest = raw.partition("\t")
        if tag in found and not found[tag]:
            found[tag] = rest.strip()
    return found["P"], "" if found["C"] == "none" else found["C"]


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
    """A line that is not svrchain's whose key is held on the DB server (or that looks like one)."""

    user: str
    path: str
    number: int  # 1-based line number
    line: str
    reason: str
    note: str = ""  # "a symbolic link" when the file is one

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
        note = f", {self.note}" if self.note else ""
        return f"{self.path}:{self.number} ({self.user}{note}, key {self.fingerprint}) {self.reason}"


@dataclass(frozen=True)
class Bypasses:
    """The lines on a web server that the DB server's keys open, other than svrchain's own line.

    ``proved``: the key is held on the DB server (what ``--adopt`` retires); ``own``: the admin's own
    key, held there too (never retired: reported loudly); ``unproved``: lines that look like one (a
    forced command naming the restart program, a ``from=`` admitting the DB) but whose key was not
    found there (kept, reported); ``unread``: files sshd reads that could not be inspected.
    """

    proved: list[Legacy]
    own: list[Legacy]
    unproved: list[Legacy]
    unread: list[KeysFile]


def bypasses(facts: WebFacts, ours: tuple[str | None, str], held: dict[str, str], own: frozenset[str],
             shape: tuple[str, list[str]], db_name: str) -> Bypasses:
    """Sort every line, in every account, that is not svrchain's (``ours``: its key's blob and marker):
    by whether its key is in ``held`` ({blob: where on the DB server}) and the admin's ``own`` keys;
    ``shape`` (restart program, DB addresses) only describes a line, it never proves one."""
    out = Bypasses([], [], [], [f for f in facts.files if f.unread])
    for f in facts.files:
        for n, line in enumerate(f.lines, 1):
            blob = authkeys.line_blob(line)
            if blob is None or authkeys.is_ours(line, ours[0] or "", ours[1]):
                continue
            looks = authkeys.legacy_reason(line, *shape)
            if blob in held:
                why = f"its key is held on {db_name} ({held[blob]})" + (f", {looks}" if looks else "")
                group = out.own if blob in own else out.proved
                group.append(Legacy(f.user, f.path, n, line, why, f.note))
            elif looks and blob not in own:
                out.unproved.append(Legacy(f.user, f.path, n, line, f"{looks}; its key was not found on {db_name}",
                                           f.note))
    return out


def unread_where(files: list[KeysFile]) -> str:
    """The files that could not be inspected, and why."""
    return "; ".join(f"{f.path} ({f.user}) not inspected: {f.unread}" for f in files)


# The public keys held on the DB server: every account's ~/.ssh and /etc/svrchain, each file read as its
# account (root for /etc/svrchain), links never followed, regular files of at most $MAXB bytes only,
# each read bounded in time: "K<TAB>path<TAB>public key" for a .pub or a private key without passphrase
# (its public half derived there: no private key leaves the host), "U<TAB>path<TAB>why" for a file that
# could not tell. At most 200 files a directory. Needs ufile's helpers.
HELD_SCAN = r"""held() {
    case ${2##*/} in authorized_keys*|known_hosts*|config|environment|rc) return ;; esac
    [ ! -L "$2" ] || { printf 'U\t%s\t%s\n' "$2" "a symbolic link: not followed"; return; }
    why=$(uregular "$1" "$2") || { printf 'U\t%s\t%s\n' "$2" "$why"; return; }
    case $2 in
    *.pub) k=$(uread "$1" "$2" | head -n 1) ;;
    *) as "$1" timeout 10 head -c 64 -- "$2" 2>/dev/null | grep -q 'PRIVATE KEY' || return
       k=$(as "$1" sh -c 'timeout 10 head -c 1048576 -- "$1" | timeout 10 ssh-keygen -y -P "" -f /proc/self/fd/0' \
           held "$2" 2>/dev/null) ||
       { [ -e "$2.pub" ] || printf 'U\t%s\t%s\n' "$2" "a private key with a passphrase and no .pub"; return; } ;;
    esac
    printf 'K\t%s\t%s\n' "$2" "$k"
}
heldir() {
    n=0
    for f in "$2"/* "$2"/.[!.]*; do
        [ -e "$f" ] || [ -L "$f" ] || continue
        n=$((n + 1)); [ $n -le 200 ] || { printf 'U\t%s\t%s\n' "$2" "more than 200 files: the rest not read"; break; }
        held "$1" "$f"
    done
}
getent passwd | while IFS=: read -r u _ _ _ _ h _; do
    case $h in /*) ;; *) continue ;; esac
    [ -d "$h/.ssh" ] && [ ! -L "$h/.ssh" ] && heldir "$u" "$h/.ssh"
done
[ -d /etc/svrchain ] && [ ! -L /etc/svrchain ] && heldir root /etc/svrchain
true"""


@dataclass(frozen=True)
class HeldKeys:
    """The public keys held on the DB server ({blob: first path}), and the files that could not tell."""

    keys: dict[str, str]
    unread: list[str]


def parse_held(text: str) -> HeldKeys:
    """HELD_SCAN's output as keys by blob (a private key's path preferred to its .pub's)."""
    keys: dict[str, str] = {}
    unread: list[str] = []
    for raw in text.splitlines():
        tag, _, rest = raw.partition("\t")
        path, _, value = rest.partition("\t")
        if tag == "U":
            unread.append(f"{path}: {value}")
        elif tag == "K":
            blob = authkeys.line_blob(value)
            if blob and (blob not in keys or (keys[blob].endswith(".pub") and not path.endswith(".pub"))):
                keys[blob] = path
    return HeldKeys(keys, unread)
