"""authorized_keys and known_hosts lines: parse, build and merge (pure logic, no I/O).

A key is identified by its blob (the base64 part), as OpenSSH and Ansible's authorized_key do.
Merging replaces svrchain's line in place, drops duplicates of it, and leaves every other line
byte for byte as it was.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import ipaddress
import re
from dataclasses import dataclass

from svrchain.core.errors import SvrchainError

KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss",
)
RESTRICT_SINCE = (7, 2)  # OpenSSH release that added the 'restrict' option
ED25519_SINCE = (6, 5)


class BadKey(SvrchainError):
    """A public key that cannot be used."""


@dataclass(frozen=True)
class PublicKey:
    """An OpenSSH public key: type, base64 blob and comment."""

    type: str
    blob: str
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint, as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def text(self) -> str:
        """``type blob [comment]``."""
        return " ".join(p for p in (self.type, self.blob, self.comment) if p)


def parse_public_key(text: str) -> PublicKey:
    """Parse a ``.pub`` file's single line; raise a clear error on anything else."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise BadKey(f"not an OpenSSH public key: {text.strip()[:60]!r}")
    _check_blob(parts[0], parts[1])
    return PublicKey(parts[0], parts[1], parts[2] if len(parts) > 2 else "")


def _check_blob(key_type: str, blob: str) -> None:
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(f"the key's base64 is damaged: {blob[:20]}...") from None
    n = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if raw[4 : 4 + n].decode("ascii", "replace") != key_type:
        raise BadKey(f"the key's blob does not match its type {key_type}")


def _split_options(line: str) -> tuple[str, str]:
    """Split an authorized_keys line into (options, rest): options end at unquoted white space."""
    quoted = False
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and quoted:
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch in " \t" and not quoted:
            return line[:i], line[i:].lstrip(" \t")
        i += 1
    return line, ""


