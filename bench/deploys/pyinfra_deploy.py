"""svrchain's bootstrap as a pyinfra deploy (the scale bench's comparison; see bench/tools.py).

Run by ``pyinfra -y <bundle>/pyinfra_inventory.py bench/deploys/pyinfra_deploy.py`` with
``SVRCHAIN_TOOLS_VARS`` naming the bundle's vars.json. Three stages, each run on every host before
the next: the DB server's start script and key (the web servers get the gate meanwhile); the web
servers' restricted line (it needs the DB server's public key) and their host keys; the DB server's
pinned host keys, trigger and watcher. Each stage is one ``python.call`` on every host, so every host
has the same operations in the same order, and values that exist only at run time (the DB's public
key, the web servers' host keys) are read by the nested operations inside it.
"""

import json
import os
import sys
import types
from io import StringIO
from pathlib import Path

from pyinfra import host
from pyinfra.operations import files, python, server

V = json.loads(Path(os.environ["SVRCHAIN_TOOLS_VARS"]).read_text())
# pyinfra runs this file once per host: what the hosts share at run time lives in a module of its own.
SHARED: dict = sys.modules.setdefault("svrchain_bench_shared", types.ModuleType("svrchain_bench_shared")
                                      ).__dict__.setdefault("shared", {"hostkeys": {}})
KEY = V["key_path"]
DB = "db" in host.groups


def _register(service: str) -> str:
    return f"ls /etc/rc3.d/S??{service} >/dev/null 2>&1 || update-rc.d {service} defaults"


def _put(src: str, dest: str, mode: str = "755") -> object:
    return files.put(name=f"install {dest}", src=src, dest=dest, mode=mode.lstrip("0") or "0", user="root",
                     group="root")


def stage1() -> None:
    """DB: its start script, registered, and its key. Web: the gate."""
    if not DB:
        _put(V["gate_src"], V["gate"])
        return
    files.directory(name="svrchain's lib directory", path="/usr/local/lib/svrchain", mode="755")
    for f in V["db_files"]:
        if f["part"] == "db":
            _put(f["src"], f["dest"], f["mode"])
    server.shell(name="register the DB's service", commands=[_register(V["db_service"])])
    server.shell(name="the DB server's key", commands=[
        f"test -f {KEY} || (umask 077; ssh-keygen -q -t ed25519 -N '' -C '{V['marker']}' -f {KEY} && "
        f"chmod 644 {KEY}.pub)"])
    result = server.shell(name="read the public key", commands=[f"cat {KEY}.pub"])
    SHARED["pub"] = " ".join(result.stdout.split()[:2])


def stage2() -> None:
    """Web: the restricted line; their host keys, read for the DB server."""
    if DB:
        return
    line = f"{V['line_options']} {SHARED['pub']} {V['marker']}"
    files.line(name="the restricted line", path="/root/.ssh/authorized_keys", line=f" {V['marker']}$", replace=line)
    keys = server.shell(name="read the host keys", commands=["cat /etc/ssh/ssh_host_*_key.pub"])
    SHARED["hostkeys"][host.data.svr_name] = [" ".join(k.split()[:2]) for k in keys.stdout.splitlines() if k]


def stage3() -> None:
    """DB: the web servers' host keys pinned, the trigger and the watcher (running)."""
    if not DB:
        return

    def name(w: dict) -> str:
        return w["address"] if w["port"] == 22 else f"[{w['address']}]:{w['port']}"

    text = "".join(f"{name(w)} {k}\n" for w in V["webs"] for k in SHARED["hostkeys"].get(w["name"], []))
    files.directory(name="svrchain's /etc directory", path=os.path.dirname(V["known_hosts"]), mode="755")
    files.put(name="pin the web servers' host keys", src=StringIO(text), dest=V["known_hosts"], mode="644",
              user="root", group="root")
    changed = [_put(f["src"], f["dest"], f["mode"]).did_change() for f in V["db_files"] if f["part"] == "trigger"]
    server.shell(name="register the trigger", commands=[_register(V["trigger"])])
    server.shell(name="register the watcher", commands=[_register(V["watcher"])])
    watcher = f"/etc/init.d/{V['watcher']}"
    if any(changed):
        server.shell(name="restart the watcher (its trigger changed)", commands=[f"{watcher} restart >/dev/null"])
    else:
        server.shell(name="the watcher runs", commands=[f"{watcher} status >/dev/null || {watcher} start >/dev/null"])


python.call(name="stage 1: the DB's start script and key; the gate", function=stage1)
python.call(name="stage 2: the restricted line; the host keys", function=stage2)
python.call(name="stage 3: the pinned host keys, the trigger, the watcher", function=stage3)
