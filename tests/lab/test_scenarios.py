"""Errors and faults on the lab, as two tables of cases (tests/lab/scenarios.py reads them), each case
from the module's baseline and back to it, on one SysV lab (neither depends on the init system).

Errors: unreachable hosts, unknown and changed host keys, a port that does not speak SSH: one clear line
per host, non-zero exit, the other hosts still served, nothing changed on them; trust-hosts pins keys
only after showing them. Faults of real server rooms: the chain degrades clearly, nothing is lost, and
a later run repairs it."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import hosts as labhosts
from svrchain.core.errors import HostError
from svrchain.core.plan import FileSpec
from svrchain.remote.files import WRITE_SCRIPT
from svrchain.remote.group import Session
from tests.lab.conftest import lab_of
from tests.lab.scenarios import (
    HOSTS,
    KNOWN_HOSTS,
    ApachePid,
    Bytes,
    Call,
    Case,
    Console,
    Ctx,
    DbRestart,
    Fab,
    Install,
    KeyChange,
    KnownHostsFile,
    Manifest,
    OnlyKeyType,
    PowerOff,
    Silent,
    run_case,
    take_baseline,
    wait_host_key,
)
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab
AK = "/root/.ssh/authorized_keys"


@pytest.fixture(scope="module")
def lab():
    """Errors and faults do not depend on the init system: SysV hosts."""
    yield from lab_of("sysv")


@pytest.fixture(scope="module")
def baseline(chain):
    return take_baseline(chain)


NOTHING_CHANGED = tuple(Manifest(h) for h in HOSTS)
WEBS_UNCHANGED = (Manifest("web1"), Manifest("web2"))
# push-key pins the web servers' keys for the trigger on the DB host (/etc/svrchain/known_hosts) from the
# inventory it is given (a host it cannot reach keeps its lines only under the same address and port):
# a run with the lab's inventory puts them back.
PINS_BACK = (Fab(("push-key",), 0, lab=True, out=(r"^db\s+pin-host-keys\s+changed\s",)),)


def fingerprints_shown(lab, ctx: Ctx) -> None:
    """trust-hosts --yes showed each host's own key (read on the host) and pinned exactly the lab's keys."""
    shown = ctx.results[-1].stdout
    for name in HOSTS:
        fp = lab.host(name).check_output("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert re.search(rf"^{name}\s+new\s+\S+ ssh-ed25519 {re.escape(fp)}$", shown, re.M), shown
    assert sorted(ctx.known.read_text().splitlines()) == sorted(
        (labhosts.STATE / "known_hosts").read_text().splitlines())


def nothing_pinned(lab, ctx: Ctx) -> None:
    assert ctx.known.read_text() == ""


def one_changed_one_unpinned(pinned: list[str]) -> str:
    """db: pinned; web1: a different key (the DB host's) under its address; web2: not pinned at all."""
    return f"{pinned[0]}\n198.18.0.21 ssh-ed25519 {pinned[0].split()[2]}\n"


@dataclass(frozen=True)
class CloneKey(KeyChange):
    """The host offers ``source``'s ed25519 host key, as a clone of one image does (its own is kept in
    /root/hk and put back by KeyChange's undo)."""

    source: str = "web1"

    def stage(self, lab, ctx: Ctx) -> None:
        key = lab.console(self.source, "cat /etc/ssh/ssh_host_ed25519_key").stdout
        pub = lab.console(self.source, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
        hk = "/etc/ssh/ssh_host_ed25519_key"
        lab.console(self.host, f"cp -a {hk} /root/hk && cp -a {hk}.pub /root/hk.pub && "
                               f"printf %s {shlex.quote(key)} > {hk} && printf %s {shlex.quote(pub)} > {hk}.pub && "
                               "pkill -HUP -x sshd")
        wait_host_key(lab, self.host)


ERRORS = [
    Case(
        "cloned-host-key",
        stage=(CloneKey("web2", "web1"),),
        known_hosts=lambda pinned: "".join(line + "\n" for line in pinned),
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        # web2 now offers web1's key: CHANGED for web2, and the warning names both
        steps=(Fab(("trust-hosts",), 3, out=(
            r"^web2\s+CHANGED\s",
            r"^warning: web1, web2 present the same host key \(ssh-ed25519 SHA256:\S+\): cloned from one image\?",
        )),),
        unchanged=(*NOTHING_CHANGED, KnownHostsFile()),
    ),
    Case(
        "unreachable-web",
        inventory={"web.servers.1.address": "198.18.0.99"},
        steps=(Fab(("push-key",), 3,
                   out=(r"^web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.99:22\): cannot connect: .*"
                        r"is the host up and its address right in",),
                   err=(r"\Asvrchain: push-key: failed on web2 \(see above\)\s*\Z",)),),
        unchanged=WEBS_UNCHANGED,
        repair=PINS_BACK,
    ),
    Case(
        "unreachable-db-in-verify",
        stage=(Console("db", "pkill -x sshd", "/usr/sbin/sshd"),),
        # only a host unreachable: exit 3, not a gap (2)
        steps=(Fab(("verify",), 3, lab=True,
                   out=(r"^db\s+reachable\s+UNREACHABLE\s+db \(198\.18\.0\.10:22\): connection refused",)),),
        unchanged=NOTHING_CHANGED,
    ),
    Case(
        "unknown-and-changed-host-keys",
        known_hosts=one_changed_one_unpinned,
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        steps=(
            Fab(("push-key",), 3,
                out=(r"^web1 .* host key CHANGED: it offers ssh-ed25519 SHA256:\S+, not the key pinned in",
                     r"^web2 .* host key unknown: it is not pinned in .*`fab trust-hosts`")),
            # a changed key: not connected to; the new one waits for --yes
            Fab(("trust-hosts",), 3, out=(r"^web1\s+CHANGED", r"^web2\s+new\s"), err=(r"--yes",)),
        ),
        unchanged=(*NOTHING_CHANGED, KnownHostsFile()),  # nothing pinned without --yes
    ),
    # web1 pinned with its ed25519 key now offers only ECDSA (as a man in the middle with a key of
    # another type would): a changed key, refused by trust-hosts --yes and by every login, never "new".
    Case(
        "another-key-type-is-a-changed-key",
        stage=(OnlyKeyType("web1", "ecdsa-sha2-nistp256"),),
        known_hosts=lambda pinned: "".join(x + "\n" for x in pinned),
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        steps=(
            Fab(("trust-hosts", "--yes"), 3,
                out=(r"^web1\s+CHANGED\s+198\.18\.0\.21 ecdsa-sha2-nistp256 SHA256:", r"^web2\s+ok\s"),
                err=(r"web1 \(198\.18\.0\.21\): host key CHANGED: it offers ecdsa-sha2-nistp256 \S+, not the "
                     r"ssh-ed25519 key pinned for it",)),
            Fab(("push-key",), 3, out=(r"^web1 .* host key CHANGED: it offers ecdsa-sha2-nistp256",)),
        ),
        unchanged=(*NOTHING_CHANGED, KnownHostsFile()),
    ),
    Case(
        "trust-hosts-pins-after-showing",
        known_hosts=lambda pinned: "",
        inventory={"connect.known_hosts": KNOWN_HOSTS},
        steps=(
            Fab(("trust-hosts", "--dry-run"), 0, out=(r"would pin 3 key\(s\)",)),
            Call(nothing_pinned),
            Fab(("trust-hosts", "--yes"), 0),
            Call(fingerprints_shown),
            Fab(("trust-hosts",), 0, count=((r"^\S+\s+ok\s", 3),)),
        ),
        unchanged=NOTHING_CHANGED,
    ),
    # web2's port 2222 accepts TCP in web2's own namespace and sends no SSH banner: push-key and
    # trust-hosts say so in one line (exit 3); verify --limit web1 checks web1 only. (That trust-hosts
    # checks such hosts at once, in one timeout, is tests/unit/test_cli_flags.py's, counted there.)
    Case(
        "banner-less-port",
        stage=(Silent("web2", 2222),),
        inventory={"web.servers.1.port": 2222},
        steps=(
            Fab(("push-key",), 3,
                out=(r"^web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.22:2222\): no SSH banner within 5s: "
                     r"something accepts TCP on that port but does not speak SSH",)),
            Fab(("trust-hosts",), 3, err=(r"\A\s*svrchain: web2: 198\.18\.0\.22:2222: no SSH banner within 5s",)),
            Fab(("verify", "--limit", "web1"), 0, lab=True,
                out=(r"\A[^\n]*db 198\.18\.0\.10, web1 198\.18\.0\.21 \(--limit: 1 of 2 web servers\)$",),
                not_out=(r"^web2\s",)),
        ),
        unchanged=WEBS_UNCHANGED,
        repair=PINS_BACK,
    ),
]


def two_quick_restarts(lab, ctx: Ctx) -> None:
    """Two DB restarts in quick succession: the last run is followed, after the last DB start, each run
    at most once; the pages are healthy."""
    seen = len(lab.console("db", "cat /var/log/svr_restart.log").stdout.splitlines())
    lab.console("db", "service dbora restart; service dbora restart")
    run = lab.settled()  # the last run is followed, whatever ran in between
    last_db_start = float(lab.console("db", "su postgres -c \"psql -tAc 'select extract(epoch from "
                                            "pg_postmaster_start_time())'\"").stdout)
    ready = float(lab.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split()[1])
    assert ready >= last_db_start
    for web in ("web1", "web2"):
        assert lab.wait_page(web, 200)[0] == 200  # restarted after the last DB start: healthy
    log = lab.console("db", "cat /var/log/svr_restart.log").stdout.splitlines()[seen:]
    followed = [ln.split("(run ")[1].split(")")[0] for ln in log if "restarting 2 web server(s)" in ln]
    # Triggers serialized; each run followed at most once, the last one certainly.
    assert run in followed and len(followed) == len(set(followed)) and 1 <= len(followed) <= 2, log


def truncated_write(lab, ctx: Ctx) -> None:
    """As if the connection dropped mid-transfer: the host gets fewer bytes than the checksum covers."""
    before = lab.host("web1").file(AK).content
    spec = FileSpec(AK, before + b"# more\n", 0o600)
    with Session.open(LAB_INVENTORY) as s, pytest.raises(HostError, match="arrived incomplete"):
        s.webs[0].check(WRITE_SCRIPT, spec.path, "600", "root:root", spec.sha256, "/var/backups/svrchain", "-", "-",
                        stdin=spec.content[:-5], what="writing")
    assert lab.host("web1").run("ls /root/.ssh/.svrchain.* 2>/dev/null").stdout == ""  # no temp file left


# /root/.ssh on a 16k tmpfs, filled up (the same files in it); undone by unmounting it.
FULL = ("cp -a /root/.ssh /root/ssh.keep && mount -t tmpfs -o size=16k tmpfs /root/.ssh && "
        "cp -a /root/ssh.keep/. /root/.ssh/ && chmod 700 /root/.ssh && "
        "dd if=/dev/zero of=/root/.ssh/filler bs=1k count=64 2>/dev/null; true")

# The on-call hook on the DB host: it writes what it was told to a file, which the case reads and removes.
HOOK_OUT = "/var/tmp/svrchain-oncall"
ON_CALL = {"trigger.on_failure": f"env | grep ^SVRCHAIN_ | sort > {HOOK_OUT}",
           "trigger.on_success": f"echo success >> {HOOK_OUT}.success"}


def hooks_logged(lab) -> int:
    """How many on_failure runs that exited 0 the trigger's log shows."""
    return lab.console("db", "cat /var/log/svr_restart.log").stdout.count("on_failure: done (exit 0)")


def count_hooks(lab, ctx: Ctx) -> None:
    """Before the case's DB restart: the hook runs logged so far."""
    ctx.staged["hooks"] = hooks_logged(lab)


def hook_told(**want: str) -> Call:
    """A step: the hook ran once on the DB host, as root, with these SVRCHAIN_* values (a prefix for
    REASONS), its exit was logged, and on_success did not run. The hook runs after the run's status is
    written: waited for (within the trigger's bound)."""

    def check(lab, ctx: Ctx) -> None:
        end = time.monotonic() + 30
        while hooks_logged(lab) < ctx.staged["hooks"] + 1 and time.monotonic() < end:
            time.sleep(0.2)
        assert hooks_logged(lab) == ctx.staged["hooks"] + 1
        out = lab.console("db", f"cat {HOOK_OUT}; rm -f {HOOK_OUT}; test ! -e {HOOK_OUT}.success").stdout
        told = dict(line.split("=", 1) for line in out.splitlines())
        for key, value in want.items():
            name = f"SVRCHAIN_{key.upper()}"
            assert told.get(name, "").startswith(value) if key == "reasons" else told.get(name) == value, told

    return Call(check)


FAULTS = [
    Case(
        "web-down-during-db-restart-tells-on-call",
        inventory=ON_CALL,
        stage=(Install(("install-svr-restart",), undo=("install-svr-restart",)), PowerOff("web2")),
        steps=(Call(count_hooks), DbRestart("failed", {"web1": "ok", "web2": "failed"}),
               hook_told(event="failure", result="failed", failed="web2", trigger="svr_restart",
                         reasons="web2: no restart after 3 attempts (exit 255)")),
        changed=(ApachePid("web1"),),
        repair=(Fab(("restart-chain", "--yes"), 0, lab=True,
                    out=(r"^web2\s+web\s+restarted by the chain\s.*ok$",)),),
    ),
    Case(
        "db-never-ready-tells-on-call",
        inventory={"db.ready": {"command": "false", "timeout": 3, "interval": 0.5}, **ON_CALL},
        stage=(Install(("install-svr-restart",), undo=("install-svr-restart",)),),
        steps=(Call(count_hooks), DbRestart("notready"),
               hook_told(event="failure", result="notready", failed="web1 web2",
                         reasons="the database was not ready after 3s: no web server restarted")),
        unchanged=(ApachePid("web1"), ApachePid("web2")),
    ),
    Case(
        "web-down-during-db-restart",
        stage=(PowerOff("web2"),),
        steps=(DbRestart("failed", {"web1": "ok", "web2": "failed"},
                         log=(r"web2 \(198\.18\.0\.22\): FAILED after 3 attempts",)),),
        changed=(ApachePid("web1"),),  # the others still restarted
        unchanged=(Manifest("web1"),),
        repair=(Fab(("restart-chain", "--yes"), 0, lab=True,
                    out=(r"^web2\s+web\s+restarted by the chain\s.*ok$",)),),
    ),
    Case(
        "two-quick-db-restarts",
        steps=(Call(two_quick_restarts),),
        unchanged=(Manifest("web1"), Manifest("web2")),
    ),
    Case(
        "db-never-ready",
        inventory={"db.ready": {"command": "false", "timeout": 3, "interval": 0.5}},
        stage=(Install(("install-svr-restart",), undo=("install-svr-restart",)),),
        steps=(DbRestart("notready", log=(r"database not ready after 3s: web servers NOT restarted",)),),
        unchanged=(ApachePid("web1"), ApachePid("web2"), Manifest("web1"), Manifest("web2")),
    ),
    Case(
        "changed-host-key",
        stage=(KeyChange("web1"),),
        steps=(
            DbRestart("failed", {"web1": "hostkey", "web2": "ok"},
                      log=(r"web1 \(198\.18\.0\.21\): REFUSED: its host key is not the one pinned",)),
            # web1 cannot be logged in to: the check is incomplete, exit 3 (the DB also owes it a restart: a gap)
            Fab(("verify",), 3, lab=True, out=(r"^web1\s+reachable\s+UNREACHABLE\s+.*host key CHANGED",)),
        ),
        unchanged=(ApachePid("web1"), Manifest("web1")),  # refused: not restarted, nothing written
        changed=(ApachePid("web2"),),
        repair=(Fab(("restart-chain", "--yes"), 0, lab=True,
                    out=(r"^web1\s+web\s+restarted by the chain\s.*ok$",)),),
    ),
    Case(
        "incomplete-transfer",
        steps=(Call(truncated_write),),
        unchanged=(Bytes("web1", AK), Manifest("web1")),  # the file as it was, no temporary file left
    ),
    Case(
        "full-disk",
        stage=(Console("web1", f"sed -i '/svrchain:/d' {AK}"),  # push-key must write
               Console("web1", FULL, "umount /root/.ssh && rm -rf /root/ssh.keep")),
        steps=(Fab(("push-key",), 1, lab=True,
                   out=(r"^web1(?=.* push-key )(?=.*writing /root/\.ssh/authorized_keys failed)"
                        r"(?=.*No space left on device)",)),),
        unchanged=(Bytes("web1", AK),),  # the old (drifted) file intact
        undo_then=(Bytes("web1", AK),),
        # a later push-key writes it: the baseline's authorized_keys, byte for byte (the manifest)
        repair=(Fab(("push-key",), 0, lab=True, out=(r"^web1\s+push-key\s+changed",)),),
    ),
]


@pytest.mark.parametrize("case", ERRORS, ids=str)
def test_error(chain, baseline, case, tmp_path):
    run_case(chain, baseline, case, tmp_path)


@pytest.mark.parametrize("case", FAULTS, ids=str)
def test_fault(chain, baseline, case, tmp_path):
    run_case(chain, baseline, case, tmp_path)


def test_verbose_shows_each_remote_command_and_the_log_keeps_the_run(chain, baseline, tmp_path):
    """-v on real hosts: each host's commands and exits; --log: the same lines, timestamped."""
    log = tmp_path / "runs.log"
    r = chain.fab("verify", "-v", "--log", str(log))
    assert r.returncode == 0, r.stdout + r.stderr
    for host in HOSTS:
        assert re.search(rf"^{host}\s+\$ sh -c ", r.stdout, re.M), r.stdout
        assert re.search(rf"^{host}\s+exit 0$", r.stdout, re.M), r.stdout
    lines = log.read_text().splitlines()
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z verify\[\d+\] "
    assert all(re.match(stamp, ln) for ln in lines)
    said = [re.sub(stamp, "", ln) for ln in lines]
    assert said[0] == f"run: verify --log {log} --verbose"
    assert said[1:-1] == r.stdout.splitlines() and said[-1].startswith("exit 0 (ok, ")
    assert "$ sh -c" not in chain.fab("verify").stdout  # without -v: no command lines


def site_inventory(tmp_path, web2: str = "") -> Path:
    """The lab as a site keeps it: its hosts in an Ansible INI inventory, svrchain's settings beside it."""
    data = labhosts.inventory_data()
    db, web = data["db"], data["web"]
    (tmp_path / "hosts.ini").write_text(
        f"[dbservers]\n{db.pop('name')} ansible_host={db.pop('address')}\n\n[webservers]\n"
        + "".join(f"{s['name']} ansible_host={s['address']}{web2 if s['name'] == 'web2' else ''}\n"
                  for s in web.pop("servers"))
        + "\n[all:vars]\nansible_user=root\nansible_port=22\n")
    data["ansible"] = {"inventory": "hosts.ini", "db_group": "dbservers", "web_group": "webservers"}
    path = tmp_path / "svrchain.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_site_ansible_inventory_names_the_hosts_of_a_real_run(chain, baseline, tmp_path):
    """verify with the hosts from an Ansible inventory: the same hosts, every check ok; its ansible_port
    is where svrchain connects (web2 on a port nothing listens on: unreachable, named)."""
    r = chain.fab("verify", inventory=site_inventory(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].endswith(": db 198.18.0.10, web1 198.18.0.21, web2 198.18.0.22")
    r = chain.fab("verify", inventory=site_inventory(tmp_path, " ansible_port=2299"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.search(r"^web2\s+reachable\s+UNREACHABLE\s+web2 \(198\.18\.0\.22:2299\): ", r.stdout, re.M), r.stdout
