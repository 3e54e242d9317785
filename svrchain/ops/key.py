"""The DB server's restart key, as an operation (pure): created when missing (or replaced with
``rotate``), else its modes and its public half put right."""

from __future__ import annotations

import shlex

from svrchain.core import authkeys, render, tell
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileSpec
from svrchain.facts.db import KeyFacts
from svrchain.ops import Change, command, files_change

PUB_MODE = ["644", "root"]


def keygen_script(key_type: str, bits: int) -> str:
    """A new key made in a private temp directory, then both halves renamed into place ($1 the path,
    $2 the comment)."""
    size = f"-b {bits}" if key_type == "rsa" else ""
    return (
        'set -e; umask 077; k=$1; c=$2; d=$(dirname "$k"); mkdir -p -m 700 "$d"\n'
        't=$(mktemp -d "$d/.svrchain-key.XXXXXX"); trap \'rm -rf "$t"\' EXIT\n'
        f'ssh-keygen -q -t {key_type} {size} -N "" -C "$c" -f "$t/key"\n'
        'chmod 644 "$t/key.pub"; mv -f "$t/key.pub" "$k.pub"; mv -f "$t/key" "$k"\n'
    )


def key_type(inv: Inventory, ssh_version: str) -> str:
    """ed25519 unless this OpenSSH predates it (then RSA)."""
    version = authkeys.openssh_version(ssh_version)
    if inv.key.type == "ed25519" and version is not None and version < authkeys.ED25519_SINCE:
        return "rsa"
    return inv.key.type


# ssh-keygen's -t for the public key types gen-key makes.
KEYGEN_TYPES = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}


def rotation_type(inv: Inventory, current: authkeys.PublicKey) -> str:
    """The type of a rotated key: the current key's own (gen-key chose it for this OpenSSH: RSA where
    it predates ed25519), or the inventory's when the current key is of another type."""
    return KEYGEN_TYPES.get(current.type, inv.key.type)


def proof_command(inv: Inventory, address: str, port: int, key_path: str) -> str:
    """The command that asks a web server's gate for ``status`` with ``key_path``, as the trigger connects."""
    return shlex.join(["ssh", "-n", "-i", key_path, "-p", str(port), *render.ssh_options(inv),
                       f"{inv.web.user}@{address}", "status"])


def same_key(pub_text: str, key: authkeys.PublicKey) -> bool:
    try:
        return authkeys.parse_public_key(pub_text).blob == key.blob
    except SvrchainError:
        return False


def key(inv: Inventory, f: KeyFacts, rotate: bool = False) -> Change:
    """The key: made when missing (or with ``rotate``); else 600 root, and its .pub (644) rewritten
    from it when missing or not its own. A key that needs a passphrase is refused."""
    path = inv.key.path
    if f.priv is None or rotate:
        kind = key_type(inv, f.ssh_version)
        what = f"{'replace' if f.priv is not None else 'create'} {path} ({kind}, no passphrase, mode 600)"
        script = keygen_script(kind, inv.key.bits)
        run = f"sh -c {shlex.quote(script)} svrchain {shlex.quote(path)} {shlex.quote(render.marker(inv))}"
        return Change(commands=(command(run, what),))
    if f.derived is None:
        raise SvrchainError(f"{path} exists but cannot be used without a passphrase; the key runs unattended, "
                            "so it must have none: replace it with " + tell.command("gen-key --rotate"))
    derived = authkeys.parse_public_key(f.derived)
    q = shlex.quote(path)
    fixes = [] if f.priv.split() == ["600", "root"] else [command(f"chown -h root {q} && chmod 600 {q}")]
    pub_ok = f.pub.exists and same_key(f.pub.content.decode(errors="replace"), derived)
    if pub_ok and f.pubmode.split() != PUB_MODE:
        fixes.append(command(f"chown -h root {q}.pub && chmod 644 {q}.pub"))
    # The public half is rewritten from the private key when it is missing or does not match.
    pub = authkeys.PublicKey(derived.type, derived.blob, render.marker(inv)).text() + "\n"
    specs = [] if pub_ok else [FileSpec(f"{path}.pub", pub.encode(), 0o644)]
    return files_change(specs, {f.pub.path: f.pub}, fixes, f"{path} {derived.type} {derived.fingerprint}")
