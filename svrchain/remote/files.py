"""A host's files: read (with any command's output) in one round trip, written atomically, removed,
restored; every old file kept in the backup directory first.

The scripts here run on the host as root over the host's one connection. Turning the probe's output
into typed values (:func:`probe_script`, :func:`parse_probe`) is pure.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from collections.abc import Iterable

from svrchain.core import selinux
from svrchain.core.errors import HostError
from svrchain.core.plan import FileChange, FileSpec, FileState, Result
from svrchain.facts import file_state
from svrchain.remote.connection import Host

BACKUP_DIR = "/var/backups/svrchain"

# Run a command as an account (never as root through a path that account controls). Its group is
# looked up once for calls in a row as the same account (a file in a home is read in four or five
# steps as its account; each step looked the group up with a process of its own).
_AS = r"""
as() {
    u=$1; shift
    if [ "$u" = root ]; then "$@"; return; fi
    [ "$u" = "${AS_USER-}" ] || { AS_GID=$(id -g -- "$u") || return; AS_USER=$u; }
    setpriv --reuid="$u" --regid="$AS_GID" --init-groups -- "$@"
}
AS_USER=  # never a group from the environment the script was started with
"""


# The atomic write, run on the host with the content on stdin: temp file in the same directory,
# checksum checked (a cut connection never yields a half-written file), owner and mode set, the
# content validated when the spec says how, a backup of the old file kept, then one rename.
# With an account ($8), the file is in that account's home: a symbolic link or another owner on the
# way is refused before anything changes, and every step that touches the home runs as the account
# itself, so nothing the account plants (a link, a swapped temp file) can make root act elsewhere.
WRITE_SCRIPT = _AS + r"""
set -eu
f=$1; mode=$2; owner=$3; sum=$4; backups=$5; pmode=$6; validate=${7:--}; runas=${8:--}
d=$(dirname -- "$f")
if [ "$runas" = - ]; then
    run() { "$@"; }
else
    run() { as "$runas" "$@"; }
    for p in "$d" "$f"; do
        if [ -L "$p" ]; then
            echo "$p is a symbolic link; svrchain never follows links in $runas's home:" \
                "remove it (after checking who made it and why), then run again" >&2
            exit 6
        fi
        o=$(stat -c %U -- "$p" 2>/dev/null) || continue
        if [ "$o" != "$runas" ]; then
            echo "$p is owned by $o, not $runas; svrchain acts in $runas's home only as $runas:" \
                "give it back to $runas (after checking why), then run again" >&2
            exit 6
        fi
    done
    if [ -e "$f" ] && ! run test -f "$f"; then
        echo "$f is not a regular file (a FIFO, device or socket?); svrchain never opens one in $runas's" \
            "home: remove it (after checking who made it and why), then run again" >&2
        exit 6
    fi
fi
made=
if [ ! -d "$d" ]; then
    [ "$pmode" != - ] || { echo "directory $d does not exist" >&2; exit 3; }
    made=$d
    if [ "$runas" = - ]; then
        mkdir -p -m "$pmode" -- "$d"
        chown -h "$owner" "$d"
    elif ! out=$(run mkdir -m "$pmode" -- "$d" 2>&1); then
        echo "$runas cannot create $d ($out); create it owned by $runas, mode $pmode" >&2
        exit 3
    fi
fi
tmp=$(run mktemp "$d/.svrchain.XXXXXX")
trap 'run rm -f -- "$tmp"' EXIT
run sh -c 'cat >"$1"' svrchain "$tmp"
got=$(run sha256sum -- "$tmp" | cut -d' ' -f1)
if [ "$got" != "$sum" ]; then
    echo "the file arrived incomplete (checksum differs); $f was left as it was" >&2
    exit 4
fi
[ "$runas" != - ] || chown -h "$owner" "$tmp"
run chmod "$mode" -- "$tmp"
if [ "$validate" != - ] && ! out=$(sh -c "$validate" validate "$tmp" 2>&1); then
    echo "the new content was rejected ($(echo "$out" | sed -n '/[^[:space:]]/{p;q}')); $f was left as it was" >&2
    exit 5
fi
sync "$tmp" 2>/dev/null || sync
if [ -e "$f" ]; then
    mkdir -p -m 700 "$backups"
    b="$backups/$(echo "$f" | tr / %).$(date +%Y%m%dT%H%M%S.%N)"
    if [ "$runas" = - ]; then cp -p -- "$f" "$b"; else (umask 077; run timeout 10 cat -- "$f" >"$b"); fi
fi
run mv -f -- "$tmp" "$f"
trap - EXIT
""" + selinux.RESTORECON

# Remove files, keeping a copy of each in the backup directory first.
_REMOVE = r"""
set -eu
backups=$1; shift
for f; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    mkdir -p -m 700 "$backups"
    cp -pP -- "$f" "$backups/$(echo "$f" | tr / %).$(date +%Y%m%dT%H%M%S.%N)"
    rm -f -- "$f"
