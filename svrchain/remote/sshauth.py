"""The admin's own SSH: which key logs in (a key file, or ssh-agent), and how each host is reached
(the admin's ``~/.ssh/config``: host aliases and ProxyJump).

Nothing here connects to a host; :mod:`svrchain.remote.connection` opens the connections. Host keys stay pinned
whatever the ssh config says: its ``StrictHostKeyChecking``, ``UserKnownHostsFile`` and the like are
not read, every hop (the jump host too) is checked against ``connect.known_hosts``.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from pathlib import Path

import paramiko

from svrchain.core.errors import BadInventory
from svrchain.core.inventory import Inventory


@dataclass(frozen=True)
class Auth:
    """How the admin's connections authenticate."""

    pkey: paramiko.PKey | None = None  # the identity file, loaded (it has no passphrase)
    agent_blob: bytes | None = None  # the agent's key with this public blob (an encrypted identity)
    any_agent: bool = False  # every key the agent holds (no connect.identity)
    what: str = ""  # for messages: "key ~/.ssh/id_ed25519", "key ... (from ssh-agent)", "ssh-agent's keys"

    def connect_kwargs(self) -> tuple[dict, paramiko.Agent | None]:
        """paramiko's arguments for one connection, and the agent connection to close after the login
        (one per connection: an agent connection must not be shared between threads)."""
        base = {"look_for_keys": False, "allow_agent": False}
        if self.pkey is not None:
            return {**base, "pkey": self.pkey}, None
        if self.any_agent:
            return {**base, "allow_agent": True}, None
        agent = paramiko.Agent()
        key = next((k for k in agent.get_keys() if k.asbytes() == self.agent_blob), None)
        return ({**base, "pkey": key} if key else base), agent


def public_blob(path: Path) -> bytes | None:
    """The public key of a private key file without its passphrase: from ``<path>.pub``, else from
    the unencrypted header of an OpenSSH-format key; None when neither tells."""
    pub = Path(f"{path}.pub")
    if pub.is_file():
        parts = pub.read_text(errors="replace").split()
        if len(parts) >= 2:
            try:
                return base64.b64decode(parts[1], validate=True)
            except ValueError:
                pass
    text = path.read_text(errors="replace")
    if "BEGIN OPENSSH PRIVATE KEY" not in text:
        return None
    body = "".join(x for x in text.splitlines() if x and not x.startswith("-----"))
    try:
        data = base64.b64decode(body)
        magic = b"openssh-key-v1\0"
        off = len(magic)
        for _ in range(3):  # cipher name, kdf name, kdf options
            (n,) = struct.unpack(">I", data[off:off + 4])
            off += 4 + n
        off += 4  # number of keys
        (n,) = struct.unpack(">I", data[off:off + 4])
        return data[off + 4:off + 4 + n] if data.startswith(magic) else None
    except (ValueError, struct.error):
        return None


def agent_blobs() -> list[bytes]:
    """The public keys ssh-agent holds (none without SSH_AUTH_SOCK or an agent answering there)."""
    try:
        agent = paramiko.Agent()
    except paramiko.SSHException:
        return []
    try:
        return [k.asbytes() for k in agent.get_keys()]
    finally:
        agent.close()


def own_blobs(auth: Auth) -> frozenset[str]:
    """The admin's own public keys as base64 blobs: connect.identity's and every key ssh-agent offers
    (svrchain never retires a line of theirs)."""
    raw = [*agent_blobs(), *([auth.pkey.asbytes()] if auth.pkey else []),
           *([auth.agent_blob] if auth.agent_blob else [])]
    return frozenset(base64.b64encode(b).decode() for b in raw)


