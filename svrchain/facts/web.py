"""A web server's facts, read in one probe: web.user's account, home, ~/.ssh and authorized_keys
(read as web.user), every account's authorized_keys, the gate, the sudo rule and what sudo allows,
the gate's state directory, the host keys, and the SELinux contexts of the files svrchain writes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from svrchain.core import homes, render, selinux
from svrchain.core.errors import HostError
from svrchain.core.homes import KeysFile
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState
from svrchain.facts import FILE_CMD, UFILE_CMD, Fact, Raw


@dataclass(frozen=True)
class WebFacts:
    """What push-key, verify, rotate-key and uninstall know of a web server."""

    user: str
    home: str
    group: str
    keys: FileState  # web.user's authorized_keys, read as web.user
    sshdir: str  # "<mode> <owner>" of web.user's ~/.ssh, '' when missing
    unsafe: str | None  # why svrchain will not touch web.user's home (a link, a foreign owner)
    files: tuple[KeysFile, ...]  # every account's authorized_keys
    gate: FileState  # the gate script
    sudoers: FileState  # the sudo rule svrchain writes for a dedicated web.user
    keys_command: str = ""  # sshd's AuthorizedKeysCommand ('' when none): not inspected
    account: bool = True  # web.user exists
    created: bool = False  # push-key created web.user (its comment is svrchain's)
    sudo: bool = True  # sudo and visudo are installed
    sudo_rules: tuple[str, ...] = ()  # what `sudo -l -U web.user` allows ("(root) NOPASSWD: ...")
    statedir: str = ""  # the gate's state directories as found ("<type> <mode> <owner> <group>" lines)
    statedir_exists: bool = False  # there is a gate state tree at all
    hostkeys: tuple[str, ...] = ()  # the host's public host keys, as its files say
    selinux: str = "disabled"  # what selinux.CHECK said of the files svrchain writes here


def selinux_paths(inv: Inventory, home: str) -> list[str]:
    """The files svrchain writes on a web server whose SELinux context verify checks."""
    return [render.GATE, *([render.SUDOERS] if inv.web.dedicated else []), f"{home}/.ssh",
            f"{home}/.ssh/authorized_keys"]


def home_of(user: str) -> str:
    """The home push-key gives the account it creates."""
    return f"/var/lib/{user}"


def sudo_rules(listing: str) -> tuple[str, ...]:
    """The commands ``sudo -l -U <user>`` says the user may run (lines like ``(root) NOPASSWD: /x y``)."""
    return tuple(ln.strip() for ln in listing.splitlines() if ln.startswith("    ("))


class WebFact(Fact[WebFacts]):
    """With $U the web user, $H its home, $GECOS its comment and $G its group (set once, in the
    prelude). The server's OpenSSH version comes from its SSH banner, already received
    (Host.server_version)."""

    name = "web"

    def prelude(self, inv: Inventory) -> str:
        return (f'U={shlex.quote(inv.web.user)}; IFS=: read -r _ _ _ _ GECOS H _ <<EOF\n$(getent passwd "$U")\nEOF\n'
                'G=$(id -gn "$U" 2>/dev/null)')

    def commands(self, inv: Inventory) -> dict[str, str]:
        paths = " ".join(shlex.quote(p) for p in selinux_paths(inv, "//HOME//"))
        return {
            "account": '[ -n "$H" ] && echo "$H $G"',
            "home": 'stat -c %U -- "$H"',
            "sshdir": 'upath "$U" "$H/.ssh" && stat -c "%a %U" -- "$H/.ssh"',
            "authkeys": 'F="$H/.ssh/authorized_keys"; ' + UFILE_CMD,
            "scan": homes.SCAN,
            "hostkeys": "cat /etc/ssh/ssh_host_*_key.pub",
            "gate": f"F={render.GATE}; " + FILE_CMD,
            "visudo": "command -v sudo && command -v visudo",
            "sudoers": f"F={render.SUDOERS}; " + FILE_CMD,
            "gecos": 'printf "%s\\n" "$GECOS"',
            "sudo_list": 'sudo -n -l -U "$U"',
            # The gate's directories (never followed through a link), then what does not belong there:
            # files beside the per-account directories, links or another owner's files in the account's own.
            # Succeeds when there is a gate state tree at all (uninstall removes it).
            "statedir": f'stat -c "%F %a %U %G" {render.STATE_PARENT} {render.GATE_STATE} {render.GATE_STATE}/"$U"; '
                        f'find {render.GATE_STATE} -mindepth 1 -maxdepth 1 ! -type d -print | head -n 3; '
                        f'find {render.GATE_STATE}/"$U" -mindepth 1 \\( ! -user "$U" -o -type l \\) -print '
                        '| head -n 3; '
                        f'[ -e {render.GATE_STATE} ] || [ -L {render.GATE_STATE} ]',
            "selinux": f'h=${{H:-{home_of(inv.web.user)}}}; set -- '
                       + paths.replace("//HOME//", '"$h"') + "\n" + selinux.CHECK,
        }

    def parse(self, inv: Inventory, raw: Raw) -> WebFacts:
        return parse_web(inv, raw)


def parse_web(inv: Inventory, raw: Raw) -> WebFacts:
    """The web facts, typed; a missing web.user (unless push-key creates it) is refused in one line."""
    r, user, label = raw.results, inv.web.user, raw.label
    if not r["scan"].ok:
        said = r["scan"].stdout.strip()[-200:]
        raise HostError(f"{label}: reading the accounts' authorized_keys failed: {said}; install what it "
                        "names (awk, setpriv, timeout) and run again")
    common = dict(
        files=tuple(homes.parse_scan(r["scan"].stdout)), gate=raw.file("gate", render.GATE),
        sudoers=raw.file("sudoers", render.SUDOERS), keys_command=homes.scan_settings(r["scan"].stdout)[1],
        account=r["account"].ok, created=r["account"].ok and r["gecos"].stdout.strip() == render.ACCOUNT_COMMENT,
        sudo=r["visudo"].ok, sudo_rules=sudo_rules(r["sudo_list"].stdout), statedir=r["statedir"].stdout.strip(),
        statedir_exists=r["statedir"].ok, hostkeys=tuple(r["hostkeys"].stdout.splitlines()),
        selinux=r["selinux"].stdout)
    if inv.web.dedicated and not r["account"].ok:  # push-key creates it
        home = home_of(user)
        return WebFacts(user, home, user, FileState(f"{home}/.ssh/authorized_keys", exists=False), "", None,
                        **common)
    if not r["account"].ok or len(r["account"].stdout.split()) != 2:
        raise HostError(f"{label}: no account {user!r} (web.user in {inv.source}); create it or change web.user")
    home, group = r["account"].stdout.split()
    keys = raw.file("authkeys", f"{home}/.ssh/authorized_keys")
    unsafe = homes.unsafe_reason(user, home, r["home"].stdout.strip(), r["sshdir"], keys)
    sshdir = r["sshdir"].stdout.strip() if r["sshdir"].ok else ""
    return WebFacts(user, home, group, keys, sshdir, unsafe, **common)