done
"""

# Facts: every section runs in a subshell of one shell (no exec of its own) and leaves its output
# and exit code in a temp directory, sent back as one tar stream: one round trip, any bytes. The
# sections run at once (the DB host's 42 one after another took about 0.25 s of an idle lab's no-op),
# but those that look at other processes' command lines (``first``) run before, one after another:
# with the others running they could see a sibling section's command, as a look-alike of the DB.
_PROBE_HEAD = _AS + r"""
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
sec() { ( eval "$2" ) >"$d/$1" 2>&1; echo $? >"$d/$1.rc"; }
file() { if [ -f "$1" ]; then stat -c '%a %U %G' -- "$1" && cat -- "$1"; else return 44; fi; }
# A file or directory in account $1's home ($2): never through a link, never one another account
# owns; the file is read as the account itself. Exit 45 (with the reason) when it is unsafe.
upath() {
    [ -L "$2" ] && { echo "is a symbolic link"; return 45; }
    [ -e "$2" ] || return 44
    o=$(stat -c %U -- "$2") && [ "$o" = "$1" ] || { echo "is owned by $o, not $1"; return 45; }
}
# The file must be a regular one of at most $MAXB bytes, its type checked as the account before it is
# opened (opening a FIFO blocks), and the read is bounded in bytes and time (it may be swapped meanwhile).
ufile() { upath "$@" || return; uregular "$1" "$2" || return; stat -c '%a %U %G' -- "$2" && uread "$1" "$2"; }
MAXB=1048576
uregular() {
    as "$1" test -f "$2" || { echo "is not a regular file (a FIFO, device or socket?)"; return 45; }
    [ "$(as "$1" stat -L -c %s -- "$2")" -le $MAXB ] || { echo "is larger than 1 MiB"; return 45; }
}
uread() { as "$1" timeout 10 head -c $MAXB -- "$2"; }
"""
_PROBE_TAIL = 'cd "$d" && tar cf - .'

# FILE_CMD and UFILE_CMD (svrchain.facts) read a file as a probe command with the helpers above.


def probe_script(files: list[str], commands: list[str], prelude: str = "", first: Iterable[int] = ()) -> str:
    """The probe: one script that reads ``files`` (sections f0, f1, ...) and runs ``commands``
    (sections c0, c1, ...), each section's output and exit code sent back in one tar stream. The
    commands numbered in ``first`` run one after another before the rest, which run at once."""
    alone = set(first)
    parts = [_PROBE_HEAD, prelude]
    parts += [f"sec c{i} {shlex.quote(commands[i])}" for i in sorted(alone)]
    parts += [f"sec f{i} {shlex.quote('file ' + shlex.quote(path))} &" for i, path in enumerate(files)]
    parts += [f"sec c{i} {shlex.quote(cmd)} &" for i, cmd in enumerate(commands) if i not in alone]
    return "\n".join([*parts, "wait", _PROBE_TAIL])


def sections(raw: bytes) -> dict[str, tuple[int, bytes]]:
    """The probe's tar stream as section name -> (exit code, output); raises ``tarfile.TarError``
    when it is not a tar stream."""
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        found = {m.name.removeprefix("./"): tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
        data = {name: f.read() for name, f in found.items() if f is not None}
    return {name: (int(data.get(name + ".rc", b"1").strip() or 1), content)
            for name, content in data.items() if not name.endswith(".rc")}


def parse_probe(label: str, r: Result, files: list[str], commands: list[str]
                ) -> tuple[dict[str, FileState], dict[str, Result]]:
    """The probe's result (``r``, for ``files`` and the ``commands`` by name) as typed values."""
    try:
        found = sections(r.raw)
    except tarfile.TarError:
        raise HostError(f"{label}: reading the host's state failed: {r.stderr.strip()[:200]}") from None
    states = {path: file_state(label, path, *found.get(f"f{i}", (1, b""))) for i, path in enumerate(files)}
    results: dict[str, Result] = {}
    for i, name in enumerate(commands):
        rc, raw = found.get(f"c{i}", (1, b""))
        results[name] = Result(rc, raw.decode("utf-8", "replace"), "", raw)
    return states, results


def probe(host: Host, files: Iterable[str] = (), commands: dict[str, str] | None = None, prelude: str = "",
          stdin: bytes = b"", first: Iterable[str] = ()) -> tuple[dict[str, FileState], dict[str, Result]]:
    """Read files and run read-only commands in one round trip (``prelude`` sets shell variables
    the commands share, and may read ``stdin``: a secret never goes on a command line; the commands
    named in ``first`` run alone, before the others, which run at once; a command given under two
    names runs once, and both get its result)."""
    files = list(files)
    commands = commands or {}
    # A command that several facts ask for (the watcher's state: verify's and install's) runs once.
    texts = list(dict.fromkeys(commands.values()))
    alone = {texts.index(commands[name]) for name in first if name in commands}
    r = host.run(probe_script(files, texts, prelude, sorted(alone)), stdin=stdin)
    states, by_text = parse_probe(host.label, r, files, texts)
    return states, {name: by_text[text] for name, text in commands.items()}


def write(host: Host, change: FileChange) -> None:
    """Write one file atomically (temp + checksum + rename), keeping a backup of the old one."""
    spec = change.spec
    parent = f"{spec.parent_mode:o}" if spec.parent_mode else "-"
    host.check(WRITE_SCRIPT, spec.path, f"{spec.mode:o}", f"{spec.owner}:{spec.group}", spec.sha256,
               BACKUP_DIR, parent, spec.validate or "-", spec.runas or "-", stdin=spec.content,
               what=f"writing {spec.path}")


def remove(host: Host, *paths: str) -> None:
    """Remove files (a copy of each kept in the backup directory)."""
    host.check(_REMOVE, BACKUP_DIR, *paths, what=f"removing {', '.join(paths)}")


def restore(host: Host, state: FileState) -> None:
    """Put a file back as ``state`` found it (or remove it if it did not exist)."""
    if state.exists:
        spec = FileSpec(state.path, state.content, state.mode or 0o644, state.owner or "root",
                        state.group or "root")
        write(host, FileChange(spec, state, ("restore",)))
    else:
        host.check('rm -f -- "$1"', state.path, what=f"removing {state.path}")