def load_auth(inv: Inventory) -> Auth:
    """Decide how to log in, before connecting anywhere: a bad setup is one line (exit 4)."""
    c = inv.connect
    if c.identity is None:
        if not agent_blobs():
            raise BadInventory(f"{inv.source}: connect.identity is not set and no ssh-agent holds a key "
                               "(SSH_AUTH_SOCK); set connect.identity, or add your key with ssh-add")
        return Auth(any_agent=True, what="ssh-agent's keys")
    path = inv.path(c.identity)
    if not path.is_file():
        raise BadInventory(f"{inv.source}: connect.identity: {path} does not exist; point it at the admin's "
                           "private key")
    try:
        return Auth(pkey=paramiko.PKey.from_path(str(path)), what=f"key {path}")
    except paramiko.PasswordRequiredException:
        pass
    except TypeError as exc:  # cryptography's way of saying the key needs a passphrase
        if "assword" not in str(exc):
            raise
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise BadInventory(f"{inv.source}: connect.identity: {path} is not a usable private key ({exc})") from None
    blob = public_blob(path)
    if blob is None or blob not in agent_blobs():
        raise BadInventory(f"key {path} is passphrase-protected; add it to ssh-agent (ssh-add {path}) and run "
                           "again with SSH_AUTH_SOCK set, or set connect.identity to a key without a passphrase")
    return Auth(agent_blob=blob, what=f"key {path} (from ssh-agent)")


@dataclass(frozen=True)
class Route:
    """How the admin reaches one host: the name to connect to (and check the host key under), and
    the jump host in between, if any."""

    hostname: str
    port: int
    user: str
    jump: Route | None = None

    def __str__(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def load_ssh_config(inv: Inventory) -> paramiko.SSHConfig | None:
    """The admin's ssh config named by connect.ssh_config (None when it names none)."""
    if inv.connect.ssh_config is None:
        return None
    path = inv.path(inv.connect.ssh_config)
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except OSError as exc:
        raise BadInventory(f"{inv.source}: connect.ssh_config: cannot read {path}: {exc.strerror}") from None
    except Exception as exc:  # paramiko raises plain exceptions for a malformed file
        raise BadInventory(f"{inv.source}: connect.ssh_config: {path}: {exc}") from None


def route(cfg: paramiko.SSHConfig | None, name: str, address: str, port: int, user: str, source: object) -> Route:
    """How to reach an inventory host. Its ``Host`` block is looked up by the host's name (an alias),
    then by its address; the ssh config gives HostName and ProxyJump, the inventory's user and port win."""
    if cfg is None:
        return Route(address, port, user)
    found = {**_lookup(cfg, address), **_lookup(cfg, name)}
    if "proxycommand" in found:
        raise BadInventory(f"{source}: connect.ssh_config: {name}: ProxyCommand is not supported; use ProxyJump")
    jump = _jump(cfg, found["proxyjump"], user, source, name) if found.get("proxyjump", "none") != "none" else None
    return Route(found.get("hostname", address), port, user, jump)


def _lookup(cfg: paramiko.SSHConfig, key: str) -> dict[str, str]:
    """The options a Host block gives ``key`` (HostName only when a block sets it)."""
    opts = dict(cfg.lookup(key))
    if opts.get("hostname") == key:
        del opts["hostname"]
    return {k: v for k, v in opts.items() if isinstance(v, str)}


def _jump(cfg: paramiko.SSHConfig, spec: str, user: str, source: object, name: str) -> Route:
    """The jump host of a ProxyJump ``[user@]host[:port]`` (one hop), with its own Host block applied."""
    if "," in spec:
        raise BadInventory(f"{source}: connect.ssh_config: {name}: ProxyJump {spec}: one jump host only")
    juser, _, hostport = spec.rpartition("@")
    host, _, jport = hostport.partition(":")
    opts = _lookup(cfg, host)
    if opts.get("proxyjump", "none") != "none" or "proxycommand" in opts:
        raise BadInventory(f"{source}: connect.ssh_config: jump host {host}: a jump through a jump is not supported")
    try:
        return Route(opts.get("hostname", host), int(jport or opts.get("port", 22)), juser or opts.get("user", user))
    except ValueError:
        raise BadInventory(f"{source}: connect.ssh_config: {name}: ProxyJump {spec}: bad port") from None