def line_blob(line: str) -> str | None:
    """The key blob of one authorized_keys line, or None for comments, blanks and garbage."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    first = text.split(None, 1)[0]
    rest = text if first in KEY_TYPES else _split_options(text)[1]
    parts = rest.split(None, 2)
    if len(parts) >= 2 and parts[0] in KEY_TYPES:
        return parts[1]
    return None


def _split_commas(options: str) -> list[str]:
    """An options field split at the commas outside double quotes."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(options):
        ch = options[i]
        if ch == "\\" and quoted and i + 1 < len(options):
            current += options[i : i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    return [*parts, current]


def line_options(line: str) -> dict[str, str]:
    """The options of an authorized_keys line by lower-case name ('' for a flag such as no-pty),
    values without their quotes; {} for a line without options, a comment or a blank."""
    text = line.strip()
    if not text or text.startswith("#") or text.split(None, 1)[0] in KEY_TYPES:
        return {}
    out: dict[str, str] = {}
    for part in _split_commas(_split_options(text)[0]):
        name, _, value = part.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"')
        out[name.lower()] = value
    return out


def _networks(entries: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for e in entries:
        try:
            nets.append(ipaddress.ip_network(e, strict=False))
        except ValueError:
            continue
    return nets


def from_covers(pattern_list: str, addresses: list[str]) -> bool:
    """Whether a from="..." pattern list lets any of ``addresses`` (IPs or networks) in: an entry
    that is an address or network overlapping one of them, or a wildcard matching one of them."""
    wanted = _networks(addresses)
    for entry in pattern_list.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("!"):
            continue
        if any(ch in entry for ch in "*?"):
            if any(fnmatch.fnmatchcase(str(n.network_address), entry) for n in wanted):
                return True
            continue
        if any(n.overlaps(w) for n in _networks([entry]) for w in wanted if n.version == w.version):
            return True
    return False


def runs_program(command: str, program: str) -> bool:
    """Whether a forced command names ``program``: a word of it is the program's path or file name
    (``/etc/init.d/httpd restart``, ``sudo httpd -k graceful``, ``systemctl restart httpd``)."""
    name = program.rsplit("/", 1)[-1]
    return any(w == program or w.rsplit("/", 1)[-1] == name for w in re.split(r"[\s;&|'\"`()<>]+", command))


def legacy_reason(line: str, program: str, db_addresses: list[str]) -> str | None:
    """Why a line that is not svrchain's lets the DB server restart the web server around the gate
    (its forced command runs the restart program, or it admits the DB server's address); None if not."""
    if line_blob(line) is None:
        return None
    opts = line_options(line)
    reasons = []
    if "command" in opts and runs_program(opts["command"], program):
        reasons.append(f"runs '{opts['command']}'")
    if "from" in opts and from_covers(opts["from"], db_addresses):
        reasons.append("admits the DB server's address")
    return " and ".join(reasons) or None


def line_comment(line: str) -> str:
    """The comment of an authorized_keys line ('' when none)."""
    text = line.strip()
    first = text.split(None, 1)[0] if text else ""
    rest = text if first in KEY_TYPES else _split_options(text)[1]
    parts = rest.split(None, 2)
    return parts[2] if len(parts) == 3 else ""


def restricted_line(key: PublicKey, from_addresses: list[str], command: str,
                    restrict: bool, marker: str) -> str:
    """The one line that lets ``key`` run ``command`` from ``from_addresses``, and nothing else."""
    if any("," in a or " " in a or '"' in a for a in from_addresses):
        raise BadKey("from= entries must be single addresses without spaces or commas")
    if '"' in command or "\n" in command or "\\" in command:
        raise BadKey('the command must not contain double quotes, backslashes or newlines')
    options = [
        *(["restrict"] if restrict else []),
        f'from="{",".join(from_addresses)}"',
        "no-port-forwarding", "no-X11-forwarding", "no-agent-forwarding", "no-pty",
        f'command="{command}"',
    ]
    return f"{','.join(options)} {key.type} {key.blob} {marker}"


def lines(text: str) -> list[str]:
    """``text``'s lines as sshd reads them: each ends at a newline (kept), and only there; a carriage
    return, or another of Unicode's line breaks ``str.splitlines`` splits at, is part of its line."""
    parts = text.split("\n")
    whole = [part + "\n" for part in parts[:-1]]
    return [*whole, parts[-1]] if parts[-1] else whole


def merge_line(existing: str, line: str, blob: str, marker: str, keep: frozenset[str] = frozenset()) -> str:
    """Put ``line`` in ``existing``: in place of the first line with the same blob or marker.

    Other lines with that blob or marker (duplicates, an older key of ours) are dropped, except a key
    in ``keep`` (the old key while a rotation proves the new one); all other lines are kept byte for
    byte, in order. A new line goes last, or first when the file does not end with a newline.
    """
    out: list[str] = []
    placed = False
    for raw in lines(existing):
        if is_ours(raw, blob, marker) and line_blob(raw) not in keep:
            if not placed:
                ending = raw[len(raw.rstrip("\r\n")):] or "\n"
                out.append(line + ending)
                placed = True
            continue
        out.append(raw)
    if not placed:
        if out and not out[-1].endswith("\n"):
            out.insert(0, line + "\n")  # first, so that the last line stays byte for byte as it is
        else:
            out.append(line + "\n")
    return "".join(out)


def remove_lines(existing: str, blob: str, marker: str | None) -> str:
    """``existing`` without svrchain's line(s) (by blob, and by marker unless None); all other lines
    byte for byte."""
    return "".join(r for r in lines(existing) if not is_ours(r, blob, marker))


def is_ours(raw: str, blob: str, marker: str | None) -> bool:
    """Whether a line is svrchain's: the key's blob, or (unless None) svrchain's marker as comment."""
    line_b = line_blob(raw)
    if line_b is None:
        return False
    return line_b == blob or (marker is not None and line_comment(raw.rstrip("\r\n")) == marker)


# The comment svrchain gives each DB server's key and line (render.marker): svrchain:<trigger>@<DB server>.
MARKER_RE = re.compile(r"svrchain:\S+@\S+")


def without_markers(existing: str, keep: frozenset[str]) -> str:
    """``existing`` without svrchain's lines whose marker is not in ``keep`` (the DB servers that no longer
    restart this web server); every other line byte for byte."""
    def stale(raw: str) -> bool:
        comment = line_comment(raw.rstrip("\r\n")) if line_blob(raw) is not None else ""
        return bool(MARKER_RE.fullmatch(comment)) and comment not in keep
    return "".join(r for r in lines(existing) if not stale(r))


def find_lines(existing: str, blob: str, marker: str) -> list[str]:
    """svrchain's lines in ``existing`` (by blob or marker), without line endings."""
    return [r.rstrip("\r\n") for r in lines(existing) if is_ours(r, blob, marker)]


def openssh_version(text: str) -> tuple[int, int] | None:
    """(major, minor) from ``ssh -V`` output such as ``OpenSSH_9.2p1 Debian-2``."""
    m = re.search(r"OpenSSH_(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def known_hosts_line(address: str, port: int, key: PublicKey) -> str:
    """A known_hosts line for a host as the ssh client names it (``[addr]:port`` off port 22)."""
    name = address if port == 22 else f"[{address}]:{port}"
    return f"{name} {key.type} {key.blob}"
