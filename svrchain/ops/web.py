"""The web servers' desired state, as operations (pure): push-key's files and commands.

``push_key`` is what push-key applies and what verify checks: the gate, the sudo rule of a
dedicated account, and the restricted line in web.user's authorized_keys (every other byte kept).
"""

from __future__ import annotations

import shlex

from svrchain.core import authkeys, homes, render
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileSpec
from svrchain.facts.web import WebFacts
from svrchain.ops import Change, Command, command, files_change


def restricted_line(inv: Inventory, key: authkeys.PublicKey, ssh_version_text: str) -> str:
    """The authorized_keys line for ``key`` on a web server whose sshd sent that version banner
    (``restrict`` where its OpenSSH has it, the long option list always)."""
    version = authkeys.openssh_version(ssh_version_text)
    restrict = version is not None and version >= authkeys.RESTRICT_SINCE
    return authkeys.restricted_line(key, inv.db.from_addresses, render.GATE, restrict, render.marker(inv))


def gate_spec(inv: Inventory) -> FileSpec:
    """The gate: the one command the key runs."""
    return FileSpec(render.GATE, render.gate(inv), 0o755, parent_mode=0o755)


def sudoers_spec(inv: Inventory) -> FileSpec:
    """The rule file of a dedicated web.user: mode 440, and visudo must accept it before it is put in place."""
    return FileSpec(render.SUDOERS, render.sudoers(inv), 0o440, parent_mode=0o750, validate='visudo -c -f "$1"')


def gate_and_rule(inv: Inventory, facts: WebFacts) -> Change:
    """The gate, and the sudo rule of a dedicated web.user (a rule left from one is removed when
    web.user went back to root)."""
    specs, commands = [gate_spec(inv)], []
    if inv.web.dedicated:
        specs.append(sudoers_spec(inv))
    elif facts.sudoers.exists and render.MARK.encode() in facts.sudoers.content:
        commands.append(command(f"rm -f {render.SUDOERS}", f"remove {render.SUDOERS} (web.user is {inv.web.user})"))
    states = {render.GATE: facts.gate, render.SUDOERS: facts.sudoers}
    return files_change(specs, states, commands, f"{render.GATE}")


def key_line(inv: Inventory, key: authkeys.PublicKey, facts: WebFacts, ssh_version_text: str,
             markers: frozenset[str] | None = None) -> Change:
    """The restricted line in web.user's authorized_keys (an older line for the key replaced, every
    other byte kept), and ~/.ssh made 700. On an estate, ``markers`` are those of every DB server that
    may restart this web server: svrchain's lines of any other DB server are removed."""
    user = inv.web.user
    line = restricted_line(inv, key, ssh_version_text)
    text = facts.keys.content.decode("utf-8", "surrogateescape")
    if markers is not None:
        text = authkeys.without_markers(text, markers | {render.marker(inv)})
    keys = homes.spec(facts.keys, user, facts.group, authkeys.merge_line(text, line, key.blob, render.marker(inv)))
    commands: list[Command] = []
    if facts.sshdir and facts.sshdir.split()[0] != "700":
        commands.append(command(render.as_account(user, f"chmod 700 -- {shlex.quote(facts.home + '/.ssh')}"),
                                f"chmod 700 {facts.home}/.ssh"))
    return files_change([keys], {keys.path: facts.keys}, commands, f"the line in {keys.path}")


def push_key(inv: Inventory, key: authkeys.PublicKey, facts: WebFacts, ssh_version_text: str,
             markers: frozenset[str] | None = None) -> Change:
    """push-key on one web server: the gate and its rule first (the line's forced command must work
    before the line exists), then the line (``markers``: see :func:`key_line`)."""
    line = key_line(inv, key, facts, ssh_version_text, markers)
    return gate_and_rule(inv, facts).then(line, f"{render.GATE} and the line in {facts.keys.path}")
