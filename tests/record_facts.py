"""Record the lab's facts as JSON fixtures for the unit tests: what each fact's probe returned on the
DB host (every fact bootstrap and verify read, and uninstall's ``installed``) and on web1 (``web``, and
harden-sshd's and uninstall --sshd's ``sshd``), files and command results, as `remote.facts.read` would
parse it.

    labslot N .venv/bin/python -m lab up --web 2 --init chkconfig
    labslot N .venv/bin/fab bootstrap -I inventory/lab.yaml
    labslot N .venv/bin/python -m tests.record_facts tests/unit/fixtures/facts/lab_chkconfig.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from svrchain.core.inventory import Inventory
from svrchain.facts import Fact
from svrchain.facts.db import InstalledFact
from svrchain.facts.sshd import SshdFact
from svrchain.facts.web import WebFact
from svrchain.ops import db as ops_db
from svrchain.ops.db import db_facts
from svrchain.remote.connection import Host
from svrchain.remote.files import BACKUP_DIR, probe
from svrchain.remote.group import Session
from svrchain.steps.uninstall import db_paths
from tests.paths import LAB_INVENTORY


def db_recorded(inv: Inventory) -> list[Fact]:
    """The DB server's facts recorded: bootstrap's and verify's, and what uninstall finds installed."""
    return [*db_facts(inv), InstalledFact(list(db_paths(inv).values()), BACKUP_DIR, ops_db.dbora(inv).init_script)]


def web_recorded() -> list[Fact]:
    """A web server's facts recorded: its own (keys, gate, sudo) and its sshd's."""
    return [WebFact(), SshdFact()]


def record(session: Session, host: Host, facts: list[Fact]) -> dict:
    """Each fact's files and command results on ``host``, by fact name."""
    inv = session.inv
    out = {}
    for f in facts:
        stdin = f.stdin(inv)
        states, results = probe(host, f.files(inv), f.commands(inv), f.prelude(inv), stdin)
        out[f.name] = {
            "files": {p: None if not s.exists else {"content": s.content.decode(errors="replace"),
                                                    "mode": f"{s.mode:o}" if s.mode is not None else None,
                                                    "owner": s.owner, "group": s.group}
                      for p, s in states.items()},
            "results": {n: {"code": r.code, "out": r.raw.decode(errors="replace")} for n, r in results.items()},
        }
    return out


def main(path: str) -> None:
    with Session.open(LAB_INVENTORY) as s:
        data = {"db": record(s, s.db, db_recorded(s.inv)), "web1": record(s, s.webs[0], web_recorded())}
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
