"""The steps without the lab: each run against fake hosts (tests/unit/fake_host.py) that answer the
probe from the facts recorded on a bootstrapped chkconfig lab, or from a bare host's, and record every
command and write instead of running it. The lab tests stay for what crosses SSH."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import re
import threading
import types
from pathlib import Path

import pytest

from svrchain.core import estate, render, sshd, trigger_status, webtier
from svrchain.core.errors import GapFound, HostError, SvrchainError
from svrchain.core.plan import FileState, Result
from svrchain.facts.chain import current_run_command
from svrchain.facts.sshd import SshdFact, parse_supported
from svrchain.facts.web import WebFact
from svrchain.ops import db as ops_db
from svrchain.ops import sshd as ops_sshd
from svrchain.ops.db import db_facts
from svrchain.remote.group import Session
from svrchain.steps import account, chain
from svrchain.steps import harden as harden_step
from svrchain.steps.bootstrap import run_bootstrap
from svrchain.steps.chain import run_restart_chain
from svrchain.steps.doctor import run_doctor
from svrchain.steps.harden import run_harden_sshd
from svrchain.steps.keys import run_push_key
from svrchain.steps.rotate import run_rotate_key
from svrchain.steps.uninstall import run_uninstall
from svrchain.steps.verify import run_verify
from tests.record_facts import db_recorded, web_recorded
from tests.unit import fake_host
from tests.unit.fake_host import session_of
from tests.unit.test_ops import inventory

INV = inventory({})
WRITTEN = {spec.path: spec.content for svc in ops_db.services(INV) for init in ("sysv", "systemd")
           for spec in svc.files(init)}


def lab_db() -> fake_host.State:
    return fake_host.recorded(INV, "db", db_recorded(INV), written=WRITTEN)


KNOWN = {line.split()[0]: line.split(None, 1)[1] for line in
         fake_host.recorded(INV, "db", db_facts(INV)).files["/etc/svrchain/known_hosts"].content.decode().splitlines()}


AUTHKEYS = "/root/.ssh/authorized_keys"


def file_of(path: str, read: bytes) -> FileState:
    """A file as a FILE_CMD read it (its mode, owner and group line, then its bytes)."""
    meta, _, content = read.partition(b"\n")
    mode, owner, group = meta.decode().split()
    return FileState(path, True, content, int(mode, 8), owner, group)


def lab_web(name: str = "web1") -> fake_host.State:
    """web1 as recorded (with this checkout's gate); web2 as web1 with web2's host key (as pinned on
    the DB server when the facts were recorded)."""
    state = fake_host.recorded(INV, "web1", web_recorded())
    commands = WebFact().commands(INV)
    state.answers[commands["gate"]] = fake_host.ok("755 root root\n" + render.gate(INV).decode())
    state.reads = {render.GATE: commands["gate"], AUTHKEYS: commands["authkeys"]}
    state.files[AUTHKEYS] = file_of(AUTHKEYS, state.answers[commands["authkeys"]].raw)
    if name != "web1":
        address = next(s.address for s in INV.web.servers if s.name == name)
        state.answers[commands["hostkeys"]] = fake_host.ok(f"{KNOWN[address]} root@{name}\n")
        state.host_key = KNOWN[address].split()[1]
    return state


def lab() -> Session:
    """A session on the recorded, bootstrapped lab: its DB server and two web servers."""
    return session_of(INV, lab_db(), {"web1": lab_web(), "web2": lab_web("web2")})


def test_bootstrap_on_the_recorded_lab_runs_nothing_but_the_probe():
    s = lab()
    try:
        run_bootstrap.__wrapped__(s)
    finally:
        print(s.out.getvalue())
    print(s.out.getvalue())
    assert [c.what for h in s.hosts for c in h.calls] == []


def calls(s: Session) -> list[tuple[str, str]]:
    """Every command the fake hosts were asked to run (not the probes), as (host, what)."""
    return [(h.name, c.what) for h in s.hosts for c in h.calls]


def statuses(s: Session) -> list[tuple[str, str, str]]:
    return [(o.host, o.step, o.status) for o in s.outcomes]


# --- harden-sshd: written, checked (sshd -t, sshd -T), reloaded, a fresh login proved -----------------

RELOAD = ops_sshd.RELOAD.strip().splitlines()[0]  # the reload after a failed proof (the pidfile as an arg)
HARDEN_INV = inventory({"harden": {"algorithms": False}})
CHECK = "$(command -v sshd || echo /usr/sbin/sshd) -t && $(command -v sshd || echo /usr/sbin/sshd) -T"
USED = ("pubkeyauthentication yes\npasswordauthentication no\nkbdinteractiveauthentication no\n"
        "permitemptypasswords no\nauthenticationmethods publickey\npermitrootlogin without-password\n")


def sshd_host(effective: str = "port 22\npasswordauthentication yes\npidfile /run/sshd.pid\n") -> fake_host.State:
    """A web server with Debian's sshd_config (it includes sshd_config.d) and no svrchain drop-in."""
    commands = SshdFact().commands(HARDEN_INV)
    return fake_host.State(
        files={sshd.MAIN: FileState(sshd.MAIN, True, b"Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n",
                                    0o644, "root", "root")},
        answers={commands["effective"]: fake_host.ok(effective),
                 commands["supported"]: fake_host.ok("kex\ncipher\nmac\n"),
                 commands["hostkeys"]: fake_host.ok("ssh-ed25519\n"),
                 CHECK: fake_host.ok(USED)})


def harden(web: fake_host.State, dry_run: bool = False) -> Session:
    s = session_of(HARDEN_INV, fake_host.State(), {"web1": web})
    with contextlib.suppress(SvrchainError):  # a failure is in the outcomes
        run_harden_sshd.__wrapped__(s, dry_run=dry_run)
    return s


def test_harden_writes_the_dropin_checks_it_reloads_then_logs_in_again():
    web = sshd_host()
    s = harden(web)
    assert statuses(s) == [("web1", "harden-sshd", "changed")]
    assert [w for _, w in calls(s)] == [f"write {sshd.DROPIN}", CHECK.split("\n")[0], "set -- /run/sshd.pid", "true"]
    assert b"PasswordAuthentication no" in web.files[sshd.DROPIN].content


def test_harden_dry_run_runs_nothing():
    s = harden(sshd_host(), dry_run=True)
    assert statuses(s) == [("web1", "harden-sshd", "would change")]
    assert calls(s) == []
    assert "PasswordAuthentication no" in s.out.getvalue()


def test_harden_on_a_hardened_host_is_ok_and_runs_nothing():
    web = sshd_host()
    harden(web)
    web.answers[SshdFact().commands(HARDEN_INV)["effective"]] = fake_host.ok(USED + "pidfile /run/sshd.pid\n")
    s = harden(web)
    assert statuses(s) == [("web1", "harden-sshd", "ok")]
    assert calls(s) == []


def test_harden_puts_the_file_back_when_sshd_would_not_use_it():
    web = sshd_host()
    web.answers[CHECK] = fake_host.ok(USED.replace("passwordauthentication no", "passwordauthentication yes"))
    s = harden(web)
    assert statuses(s) == [("web1", "harden-sshd", "failed")]
    assert "a setting read earlier wins" in s.outcomes[0].detail
    assert [w for _, w in calls(s)] == [f"write {sshd.DROPIN}", CHECK.split("\n")[0], 'rm -f -- "$1"']
    assert sshd.DROPIN not in web.files  # put back as found: there was none


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """harden-sshd's pauses between fresh logins, recorded instead of slept (the tests assert them)."""
    seen: list[float] = []
    monkeypatch.setattr(harden_step, "time", types.SimpleNamespace(sleep=seen.append))
    return seen


def test_harden_reloads_the_old_file_when_the_fresh_login_fails(pauses):
    web = sshd_host()
    refused = fake_host.failed("Permission denied (publickey)")
    web.fail = lambda call: refused if call.script == "true" and sshd.DROPIN in web.files else None
    s = session_of(HARDEN_INV, fake_host.State(), {"web1": web, "web2": sshd_host()})
    with pytest.raises(SvrchainError, match="harden-sshd: failed on web1"):
        run_harden_sshd.__wrapped__(s)
    assert statuses(s) == [("web1", "harden-sshd", "failed"), ("web2", "harden-sshd", "skipped")]
    assert "put back and sshd reloaded" in s.outcomes[0].detail
    assert [w for _, w in calls(s)] == [f"write {sshd.DROPIN}", CHECK.split("\n")[0], "set -- /run/sshd.pid",
                                        "true", "true", "true", 'rm -f -- "$1"', RELOAD, "true"]
    assert pauses == [0.3, 0.3]  # between the three fresh logins that failed


def test_harden_says_keep_your_sessions_when_no_login_works_even_put_back(pauses):
    web = sshd_host()
    web.fail = lambda call: fake_host.failed("Permission denied (publickey)") if call.script == "true" else None
    s = harden(web)
    assert statuses(s) == [("web1", "harden-sshd", "failed")]
    assert "keep your open sessions and check sshd by hand" in s.outcomes[0].detail
    assert [w for _, w in calls(s)][-5:] == ['rm -f -- "$1"', RELOAD, "true", "true", "true"]
    assert pauses == [0.3, 0.3] * 2  # three fresh logins after the reload, three after putting it back


# --- bootstrap on a bare DB server: what it would do (dry run), then what it does, in order ----------


def bare_db() -> fake_host.State:
    """The recorded DB server without svrchain's files (its scripts, units, settings, pinned keys)."""
    state = lab_db()
    for path in [*WRITTEN, "/etc/svrchain/known_hosts"]:
        state.files.pop(path, None)
    return state


def test_bootstrap_dry_run_on_a_bare_db_server_runs_nothing():
    s = session_of(INV, bare_db(), {"web1": lab_web()})
    with contextlib.suppress(SvrchainError):
        run_bootstrap.__wrapped__(s, dry_run=True)
    print(s.out.getvalue())
    assert calls(s) == []
    assert ("db", "install-dbora", "would change") in statuses(s)


def test_bootstrap_on_a_bare_db_server_writes_then_registers_in_order():
    db = bare_db()
    s = session_of(INV, db, {"web1": lab_web()})
    run_bootstrap.__wrapped__(s)  # (its closing verify finds no gap, or it raises)
    assert [w for _, w in calls(s)] == FIRST_RUN
    assert db.files["/etc/init.d/dbora"].content == WRITTEN["/etc/init.d/dbora"]
    again = session_of(INV, db, {"web1": lab_web()})
    run_bootstrap.__wrapped__(again)
    assert calls(again) == []


def test_bootstrap_stops_at_the_failed_step_and_says_which_command_failed():
    db = bare_db()
    db.fail = lambda call: fake_host.failed("error reading information on service svr_restart") \
        if call.what == "chkconfig --add svr_restart" else None
    s = session_of(INV, db, {"web1": lab_web()})
    with pytest.raises(SvrchainError, match="bootstrap: failed on db"):
        run_bootstrap.__wrapped__(s)
    assert [w for _, w in calls(s)] == FIRST_RUN[:FIRST_RUN.index("chkconfig --add svr_restart") + 1]
    failed = [o for o in s.outcomes if o.failed]
    assert [(o.host, o.step) for o in failed] == [("db", "install-svr-restart")]
    assert failed[0].detail.endswith("error reading information on service svr_restart")
    assert not any(o.step in ("install-watcher", "adopt") for o in s.outcomes)


FIRST_RUN = [
    "write /usr/local/lib/svrchain/dbora", "write /etc/init.d/dbora",
    "chkconfig --del dbora", "chkconfig --add dbora", "chkconfig --level 345 dbora on",
    "write /etc/svrchain/known_hosts",
    "write /etc/svrchain/svr_restart.conf", "write /usr/local/lib/svrchain/svr_restart",
    "write /etc/init.d/svr_restart",
    "chkconfig --del svr_restart", "chkconfig --add svr_restart", "chkconfig --level 345 svr_restart on",
    "write /etc/init.d/svr_restart_watch", "chkconfig --del svr_restart_watch", "chkconfig --add svr_restart_watch",
    "chkconfig --level 345 svr_restart_watch on", "/etc/init.d/svr_restart_watch restart",
]


# --- verify, restart-chain's plan, rotate-key on the recorded lab ------------------------------------


def test_verify_on_the_recorded_lab_finds_no_gap_and_runs_nothing():
    s = lab()
    run_verify.__wrapped__(s)
    assert calls(s) == []
    assert all(h.probes for h in s.hosts)


def test_verify_names_the_gap_when_a_web_servers_gate_was_edited():
    web2 = lab_web("web2")
    gate = WebFact().commands(INV)["gate"]
    web2.answers[gate] = fake_host.ok(web2.answers[gate].stdout + "# edited\n")
    s = session_of(INV, lab_db(), {"web1": lab_web(), "web2": web2})
    with pytest.raises(GapFound, match="1 gap"):
        run_verify.__wrapped__(s)
    assert "svr-restart-gate: content" in s.out.getvalue()
    assert calls(s) == []


def test_restart_chain_dry_run_shows_the_plan_and_runs_nothing():
    s = lab()
    run_restart_chain.__wrapped__(s, dry_run=True)
    assert calls(s) == []
    assert "3. db: wait for svr_restart to restart web1, web2 after the DB is ready" in s.out.getvalue()


NEW_PUB = "/root/.ssh/svr_restart_key.new.pub"
NEW_KEY = KNOWN["198.18.0.22"] + " svrchain-new\n"  # (any ed25519 public key: web2's host key here)


def rotating(works: bool = True) -> Session:
    """The recorded lab, where ssh-keygen makes NEW_KEY and the new key works on web1 (and on web2 if
    ``works``)."""
    db = lab_db()
    db.answers[f"cat {NEW_PUB}"] = fake_host.ok(NEW_KEY)
    if not works:
        db.fail = lambda call: fake_host.failed("Permission denied") \
            if call.script.startswith("ssh ") and "198.18.0.22" in call.script else None
    return session_of(INV, db, {"web1": lab_web(), "web2": lab_web("web2")})


def by_host(s: Session) -> dict[str, list[str]]:
    return {h.name: [c.what.split(" ")[0] if c.what.startswith("ssh ") else c.what for c in h.calls]
            for h in s.hosts}


def test_rotate_key_dry_run_runs_nothing():
    s = rotating()
    run_rotate_key.__wrapped__(s, dry_run=True)
    assert statuses(s) == [("db", "rotate-key", "would change")]
    assert calls(s) == []


def test_rotate_key_adds_proves_swaps_then_removes_the_old_lines():
    s = rotating()
    run_rotate_key.__wrapped__(s)
    steps = by_host(s)
    assert steps["db"][1:] == [f"cat {NEW_PUB}", "ssh", "ssh",
                               f"mv -f {NEW_PUB[:-4]} /root/.ssh/svr_restart_key && mv -f {NEW_PUB} "
                               "/root/.ssh/svr_restart_key.pub"]
    assert steps["web1"] == steps["web2"] == ["write /root/.ssh/authorized_keys"] * 2
    assert [o.status for o in s.outcomes if o.failed] == []


def test_rotate_key_rolls_back_when_the_new_key_does_not_work_on_one():
    s = rotating(works=False)
    with pytest.raises(SvrchainError, match="rotate-key: failed on"):
        run_rotate_key.__wrapped__(s)
    steps = by_host(s)
    assert steps["db"][-1] == f"rm -f {NEW_PUB[:-4]} {NEW_PUB}"
    assert not any(w.startswith("mv -f") for w in steps["db"])  # the old key stays in place
    assert steps["web1"] == steps["web2"] == ["write /root/.ssh/authorized_keys"] * 2  # added, then removed
    authkeys = WebFact().commands(INV)["authkeys"]
    assert s.webs[0].state.answers[authkeys].raw == lab_web().answers[authkeys].raw  # as it was, byte for byte
    assert "the old key" in s.out.getvalue() and "is still in place everywhere" in s.out.getvalue()


def test_harden_on_the_recorded_web_server_names_only_what_its_sshd_has():
    """web1's sshd as recorded on the lab (Debian's sshd_config with its Include, its `sshd -T`, the
    algorithms its OpenSSH knows, its host keys): the drop-in is written, checked, reloaded and a fresh
    login proved, and it names only algorithms that OpenSSH knows and the host key types it has."""
    s = lab()
    run_harden_sshd.__wrapped__(s)
    assert statuses(s) == [("web1", "harden-sshd", "changed"), ("web2", "harden-sshd", "changed")]
    assert [w for h, w in calls(s) if h == "web1"] == [f"write {sshd.DROPIN}", CHECK.split("\n")[0],
                                                      "set -- /run/sshd.pid", "true"]
    web = s.webs[0].state
    commands = SshdFact().commands(INV)
    supported = parse_supported(web.answers[commands["supported"]].stdout)
    dropin = dict(line.split(" ", 1) for line in web.files[sshd.DROPIN].content.decode().splitlines()
                  if line and not line.startswith("#"))
    for setting, query in (("KexAlgorithms", "kex"), ("Ciphers", "cipher"), ("MACs", "mac")):
        named = dropin[setting].split(",")
        assert named and set(named) <= supported[query], (setting, named)
    assert dropin["HostKeyAlgorithms"].split(",") == web.answers[commands["hostkeys"]].stdout.split()
    assert dropin["PasswordAuthentication"] == "no"


# --- uninstall on the web servers: svrchain's line out, every other byte kept ------------------------


def test_uninstall_dry_run_runs_nothing():
    s = lab()
    run_uninstall.__wrapped__(s, dry_run=True, yes=True)
    assert calls(s) == []
    assert ("web1", "uninstall", "would change") in statuses(s) and ("db", "uninstall", "would change") in statuses(s)


def test_uninstall_on_the_recorded_db_server_takes_out_what_svrchain_put_there():
    """The DB server as recorded after bootstrap (what exists of svrchain's files, which hold its mark,
    its state directories): the watcher stopped first, each service unregistered before its script
    goes, every file found removed (backed up first, the private key never), then the state."""
    s = lab()
    run_uninstall.__wrapped__(s, yes=True)
    installed = lab_db().answers[db_recorded(INV)[-1].commands(INV)["present"]].stdout.split()
    key = INV.key.path
    done = [w for h, w in calls(s) if h == "db"]
    assert done[0] == "/etc/init.d/svr_restart_watch stop 2>/dev/null; true"
    for service in ("svr_restart_watch", "svr_restart", "dbora"):
        assert done.index(f"chkconfig --del {service}") < done.index(f"remove /etc/init.d/{service}")
    removed = {p for w in done if w.startswith("remove ") for p in w.split()[1:]}
    assert removed == set(installed) - {key}
    assert f"rm -f -- {key}" in done and "rm -rf /var/lib/svrchain" in done
    assert "(a private key: not backed up)" in s.out.getvalue()


def test_uninstall_takes_svrchains_line_out_and_keeps_the_admins():
    s = lab()
    before = s.webs[0].state.files[AUTHKEYS].content
    run_uninstall.__wrapped__(s, yes=True)
    assert [c.what for c in s.webs[0].calls] == [
        f"write {AUTHKEYS}", f"remove {render.GATE}",
        f"rm -rf {render.GATE_STATE}; rmdir /var/lib/svrchain 2>/dev/null; true", f"rm -rf {render.RUN_DIR}"]
    after = s.webs[0].state.files[AUTHKEYS].content
    assert b"svr-restart-gate" in before and b"svr-restart-gate" not in after
    assert after == b"".join(ln for ln in before.splitlines(keepends=True) if b"svr-restart-gate" not in ln)


# --- doctor: one read-only command per web server, judged in pure code --------------------------------

DOCTOR_PROBE = gzip.decompress((Path(__file__).parent / "fixtures" / "doctor" / "web1-debian12.probe.gz").read_bytes())


def test_doctor_runs_one_read_per_web_server_and_names_the_findings():
    web1, web2 = lab_web(), lab_web("web2")
    web1.answers[webtier.PROBE] = Result(0, "", "", DOCTOR_PROBE)
    web2.fail = lambda call: Result(1, "", "sh: 1: cannot fork", b"")
    s = session_of(INV, lab_db(), {"web1": web1, "web2": web2})
    with pytest.raises(HostError, match="doctor: reading a web server failed"):
        run_doctor.__wrapped__(s)
    assert calls(s) == [("web1", "export LC_ALL=C"), ("web2", "export LC_ALL=C")]
    out = s.out.getvalue()
    assert "pgsql.auto_reset_persistent" in out and "FINDING" in out
    assert "web2 (198.18.0.22:22): the doctor's read failed (exit 1): sh: 1: cannot fork" in out


def test_doctor_strict_is_a_gap_when_there_is_a_finding():
    web1 = lab_web()
    web1.answers[webtier.PROBE] = Result(0, "", "", DOCTOR_PROBE)
    s = session_of(INV, lab_db(), {"web1": web1})
    with pytest.raises(GapFound, match=r"doctor: 2 finding\(s\) on web1.*--strict"):
        run_doctor.__wrapped__(s, strict=True)


# --- restart-chain: the DB restarted, the chain followed, the rest repaired through the gate ---------

@pytest.fixture
def health_url():
    """A web server's health URL on loopback (the fake hosts have none): answers 200."""
    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    # (shutdown waits for serve_forever's next look: every 0.05 s here, not its default 0.5 s)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


FAILED_RUN = ("started 1700000000.5\nready 1700000002.0\nrun 101:62.1600000\nweb web1 ok 1700000003.0\n"
              "web web2 failed 1700000003.0\nfinished 1700000003.5 failed\n")


def chain_lab(url: str, new_run: str = "101:62.1600000", status: str = FAILED_RUN) -> Session:
    """The recorded lab where the DB's restart gives ``new_run``, the trigger's run says ``status`` (by
    default: it restarted web1, not web2), and both health URLs answer."""
    inv = inventory({"web": {"servers": [{"name": f"web{i}", "address": f"198.18.0.2{i}", "health_url": url}
                                         for i in (1, 2)]}})
    db = fake_host.recorded(inv, "db", db_facts(inv), written=WRITTEN)
    s = session_of(inv, db, {"web1": lab_web(), "web2": lab_web("web2")})
    run = current_run_command(inv)
    db.answers[f"date +%s.%N; {run}; {chain.restart_command(s)} >/dev/null </dev/null"] = \
        fake_host.ok("1700000000.0 101:61.1505160\n")
    db.answers[chain._WAIT_READY] = fake_host.ok("1700000002.0\n")
    db.answers[run] = fake_host.ok(new_run + "\n")
    db.answers[trigger_status._WAIT] = fake_host.ok(status)
    return s


def test_restart_chain_restarts_the_db_then_repairs_what_the_chain_missed(health_url):
    s = chain_lab(health_url)
    run_restart_chain.__wrapped__(s, yes=True)
    steps = by_host(s)
    assert steps["web1"] == []  # the chain restarted it
    assert steps["web2"] == [chain.gate_restart("root").strip().splitlines()[0]]
    assert [w.split(";")[0] for w in steps["db"]] == ["date +%s.%N", "end=$(( $(date +%s) + $1 ))",
                                                      current_run_command(s.inv).split(";")[0],
                                                      trigger_status._WAIT.strip().splitlines()[0].split(";")[0]]
    out = s.out.getvalue()
    assert "restarted by the chain" in out and "restarted directly" in out


def test_restart_chain_fails_when_the_service_did_not_give_a_new_run(health_url):
    s = chain_lab(health_url, new_run="101:61.1505160")
    with pytest.raises(HostError, match="the service restart did not restart the database"):
        run_restart_chain.__wrapped__(s, yes=True)
    assert by_host(s)["web1"] == by_host(s)["web2"] == []  # nothing restarted on the web servers


def test_restart_chain_of_a_standby_restarts_no_web_server_and_says_so(health_url):
    """A pair's standby: its trigger's run says 'standby' (nothing restarted): restart-chain repairs
    nothing through the gates and reports it, instead of waiting for restarts that never come."""
    s = chain_lab(health_url, status="started 1700000000.5\nrun 101:62.1600000\nfinished 1700000002.5 standby\n")
    run_restart_chain.__wrapped__(s, yes=True)
    steps = by_host(s)
    assert steps["web1"] == steps["web2"] == []
    assert s.out.getvalue().count("not restarted: db is a standby") == 4  # each web line and table row


# --- push-key with a dedicated account: created, its sudo rule, its line; root's line taken out ------

DEDICATED = inventory({"web": {"user": "svrrestart"}})


def dedicated_web(name: str) -> fake_host.State:
    """A web server of the recorded lab (web.user root there), read with web.user svrrestart, which
    does not exist yet."""
    state = fake_host.recorded(DEDICATED, "web1", [WebFact()])
    commands = WebFact().commands(DEDICATED)
    state.answers[commands["gate"]] = fake_host.ok("755 root root\n" + render.gate(DEDICATED).decode())
    state.answers[commands["account"]] = fake_host.failed("", 1)
    root_keys = lab_web().answers[WebFact().commands(INV)["authkeys"]].raw
    state.files[AUTHKEYS] = file_of(AUTHKEYS, root_keys)
    if name != "web1":
        address = next(s.address for s in INV.web.servers if s.name == name)
        state.answers[commands["hostkeys"]] = fake_host.ok(f"{KNOWN[address]} root@{name}\n")
        state.host_key = KNOWN[address].split()[1]
    return state


def test_push_key_moves_the_line_to_a_new_dedicated_account_in_order():
    db = fake_host.recorded(DEDICATED, "db", db_facts(DEDICATED), written=WRITTEN)
    s = session_of(DEDICATED, db, {"web1": dedicated_web("web1"), "web2": dedicated_web("web2")})
    run_push_key.__wrapped__(s)
    steps = by_host(s)
    assert steps["db"] == []  # the pinned host keys were right
    assert steps["web1"] == steps["web2"] == [
        account.create_command("svrrestart"), account.state_dir_command("svrrestart", "svrrestart").split("\n")[0],
        f"write {render.SUDOERS}", "write /var/lib/svrrestart/.ssh/authorized_keys", f"write {AUTHKEYS}"]
    web1 = s.webs[0].state.files
    assert b"svrrestart ALL=(root) NOPASSWD:" in web1[render.SUDOERS].content
    assert b"svr-restart-gate" not in web1[AUTHKEYS].content
    assert b'command="/usr/local/sbin/svr-restart-gate"' in web1["/var/lib/svrrestart/.ssh/authorized_keys"].content


def test_push_key_dry_run_with_a_dedicated_account_runs_nothing():
    db = fake_host.recorded(DEDICATED, "db", db_facts(DEDICATED), written=WRITTEN)
    s = session_of(DEDICATED, db, {"web1": dedicated_web("web1")})
    run_push_key.__wrapped__(s, dry_run=True)
    assert calls(s) == []
    assert ("web1", "account", "would change") in statuses(s)


# --- an estate: a web server of two chains (web2: shop's db and billing's db2 restart it) ------------------

DB2_LINE = (b'restrict,from="198.18.0.11",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,'
            b'command="/usr/local/sbin/svr-restart-gate" ssh-ed25519 '
            b'AAAAC3NzaC1lZDI1NTE5AAAAIDB2REVZREVZREVZREVZREVZREVZREVZREVZREVZREVZ svrchain:svr_restart@db2\n')
GONE_LINE = DB2_LINE.replace(b"@db2", b"@db9").replace(b"198.18.0.11", b"198.18.0.19")


def estate_lab(chain: str = "shop", done: tuple[str, ...] = ("shop",)) -> Session:
    """The recorded lab as chain ``chain`` of an estate: shop (db: web1, web2) and billing (db2: web2)."""
    db2 = INV.db.model_copy(update={"name": "db2", "address": "198.18.0.11"})
    billing = INV.model_copy(update={"db": db2, "web": INV.web.model_copy(update={"servers": [INV.web.servers[1]]})})
    s = lab()
    s.estate = estate.Estate(INV.source, (estate.Chain("shop", INV), estate.Chain("billing", billing)))
    s.chain, s.done = chain, frozenset(done)
    return s


def test_push_key_on_an_estate_keeps_the_other_db_servers_line_and_drops_a_removed_ones():
    s = estate_lab()
    state = s.webs[1].state
    before = state.files[AUTHKEYS].content
    read = state.reads[AUTHKEYS]
    state.answers[read] = Result(0, "", "", state.answers[read].raw + DB2_LINE + GONE_LINE)
    run_push_key.__wrapped__(s)
    assert by_host(s)["web2"] == [f"write {AUTHKEYS}"] and by_host(s)["web1"] == []
    assert s.webs[1].state.files[AUTHKEYS].content == before + DB2_LINE  # db9's line out, the rest byte for byte
    run_push_key.__wrapped__(s)
    assert by_host(s)["web2"] == [f"write {AUTHKEYS}"]  # the second run wrote nothing


def test_uninstall_of_one_chain_keeps_the_gate_another_chain_needs():
    s = estate_lab()  # uninstall --chain shop: billing's db2 still restarts web2
    before = s.webs[1].state.files[AUTHKEYS].content
    run_uninstall.__wrapped__(s, yes=True)
    assert [c.what for c in s.webs[1].calls] == [f"write {AUTHKEYS}"]  # only db's line: the gate stays
    assert b"svrchain:svr_restart@db\n" in before and b"svrchain:svr_restart@db\n" not in s.webs[1].state.files[
        AUTHKEYS].content
    assert f"remove {render.GATE}" in [c.what for c in s.webs[0].calls]  # web1 is shop's alone


def test_uninstall_of_the_last_chain_of_a_web_server_takes_the_gate_out():
    s = estate_lab(done=("billing", "shop"))
    run_uninstall.__wrapped__(s, yes=True)
    assert f"remove {render.GATE}" in [c.what for c in s.webs[1].calls]


def test_verify_on_an_estate_names_a_removed_db_servers_line_as_a_gap():
    s = estate_lab()
    state = s.webs[1].state
    read = state.reads[AUTHKEYS]
    state.answers[read] = Result(0, "", "", state.answers[read].raw + DB2_LINE + GONE_LINE)
    with pytest.raises(GapFound, match="1 gap"):
        run_verify.__wrapped__(s)
    assert re.search(r"^web2 +authorized_keys +GAP +a line of svrchain:svr_restart@db9, a DB server that no longer "
                     r"restarts it \(`fab push-key` removes it\)$", s.out.getvalue(), re.M), s.out.getvalue()
    assert calls(s) == []
