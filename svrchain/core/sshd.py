"""sshd hardening settings: what to set for a given server, where, and whether it took (pure logic).

sshd uses the first value it reads for most keywords, so svrchain's settings go first: a drop-in
that sorts before the others where sshd_config includes ``sshd_config.d/*.conf``, else a marked
block at the top of sshd_config. ``sshd -T`` then shows whether anything read earlier still wins.
"""

from __future__ import annotations

import re

MAIN = "/etc/ssh/sshd_config"
DROPIN = "/etc/ssh/sshd_config.d/00-svrchain.conf"
BEGIN = "# BEGIN svrchain (fab harden-sshd): edit the inventory, not these lines"
END = "# END svrchain"

KBD_SINCE = (8, 7)  # KbdInteractiveAuthentication; before it, ChallengeResponseAuthentication
PROTOCOL_UNTIL = (7, 6)  # 7.6 removed SSH-1 and with it the Protocol keyword's meaning
AUTH_METHODS_SINCE = (6, 2)

# Modern algorithms in order of preference, kept where the server's OpenSSH has them (ssh -Q).
# None is SHA-1, NIST-curve or encrypt-and-MAC; curve25519 and the large DH groups stay for
# clients without post-quantum key exchange (paramiko, the admin's Fabric, among them).
KEX = ("mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com",
       "curve25519-sha256", "curve25519-sha256@libssh.org", "diffie-hellman-group18-sha512",
       "diffie-hellman-group16-sha512")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
           "aes256-ctr", "aes192-ctr", "aes128-ctr")
MACS = ("hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com")
HOST_KEY_ALGS = {"ssh-ed25519": ("ssh-ed25519",), "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}

Settings = list[tuple[str, str]]


def settings(version: tuple[int, int] | None, admin_is_root: bool, supported: dict[str, set[str]],
             host_key_types: list[str], algorithms: bool) -> Settings:
    """svrchain's settings for one server: public keys only, root as narrow as the admin allows,
    modern algorithms. The inventory's extra lines go after them, so they cannot override them."""
    v = version or (0, 0)
    out: Settings = []
    if version is not None and v < PROTOCOL_UNTIL:
        out.append(("Protocol", "2"))
    out += [
        ("PubkeyAuthentication", "yes"),
        ("PasswordAuthentication", "no"),
        ("KbdInteractiveAuthentication" if v >= KBD_SINCE else "ChallengeResponseAuthentication", "no"),
        ("PermitEmptyPasswords", "no"),
    ]
    if v >= AUTH_METHODS_SINCE:
        out.append(("AuthenticationMethods", "publickey"))
    # The DB server's key logs in with a forced command; the admin, when not root, uses sudo.
    out.append(("PermitRootLogin", "prohibit-password" if admin_is_root else "forced-commands-only"))
    if algorithms:
        for keyword, wanted, query in (("KexAlgorithms", KEX, "kex"), ("Ciphers", CIPHERS, "cipher"),
                                       ("MACs", MACS, "mac")):
            have = [a for a in wanted if a in supported.get(query, set())]
            if have:
                out.append((keyword, ",".join(have)))
        host_algs = [a for t in host_key_types for a in HOST_KEY_ALGS.get(t, ())]
        if host_algs and all(t in HOST_KEY_ALGS for t in host_key_types):
            out.append(("HostKeyAlgorithms", ",".join(host_algs)))
    return out


def extra_settings(lines: list[str]) -> Settings:
    """The inventory's extra lines (harden.extra) as settings."""
    return [(k, v) for k, v in (line.split(None, 1) for line in lines)]


def body(s: Settings) -> str:
    return "".join(f"{k} {v}\n" for k, v in s)


def dropin(s: Settings) -> bytes:
    """The drop-in file."""
    head = ("# Written by svrchain (fab harden-sshd). Edit the inventory, not this file.\n"
            "# Public-key authentication only; root as narrow as the admin's login allows.\n")
    return (head + body(s)).encode()


def includes_dropins(main: str) -> bool:
    """Whether sshd_config includes ``sshd_config.d/*.conf`` (OpenSSH 8.2+, Debian's default)."""
    for line in main.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].lower() == "include" and any(
                w in ("/etc/ssh/sshd_config.d/*.conf", "sshd_config.d/*.conf") for w in words[1:]):
            return True
    return False


def without_block(main: str) -> str:
    """sshd_config without svrchain's block; every other line byte for byte."""
    out, inside = [], False
    for raw in main.splitlines(keepends=True):
        line = raw.rstrip("\r\n")
        if line == BEGIN:
            inside = True
        elif inside and line == END:
            inside = False
        elif not inside:
            out.append(raw)
    return "".join(out)


def with_block(main: str, s: Settings) -> str:
    """sshd_config with svrchain's block at the top (first value wins), the rest byte for byte."""
    return f"{BEGIN}\n{body(s)}{END}\n" + without_block(main)


# sshd -T prints some values under another name than the one written.
_CANONICAL = {("permitrootlogin", "prohibit-password"): "without-password"}


def effective(text: str) -> dict[str, str]:
    """``sshd -T`` output as {keyword: value} (first value of a repeated keyword)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if re.match(r"^[a-z0-9]+$", key):
            out.setdefault(key, value.strip())
    return out


def pidfile(seen: dict[str, str]) -> str:
    """sshd's PID file, from its effective settings."""
    return seen.get("pidfile", "/run/sshd.pid")


def mismatches(s: Settings, seen: dict[str, str]) -> list[str]:
    """The settings sshd would not use as written (something read before them wins)."""
    bad = []
    for keyword, value in s:
        key = keyword.lower()
        if key == "protocol" or key not in seen:
            continue  # Protocol is not printed by sshd -T; extra lines may be Match-only etc.
        want = _CANONICAL.get((key, value.lower()), value)
        if seen[key].lower() != want.lower():
            bad.append(f"{keyword} is {seen[key]}, not {value}")
    return bad
