"""The same bootstrap written with the tools an admin would otherwise use: a pyinfra deploy and an
Ansible playbook (``bench/deploys/``), run from the bench's own environment (``.venv-tools``).

Both reach the end state ``fab bootstrap`` reaches on the lab's SysV DB host and its web hosts, so that
svrchain's ``verify`` passes on what they set up: the DB's start script and its init script,
registered with update-rc.d; the DB server's key (ed25519, no passphrase, made on the DB server, never
copied off it); on every web server the gate and the one restricted line in root's authorized_keys;
the web servers' host keys, read from each server, pinned in the DB server's known_hosts; the trigger
and the watcher, registered, the watcher running (restarted when the trigger changed).

The files' contents are svrchain's own rendered templates, written once into a bundle per inventory
(what an admin's deploy would keep as its templates), so that the comparison is of the tools'
execution, not of how the files are written; the line's options and the key's marker are in the
bundle's ``vars.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lab import hosts as labhosts
from svrchain.core import authkeys, inventory, render
from svrchain.ops import db as ops_db

DEPLOYS = Path(__file__).resolve().parent / "deploys"
# sshd 9.2 on every lab host has "restrict" (OpenSSH 7.2+), as push-key finds from its banner.
RESTRICT = True


def bundle(inv_path: Path) -> Path:
    """Render svrchain's files for the inventory into ``.lab/tools-<name>/``; return that directory."""
    inv = inventory.load(inv_path)
    out = labhosts.STATE / f"tools-{inv_path.stem}"
    shutil.rmtree(out, ignore_errors=True)
    (out / "files").mkdir(parents=True)

    marker = render.marker(inv)
    # The DB server's files as install-dbora and install-svr-restart write them on a SysV host: the
    # start script and its init script; the trigger's settings, its script and init script; the watcher.
    db_files = []
    services = (("db", ops_db.dbora(inv)), ("trigger", ops_db.trigger(inv)), ("trigger", ops_db.watcher(inv)))
    for part, service in services:
        for spec in service.files("sysv"):
            name = spec.path.strip("/").replace("/", "_")
            (out / "files" / name).write_bytes(spec.content)
            db_files.append({"src": str(out / "files" / name), "dest": spec.path, "mode": f"0{spec.mode:o}",
                             "part": part})
    (out / "files" / "gate").write_bytes(render.gate(inv))
    # The line's options, exactly as push-key writes them; the key and its marker follow.
    options = authkeys.restricted_line(authkeys.PublicKey("ssh-ed25519", "X", ""), inv.db.from_addresses,
                                       render.GATE, RESTRICT, "").split(" ")[0]
    port = inv.connect.port
    data = {
        "db_name": inv.db.name, "db_address": inv.db.address,
        "webs": [{"name": w.name, "address": w.address, "port": w.port or port} for w in inv.web.servers],
        "key_path": inv.key.path, "marker": marker, "line_options": options,
        "known_hosts": inv.trigger.known_hosts, "gate": render.GATE,
        "db_service": inv.db.service, "trigger": inv.trigger.name, "watcher": render.watch_name(inv),
        "db_files": db_files,
        "gate_src": str(out / "files" / "gate"),
        "identity": str(inv.path(inv.connect.identity)), "known_hosts_local": str(inv.path(inv.connect.known_hosts)),
        "max_parallel": inv.connect.max_parallel,
    }
    (out / "vars.json").write_text(json.dumps(data, indent=1))
    _pyinfra_inventory(out, data)
    _ansible_inventory(out, data)
    return out


def _pyinfra_inventory(out: Path, data: dict) -> None:
    ssh = {"ssh_user": "root", "ssh_key": data["identity"], "ssh_known_hosts_file": data["known_hosts_local"],
           "ssh_strict_host_key_checking": "yes"}
    webs = [(w["address"], {**ssh, "ssh_port": w["port"], "svr_name": w["name"]}) for w in data["webs"]]
    text = (
        "# Written by bench/tools.py for the scale bench.\n"
        f"db = [({data['db_address']!r}, {{**{ssh!r}, 'svr_name': {data['db_name']!r}}})]\n"
        f"web = {webs!r}\n"
    )
    (out / "pyinfra_inventory.py").write_text(text)


def _ansible_inventory(out: Path, data: dict) -> None:
    common = (f"ansible_user=root ansible_ssh_private_key_file={data['identity']} "
              "ansible_python_interpreter=/usr/bin/python3")
    lines = ["[db]", f"{data['db_name']} ansible_host={data['db_address']} {common}", "", "[web]"]
    lines += [f"{w['name']} ansible_host={w['address']} ansible_port={w['port']} {common}" for w in data["webs"]]
    (out / "ansible_inventory.ini").write_text("\n".join(lines) + "\n")
    # The admin's settings a fleet needs: as many forks as svrchain's own parallelism, pipelining,
    # the pinned known_hosts, no retry files, no fact gathering (the playbook needs no facts).
    (out / "ansible.cfg").write_text(
        "[defaults]\n"
        f"forks = {data['max_parallel']}\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        "gathering = explicit\n"
        "interpreter_python = /usr/bin/python3\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -o UserKnownHostsFile={data['known_hosts_local']} -o StrictHostKeyChecking=yes "
        "-o ControlMaster=auto -o ControlPersist=60s -o IdentitiesOnly=yes\n"
        f"control_path_dir = {out}/cp\n"
    )


def command(tool: str, inv_path: Path, venv: Path) -> tuple[list[str], dict[str, str]]:
    """The command line (and environment) that runs ``tool``'s bootstrap for the inventory."""
    out = bundle(inv_path)
    env = {"SVRCHAIN_TOOLS_VARS": str(out / "vars.json")}
    if tool == "pyinfra":
        # -y: no confirmation prompt; --parallel: as many hosts at once as svrchain's own runs.
        data = json.loads((out / "vars.json").read_text())
        return ([str(venv / "bin" / "pyinfra"), "-y", "--parallel", str(data["max_parallel"]),
                 str(out / "pyinfra_inventory.py"), str(DEPLOYS / "pyinfra_deploy.py")], env)
    if tool == "ansible":
        env["ANSIBLE_CONFIG"] = str(out / "ansible.cfg")
        return ([str(venv / "bin" / "ansible-playbook"), "-i", str(out / "ansible_inventory.ini"),
                 "-e", f"@{out / 'vars.json'}", str(DEPLOYS / "playbook.yml")], env)
    raise ValueError(f"unknown tool {tool!r}")
