"""The trigger (svrchain/files/svr_restart.sh) as the real bash program, against a stand-in ssh and
readiness probe (tests/unit/fake_trigger.py): readiness, backoff, a refused host key, serialized
runs, an owed restart, a lost answer, and settings it refuses. Expected values are written here."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from svrchain.core import render
from tests.unit import fake_trigger
from tests.unit.fake_trigger import Trigger

WEB1, WEB2 = fake_trigger.address(1), fake_trigger.address(2)


@pytest.fixture
def trig():
    t = fake_trigger.make()
    yield t
    fake_trigger.remove(t)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by make install")
def test_the_trigger_is_shellcheck_clean():
    r = subprocess.run(["shellcheck", str(render.TRIGGER_SOURCE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_ready_restarts_every_web_server_once_and_says_so(trig: Trigger):
    r = trig.run("start")
    assert r.returncode == 0, (r.stderr, trig.log)
    st = trig.status
    assert st.result == "ok" and st.run == "1234.5678"
    assert set(st.webs) == {"web1", "web2"}
    for web, address in (("web1", WEB1), ("web2", WEB2)):
        assert len(trig.restarts(address)) == 1
        assert st.restarted(web) is not None and st.restarted(web) >= st.ready
    assert trig.owed() == []
    assert "database ready (run 1234.5678): restarting 2 web server(s)" in trig.log
    assert (trig.root / "var/lib/svrchain/svr_restart.run").read_text().split()[0] == "1234.5678"


def test_every_call_uses_the_pinned_options_the_restricted_key_and_curve25519(trig: Trigger):
    assert trig.run("start").returncode == 0
    calls = trig.ssh_calls("restart")
    assert len(calls) == 2
    args = calls[0][1]
    options = render.ssh_options(trig.inv)
    assert any(args[i:i + len(options)] == options for i in range(len(args)))
    assert args[:4] == ["-n", "-T", "-i", f"{trig.root}/key"]
    assert args[-6:-4] == ["-o", "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org"]
    assert args[-4:-2] == ["-o", "ControlMaster=no"]
    assert sorted(c[1][-2] for c in calls) == [f"root@{WEB1}", f"root@{WEB2}"]
    # The connections opened in advance, while the database starts (the head start), and closed after.
    assert len([c for c in trig.ssh_calls() if "-N" in c[1] and "ControlMaster=yes" in c[1]]) == 2
    # Every call, the connections opened in advance (by the connector, a process of its own) too.
    assert all(any(c[1][i:i + len(options)] == options for i in range(len(c[1])))
               for c in trig.ssh_calls() if "-Q" not in c[1])  # (ssh -Q kex: a question to ssh itself)
    assert len([c for c in trig.ssh_calls() if "-O" in c[1]]) == 2


def test_restarts_through_open_connections_go_out_at_once_beyond_max_parallel():
    """Issue 23: max_parallel bounds the handshakes; the restarts through connections opened while the
    database started (no handshake left to make) all go out at once. Four web servers, max_parallel 1,
    each restart taking a while: every restart was asked for before the first one ended."""
    t = fake_trigger.make(webs=4, max_parallel=1)
    try:
        # Ready once every connection is open (each leaves its socket).
        sockets = " ".join(f"-e {t.root}/run/svrchain/svr_restart/web{i}" for i in range(1, 5)).replace(" -e", " -a -e")
        t.configure(fake_trigger.inventory(t.root, 4, db={"ready": {"command": f"test {sockets}", "timeout": 30,
                                                                    "interval": 0.05}}, max_parallel=1))
        for i in range(1, 5):
            t.host(fake_trigger.address(i), "slow 0.5")
        assert t.run("start").returncode == 0, t.log
        asked = [when for when, _ in t.ssh_calls("restart")]
        ended = [x for i in range(1, 5) for x in t.restarts(fake_trigger.address(i))]
        assert len(asked) == 4 and len(ended) == 4
        assert max(asked) < min(ended), (asked, ended)
        # Connections are opened one at a time (max_parallel 1), each once.
        assert len([c for c in t.ssh_calls() if "-N" in c[1]]) == 4
    finally:
        fake_trigger.remove(t)


def ready_within_1s(t: Trigger) -> None:
    """The database's readiness waited for 1 s (the least), not the stand-ins' 2 s: for a database never ready."""
    t.configure(t.inv.model_copy(update={"db": t.inv.db.model_copy(update={
        "ready": t.inv.db.ready.model_copy(update={"timeout": 1})})}))


def test_not_ready_restarts_nothing_and_the_status_says_notready(trig: Trigger):
    ready_within_1s(trig)
    trig.probe("never")
    r = trig.run("start")
    assert r.returncode == 1
    assert trig.status.result == "notready" and trig.status.ready is None
    assert trig.ssh_calls("restart") == [] and trig.restarts(WEB1) == []
    assert "database not ready after 1s: web servers NOT restarted" in trig.log


def test_ready_only_after_consecutive_successes(trig: Trigger):
    trig.probe(4)  # fails 3 times, then answers
    assert trig.run("start").returncode == 0
    calls = len((trig.root / "probe" / "calls").read_text().split())
    assert calls == 4
    assert len(trig.restarts(WEB1)) == 1


def test_retries_back_off_1_then_2_seconds(trig: Trigger):
    """In seconds of 100 ms (SVRCHAIN_TRIGGER_MS): the waits themselves; the seconds they stand for are in
    the log lines, and are what a real second makes of them (test_the_tests_shorter_seconds...)."""
    trig.env["SVRCHAIN_TRIGGER_MS"] = "100"
    trig.host(WEB1, "fail 2")
    assert trig.run("start").returncode == 0, trig.log
    times = [t for t, args in trig.ssh_calls("restart") if args[-2] == f"root@{WEB1}"]
    assert len(times) == 3
    # A sleep is never shorter than asked (no upper bound: a loaded machine may be slower).
    assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19, times
    assert len(trig.restarts(WEB1)) == 1 and trig.status.webs["web1"].state == "ok"
    assert "web1 (127.0.0.21): attempt 1 failed (exit 255), retrying in 1s" in trig.log
    assert "web1 (127.0.0.21): attempt 2 failed (exit 255), retrying in 2s" in trig.log


def waits(script: Path, env: dict[str, str], as_nobody: bool) -> list[str]:
    """What the trigger's ``seconds`` makes of 1, 2 and 30 seconds, with its own test-root and
    shorter-second settings read from ``env``: the script's head and that function, run by bash."""
    text = script.read_text()
    head = text[:text.index("CONF=")] + text[text.index("seconds() {"):text.index("# A sleep without a process")]
    program = head + 'for n in 1 2 30; do seconds "$n"; echo "$WAIT"; done\n'
    drop = ["setpriv", f"--reuid={fake_trigger.NOBODY}", f"--regid={fake_trigger.NOBODY}", "--clear-groups"]
    r = subprocess.run([*(drop if as_nobody else []), "bash", "-c", program], env={"PATH": os.environ["PATH"], **env},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.skipif(not fake_trigger.AS_ROOT, reason="needs root: the trigger as root and as nobody")
def test_the_tests_shorter_seconds_are_whole_seconds_without_the_test_root_and_as_root(trig: Trigger):
    """The backoff and the supervisor wait whole seconds (the numbers the log says), unless a run that is
    not root's has both the test root and SVRCHAIN_TRIGGER_MS: root never takes them."""
    both = {"SVRCHAIN_TRIGGER_ROOT": str(trig.root), "SVRCHAIN_TRIGGER_MS": "100"}
    assert waits(trig.script, {}, as_nobody=True) == ["1", "2", "30"]
    assert waits(trig.script, {"SVRCHAIN_TRIGGER_MS": "100"}, as_nobody=True) == ["1", "2", "30"]
    assert waits(trig.script, both, as_nobody=False) == ["1", "2", "30"]  # root
    assert waits(trig.script, both, as_nobody=True) == ["0.100", "0.200", "3.000"]
    for odd in ("0", "1000", "1e3", "-5", "100 ", "50;id"):
        assert waits(trig.script, {**both, "SVRCHAIN_TRIGGER_MS": odd}, as_nobody=True) == ["1", "2", "30"], odd


def test_a_refused_host_key_is_not_retried_and_is_owed(trig: Trigger):
    trig.host(WEB1, "hostkey")
    r = trig.run("start")
    assert r.returncode == 1
    assert len([c for c in trig.ssh_calls("restart") if c[1][-2] == f"root@{WEB1}"]) == 1
    assert trig.status.webs["web1"].state == "hostkey" and trig.status.webs["web2"].state == "ok"
    assert trig.status.result == "failed"
    assert "REFUSED: its host key is not the one pinned" in trig.log
    assert trig.owed() == ["web1"]


def test_two_starts_at_once_are_serialized_and_the_run_is_followed_once(trig: Trigger):
    trig.host(WEB1, "slow 0.5")
    first = trig.popen("start")
    end = time.monotonic() + 30  # (a net)
    while not trig.ssh_calls("restart") and time.monotonic() < end:  # the first is restarting, locked
        time.sleep(0.01)
    second = trig.popen("start")
    assert first.wait(30) == 0 and second.wait(30) == 0
    assert len(trig.restarts(WEB1)) == 1 and len(trig.restarts(WEB2)) == 1
    assert trig.log.count("restarting 2 web server(s)") == 1
    assert "its run 1234.5678 was already followed; nothing to do" in trig.log


def test_a_new_run_is_followed_again(trig: Trigger):
    assert trig.run("start").returncode == 0
    assert trig.run("start").returncode == 0  # the same run: nothing
    trig.set_run("1300.42")
    assert trig.run("start").returncode == 0
    assert len(trig.restarts(WEB1)) == 2 and trig.status.run == "1300.42"


@pytest.fixture
def once():
    """A trigger that tries each web server once (no backoff to wait through)."""
    t = fake_trigger.make(retries=1)
    yield t
    fake_trigger.remove(t)


def test_a_lost_web_server_is_owed_then_restarted_by_retry_when_it_answers(once: Trigger):
    trig = once
    trig.host(WEB2, "down")
    assert trig.run("start").returncode == 1
    assert trig.owed() == ["web2"] and trig.restarts(WEB2) == []
    owed = (trig.root / "var/lib/svrchain/svr_restart.owed/web2").read_text().split()
    assert owed[0] == "1234.5678" and float(owed[1]) == pytest.approx(trig.status.ready)
    assert trig.run("retry").returncode == 0  # still away: still owed
    assert trig.owed() == ["web2"]
    trig.host(WEB2, "ok")
    assert trig.run("retry").returncode == 0
    assert trig.owed() == [] and len(trig.restarts(WEB2)) == 1
    assert len(trig.restarts(WEB1)) == 1  # the others are not restarted again
    assert "web2: the restart owed since the database's run 1234.5678 is done" in trig.log


def calls_to(trig: Trigger, address: str) -> list[list[str]]:
    """The ssh calls made to one web server (its connection opened, each verb, its exit)."""
    return [a for _, a in trig.ssh_calls() if f"root@{address}" in a]


def test_an_owed_web_server_gets_no_handshake_until_its_port_answers_then_one_connection(once: Trigger):
    """Issue 23: an owed web server is probed with a TCP connect, never an SSH handshake, while its
    port refuses; the first retry after it answers restarts it, over one connection (its status and
    its restart through it)."""
    trig = once
    trig.host(WEB2, "down")
    assert trig.run("start").returncode == 1 and trig.owed() == ["web2"]
    before = len(calls_to(trig, WEB2))
    for _ in range(3):
        assert trig.run("retry").returncode == 0
    assert len(calls_to(trig, WEB2)) == before and trig.owed() == ["web2"]  # no ssh at all while away
    assert "answers again" not in trig.log
    trig.host(WEB2, "ok")
    assert trig.run("retry").returncode == 0
    calls = calls_to(trig, WEB2)[before:]
    assert [c[-1] if "-N" not in c and "-O" not in c else c[c.index("-N" if "-N" in c else "-O")] for c in calls] \
        == ["-N", "status", "restart", "-O"], calls
    assert len([c for c in calls if "ControlMaster=yes" in c]) == 1  # the one connection
    assert len({c[c.index("-S") + 1] for c in calls}) == 1  # every call through its socket
    assert trig.owed() == [] and len(trig.restarts(WEB2)) == 1
    assert "web2: answers again (port " in trig.log


def test_a_port_that_answers_with_a_failing_gate_backs_off_until_it_stops_answering(once: Trigger):
    """A web server whose port answers but whose restart fails is not tried every interval (the SSH
    tries back off); once its port has stopped answering, its next answer is tried at once."""
    trig = once
    trig.host(WEB2, "down")
    trig.run("start")
    (trig.host(WEB2, "says") / "says").write_text("the gate is broken\n")
    assert trig.run("retry").returncode == 0
    tried = len(calls_to(trig, WEB2))
    assert trig.owed() == ["web2"] and "web2: next try in 5s" in trig.log
    assert trig.run("retry").returncode == 0
    assert len(calls_to(trig, WEB2)) == tried  # backing off: no handshake
    trig.host(WEB2, "down")
    trig.run("retry")  # away: its backoff is forgotten
    trig.host(WEB2, "ok")
    assert trig.run("retry").returncode == 0
    assert trig.owed() == [] and len(trig.restarts(WEB2)) == 1


def test_a_new_run_tries_every_web_server_and_leaves_no_backoff_behind(once: Trigger):
    """A web server backing off is tried by the next run of the database like every other; once no
    restart is owed, nothing of its backoff is left (the lab's scenarios found a stale one)."""
    trig = once
    trig.host(WEB2, "down")
    trig.run("start")
    (trig.host(WEB2, "says") / "says").write_text("the gate is broken\n")
    assert trig.run("retry").returncode == 0 and "web2: next try in 5s" in trig.log
    control = trig.root / "run/svrchain/svr_restart"
    assert [p.name for p in control.glob("*.wait")] == ["web2.wait"]
    trig.host(WEB2, "ok")
    trig.set_run("1300.42")
    assert trig.run("start").returncode == 0  # a new run: web2 is tried at once, backoff or not
    assert trig.owed() == [] and len(trig.restarts(WEB2)) == 1
    assert list(control.glob("*.wait")) == []


def test_the_watcher_restarts_an_owed_web_server_as_soon_as_it_answers():
    """The watcher probes the owed web server every interval, however long it was away (no backoff
    while it does not answer), and no ssh reaches it before its port answers."""
    t = fake_trigger.make(retries=1)
    watcher = None
    try:
        t.host(WEB2, "down")
        t.run("start")
        assert t.owed() == ["web2"]
        before = len(calls_to(t, WEB2))
        watcher = t.popen("watch")
        t.looks(5)  # five of its looks (0.1 s apart) away, each one probing it (a retry at a time)
        assert len(calls_to(t, WEB2)) == before and t.owed() == ["web2"]
        t.host(WEB2, "ok")
        end = time.monotonic() + 30  # (a net: it comes within an interval or two)
        while t.owed() and time.monotonic() < end:
            time.sleep(0.05)
        assert t.owed() == [] and len(t.restarts(WEB2)) == 1, t.log
        assert len(t.restarts(WEB1)) == 1
    finally:
        if watcher:
            watcher.terminate()
            watcher.wait(10)
        fake_trigger.remove(t)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is installed by make lab-deps")
def test_the_watchers_look_forks_no_process():
    """Issue 21: the watcher's look at the database (a run told by its process, nothing owed) and its
    wait between looks start no process: seen with strace over ten looks (0.05 s apart)."""
    t = fake_trigger.make()
    lines = [ln for ln in render.trigger_config(t.inv).decode().splitlines()
             if not ln.startswith(("run_command=", "run_interval="))]
    me = "nobody" if fake_trigger.AS_ROOT else subprocess.run(["id", "-un"], capture_output=True,
                                                             text=True).stdout.strip()
    name = f"svrchain_db_{t.root.name[-6:]}"
    t.configure(text=("\n".join([*lines, "run_interval=0.05", f"run_process=^{name}$", f"run_user={me}"])
                      + "\n").encode())
    uid = fake_trigger.NOBODY if fake_trigger.AS_ROOT else os.getuid()
    db = spawn_as(uid, name)
    watcher = t.popen("watch")
    try:
        t.looks(3)  # past its start (its first look, the run adopted): in its loop
        assert t.traced_looks(watcher.pid, 10) == []  # ten looks, traced from strace's attach
        assert t.tick.read_text().split()[1].startswith(f"{uid}:{db.pid}.")
        assert len(t.tick.read_text().split()) == 2
    finally:
        db.kill()
        db.wait()
        watcher.terminate()
        watcher.wait(10)
        fake_trigger.remove(t)


def test_a_web_server_booted_since_is_owed_nothing(once: Trigger):
    trig = once
    trig.host(WEB2, "down")
    trig.run("start")
    trig.host(WEB2, "ok", booted=time.time() + 1)
    assert trig.run("retry").returncode == 0
    assert trig.owed() == [] and trig.restarts(WEB2) == []
    assert "web2: restarted or booted after the database's run 1234.5678 was ready: no restart owed" in trig.log


def test_a_restart_whose_answer_was_lost_is_not_repeated(trig: Trigger):
    trig.host(WEB1, "lost")
    assert trig.run("start").returncode == 0, trig.log
    assert len(trig.restarts(WEB1)) == 1
    assert [a[-1] for _, a in trig.ssh_calls() if a[-2:-1] == [f"root@{WEB1}"]] == ["restart", "status"]
    assert trig.status.webs["web1"].state == "ok" and trig.owed() == []
    assert "its answer was lost (exit 255), but its gate restarted it after the database was ready" in trig.log


def test_a_hung_web_server_is_given_up_within_the_restart_timeout():
    t = fake_trigger.make(retries=1, restart_timeout=1)
    t.env["SVRCHAIN_TRIGGER_MS"] = "200"  # its 1 s is 200 ms here (the log still says 1 s)
    try:
        t.host(WEB1, "hang")
        assert t.run("start", timeout=60).returncode == 1  # (a hang would never end: 60 s is only a net)
        assert t.status.webs["web1"].state == "failed" and t.owed() == ["web1"]
        assert "FAILED after 1 attempts (exit 124)" in t.log, t.log  # timeout(1)'s exit: killed at restart_timeout
    finally:
        fake_trigger.remove(t)


def test_the_ready_check_and_the_run_command_are_run_as_written(trig: Trigger):
    out = trig.root / "out"
    pwned = f"{out}.pwned"
    hostile = " ".join([
        f"""a='x; touch {pwned}'; [ "$(printf '%s|' "$a" `echo b` \\$c)" = "x; touch {pwned}|b|\\$c|" ]""",
        f"""&& echo "ran $((6 * 7)) 'q' \\"d\\"" > {out} # $(touch {pwned})"""])
    inv = trig.inv.model_copy(update={"db": trig.inv.db.model_copy(update={
        "ready": trig.inv.db.ready.model_copy(update={"command": hostile}),
        "run": trig.inv.db.run.model_copy(update={"command": "echo 'run;$(id)' | tr ';' _ # \"x\""})})})
    trig.configure(inv)
    assert trig.run("run").stdout == "run_$(id)\n"
    assert trig.run("start").returncode == 0, trig.log
    assert out.read_text() == "ran 42 'q' \"d\"\n"
    assert not (trig.root / "out.pwned").exists()
    assert trig.status.run == "run_$(id)"


@pytest.mark.parametrize("setting", [
    "retries=3; touch /tmp/x", "retries=08", "retries=", "ready_timeout=1e3", "connect_timeout=-1",
    "ready_interval=.5", "key=relative/key", "log=/var/log/../../etc/passwd", "known_hosts=/a b",
    "web=web1 198.18.0.21 22 root extra", "web=web1 -oProxyCommand=x 22 root", "web=web1 198.18.0.21 99999 root",
    "web=web1 198.18.0.21 22 Root", "web=w/1 198.18.0.21 22 root", "ready_command=  ", "ready_command=a\rb",
    "unknown=1", "no equals sign", "run_process=^x", "run_user=postgres", "run_executable=/x", "hook_timeout=0",
    "on_failure=", "on_success=a\tb",
])
def test_a_bad_setting_is_refused_and_nothing_restarted(trig: Trigger, setting: str):
    key = setting.split("=", 1)[0]
    lines = [ln for ln in render.trigger_config(trig.inv).decode().splitlines()
             if not (key in ("retries", "ready_timeout", "connect_timeout", "ready_interval", "key", "log",
                             "known_hosts", "ready_command") and ln.startswith(key + "="))]
    trig.configure(text=("\n".join([*lines, setting]) + "\n").encode())
    r = trig.run("start")
    assert r.returncode == 1
    assert "REFUSED" in r.stderr and "web servers NOT restarted" in trig.log
    assert trig.ssh_calls() == [] and trig.status.started is None


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o700])
def test_settings_others_could_write_are_refused(trig: Trigger, mode: int):
    trig.configure(mode=mode)
    r = trig.run("start")
    assert r.returncode == 1 and "REFUSED" in r.stderr and trig.ssh_calls() == []
    trig.configure(mode=0o644)
    assert trig.run("config").returncode == 0


def test_settings_through_a_link_or_missing_are_refused(trig: Trigger):
    real = trig.root / "real.conf"
    trig.config.rename(real)
    trig.config.symlink_to(real)
    r = trig.run("start")
    assert r.returncode == 1 and "not a regular file of root's" in r.stderr
    trig.config.unlink()
    r = trig.run("start")
    assert r.returncode == 1 and "missing or unreadable" in r.stderr and trig.ssh_calls() == []


def test_a_duplicate_setting_or_web_server_is_refused(trig: Trigger):
    text = render.trigger_config(trig.inv).decode()
    for extra in ("retries=2\n", "web=web1 198.18.0.99 22 root\n"):
        trig.configure(text=(text + extra).encode())
        assert trig.run("start").returncode == 1 and trig.ssh_calls() == []


@pytest.mark.parametrize(("settings", "said"), [
    ("run_process=^x", "no run_user (the account the database's main process runs as)"),
    ("run_process=^x\nrun_user=Root", "is not a valid setting"),
])
def test_a_run_process_without_its_owner_is_refused(trig: Trigger, settings: str, said: str):
    lines = [ln for ln in render.trigger_config(trig.inv).decode().splitlines() if not ln.startswith("run_command=")]
    trig.configure(text=("\n".join([*lines, settings]) + "\n").encode())
    r = trig.run("start")
    assert r.returncode == 1 and said in r.stderr, r.stderr
    assert trig.ssh_calls() == [] and trig.status.started is None


def test_a_run_user_that_is_no_account_means_no_run(trig: Trigger):
    lines = [ln for ln in render.trigger_config(trig.inv).decode().splitlines() if not ln.startswith("run_command=")]
    trig.configure(text=("\n".join([*lines, "run_process=.", "run_user=no-such-account-svr"]) + "\n").encode())
    r = trig.run("run")
    assert (r.returncode, r.stdout) == (0, "none\n")
    assert "run_user no-such-account-svr is no account of this host: no process is the database's run" in trig.log


def test_the_config_verb_shows_the_settings_as_read(trig: Trigger):
    r = trig.run("config")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [f"{k}={v}" for k, v in render.trigger_settings(trig.inv)]
    assert f"web=web2 127.0.0.22 {trig.ports[WEB2].port} root" in r.stdout and "bound=" in r.stdout


def test_the_status_verb_prints_the_last_run(trig: Trigger):
    assert trig.run("status").returncode == 1  # no run yet
    trig.run("start")
    words = [ln.split()[0] for ln in trig.run("status").stdout.splitlines()]
    # The connector opens the connections while the database starts: its one "connected" line may come
    # before or after "ready", whichever ends first.
    assert words.count("connected") == 1 and words.count("web") == 2
    phases = [w for w in words if w != "connected"]
    assert phases[:3] == ["started", "ready", "run"] and phases[-1] == "finished"


def test_a_run_dir_others_can_write_is_refused(trig: Trigger):
    (trig.root / "run" / "svrchain").mkdir(mode=0o777)
    (trig.root / "run" / "svrchain").chmod(0o777)
    trig.own(trig.root / "run" / "svrchain")
    assert trig.run("start").returncode == 1
    assert "is not a directory of root's that only root can write" in trig.log
    assert trig.ssh_calls("restart") == []


def test_the_watcher_starts_the_trigger_for_a_new_run_once():
    t = fake_trigger.make()
    watcher = t.popen("watch")
    try:
        # Installing restarts nothing: the run going now counts as followed, once the watcher has read it
        # (under load that takes a while; a run changed before it would count as the installed one).
        handled = t.root / "var" / "lib" / "svrchain" / "svr_restart.run"
        t.looks(3)  # (its first look comes after the run is adopted, in the loop)
        assert handled.read_text().split()[0] == "1234.5678" and t.restarts(WEB1) == []
        t.set_run("2000.1")
        end = time.monotonic() + 30  # (a net: the run comes within an interval or two)
        while not (t.status.run == "2000.1" and t.status.finished is not None) and time.monotonic() < end:
            time.sleep(0.05)
        t.looks(5)  # five more looks at the run it followed
        assert len(t.restarts(WEB1)) == 1 and len(t.restarts(WEB2)) == 1
        assert t.log.count("new run of the database (2000.1): starting the trigger") == 1
    finally:
        watcher.terminate()
        watcher.wait(10)
        fake_trigger.remove(t)


def test_root_never_takes_the_test_root(tmp_path):
    """As root, SVRCHAIN_TRIGGER_ROOT is ignored: the real settings path is read."""
    if not fake_trigger.AS_ROOT:
        pytest.skip("needs root")
    script = tmp_path / "svrchain-test-no-such-trigger"
    shutil.copyfile(render.TRIGGER_SOURCE, script)
    (tmp_path / "etc/svrchain").mkdir(parents=True)
    (tmp_path / "etc/svrchain" / f"{script.name}.conf").write_bytes(b"")
    r = subprocess.run(["bash", str(script), "config"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "SVRCHAIN_TRIGGER_ROOT": str(tmp_path)})
    assert r.returncode == 1
    assert f"/etc/svrchain/{script.name}.conf: missing or unreadable" in r.stderr
    assert str(tmp_path) not in r.stderr


def spawn_as(uid: int, name: str) -> subprocess.Popen:
    """A process of account ``uid`` whose whole command line is ``name`` (perl's $0, as an attacker's
    look-alike would do it), for the tests of whose process a run is."""
    return subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                             "perl", "-e", f'$0 = "{name}"; sleep 60'])


def named(p: subprocess.Popen, name: str) -> None:
    """Wait until process ``p`` (spawn_as's) has taken its name ``name`` (30 s is only a net)."""
    end = time.monotonic() + 30
    while Path(f"/proc/{p.pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace") != name:
        assert p.poll() is None and time.monotonic() < end, name
        time.sleep(0.01)


@pytest.mark.skipif(not fake_trigger.AS_ROOT, reason="needs root: processes of two accounts")
def test_an_oracle_pmon_lookalike_of_another_account_is_never_the_run(trig: Trigger):
    """Issue 19 item 1: an Oracle-shaped inventory (a run is ora_pmon_<SID>, the owner's). The
    attacker (uid 1, daemon) starts ora_pmon_<SID> first, so it is the oldest; the owner's is the run."""
    sid = f"T{trig.root.name[-6:].replace('_', 'X')}"
    owner = "nobody"  # (oracle.owner: the trigger's tests run as nobody, which owns the real pmon here)
    inv = fake_trigger.inventory(trig.root, db={"script": None, "run": None,
                                                "oracle": {"home": "/u01/app/oracle", "owner": owner, "sid": sid}})
    assert inv.db.run.process == f"^ora_pmon_{sid}$" and inv.db.run.user == owner
    trig.configure(inv)
    attacker = spawn_as(1, f"ora_pmon_{sid}")
    named(attacker, f"ora_pmon_{sid}")
    time.sleep(0.05)  # five clock ticks (a process's start time is counted in 10 ms ticks): the older
    pmon = spawn_as(fake_trigger.NOBODY, f"ora_pmon_{sid}")
    try:
        named(pmon, f"ora_pmon_{sid}")
        run = trig.run("run").stdout.strip()
        assert run.startswith(f"{fake_trigger.NOBODY}:{pmon.pid}."), (run, attacker.pid, pmon.pid)
        assert trig.run("start").returncode == 0, trig.log
        assert trig.status.run == run and len(trig.restarts(WEB1)) == 1
        # The instance goes down: the attacker's pmon is still there, and is not a run.
        pmon.kill()
        pmon.wait()
        assert trig.run("run").stdout.strip() == "none"
    finally:
        for p in (attacker, pmon):
            p.kill()
            p.wait()


def test_a_killed_watcher_is_run_again_by_its_supervisor_and_ticks():
    """SysV hosts: the init script runs the supervisor, which runs the watcher again after a kill -9;
    the watcher writes its tick ("<epoch> <run>") each time it looks (verify reads it)."""
    t = fake_trigger.make()
    t.env["SVRCHAIN_TRIGGER_MS"] = "100"  # it starts the watcher again after 1 s of 100 ms
    supervisor = t.popen("supervise")
    pidfile = t.root / "run" / "svrchain" / "svr_restart_watch.pid"
    tick = t.root / "run" / "svrchain" / "svr_restart_watch.tick"

    def watcher_pid(not_this: str = "") -> str:
        end = time.monotonic() + 30  # (a net: it comes back within a few seconds)
        while True:
            pid = pidfile.read_text().strip() if pidfile.exists() else ""
            if pid and pid != not_this:
                return pid
            assert time.monotonic() < end, t.log
            time.sleep(0.1)

    try:
        first = watcher_pid()
        t.looks(2)  # (the pid file comes before its first look)
        when, run = tick.read_text().split()
        assert run == "1234.5678" and abs(float(when) - time.time()) < 60
        subprocess.run(["kill", "-9", first], check=True)
        second = watcher_pid(first)
        assert f"the watcher (pid {first}) ended (exit 137): starting it again" in t.log
        supervisor.terminate()
        assert supervisor.wait(10) == 0
        assert subprocess.run(["kill", "-0", second], capture_output=True).returncode != 0  # ended with it
    finally:
        supervisor.kill()
        supervisor.wait(10)
        fake_trigger.remove(t)


def test_what_a_web_server_answers_cannot_forge_or_hide_a_log_line(once: Trigger):
    # web1 answers with a carriage return and escape sequences that, shown raw, would print over the
    # FAILED line a line saying it was restarted (and clear the screen).
    trig = once
    forged = "\r2026-01-01T00:00:00+0000 web1 (127.0.0.21): web server restarted\x1b[K\x1b[2J\x07\n"
    (trig.host(WEB1, "says") / "says").write_text(forged)
    trig.run("start")
    for log in (trig.log, (trig.root / "trigger.log").read_text()):
        failed = [ln for ln in log.splitlines() if "web1" in ln and "FAILED" in ln]
        assert failed and "\\x0d2026-01-01T00:00:00+0000 web1 (127.0.0.21): web server restarted\\x1b[K" in failed[0]
        assert not any(c in log for c in "\r\x1b\x07"), repr(log)
        assert "web1 (127.0.0.21): web server restarted" not in log.replace(failed[0], "")


def command_lines() -> list[str]:
    """Every process's command line, as ps shows it to every account."""
    lines = []
    for p in Path("/proc").iterdir():
        try:
            lines.append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return lines


def test_the_ready_check_and_the_run_command_never_show_on_a_command_line(trig: Trigger):
    # A readiness check and a run command that hold a password (the settings file is 600): a local
    # user who reads every process's command line while they run never sees it.
    inv = trig.inv.model_copy(update={"db": trig.inv.db.model_copy(update={
        "ready": trig.inv.db.ready.model_copy(update={
            "command": f"PW=Ready-Hunter2; sleep 0.1; {trig.root}/bin/probe", "timeout": 30}),
        "run": trig.inv.db.run.model_copy(update={"command": f"PW=Run-Hunter2; sleep 0.1; cat {trig.root}/runid"})})})
    trig.configure(inv)
    trig.probe(3)
    seen, done = set(), threading.Event()

    def watch() -> None:
        # A look every 20 ms (a look takes a few): each command that holds a password runs 0.1 s or more
        # (its sleep: some five looks), so a command line that showed it would be seen several times over; a
        # look without a pause spent a core for the whole run (1.6 s of CPU).
        while not done.is_set():
            seen.update(x for x in command_lines() if "Hunter2" in x)
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = trig.run("start")
    finally:
        done.set()
        watcher.join()
    assert r.returncode == 0, trig.log
    assert trig.status.run == "1234.5678" and (trig.root / "probe" / "calls").read_text().count("x") >= 3
    assert not seen, seen


# -- the on-call hooks (on_failure, on_success) ------------------------------------------------------

ENV = ("SVRCHAIN_EVENT", "SVRCHAIN_RESULT", "SVRCHAIN_RUN", "SVRCHAIN_FAILED", "SVRCHAIN_REASONS",
       "SVRCHAIN_TRIGGER", "SVRCHAIN_WEB_COUNT", "SVRCHAIN_LINE")


def hooked(**trigger: int | str) -> Trigger:
    """A trigger trying each web server once, whose hooks write their environment to hook.<event>."""
    dump = "; ".join(f'printf "%s=%s\\n" {v} "${{{v}-(unset)}}"' for v in ENV)
    return fake_trigger.make(retries=1, **{
        "on_failure": f"{{ {dump}; }} >>@/hook.failure", "on_success": f"{{ {dump}; }} >>@/hook.success", **trigger})


def hook_env(t: Trigger, event: str) -> dict[str, str] | None:
    f = t.root / f"hook.{event}"
    return dict(line.split("=", 1) for line in f.read_text().splitlines()) if f.exists() else None


@pytest.fixture
def hk():
    t = hooked()
    t.configure(t.inv.model_copy(update={"trigger": t.inv.trigger.model_copy(update={
        k: getattr(t.inv.trigger, k).replace("@", str(t.root)) for k in ("on_failure", "on_success")})}))
    yield t
    fake_trigger.remove(t)


def test_on_failure_names_the_web_server_left_unrestarted_and_why(hk: Trigger):
    hk.host(WEB2, "down")
    r = hk.run("start")
    assert r.returncode == 1  # the run's result, whatever the hook did
    env = hook_env(hk, "failure")
    assert env == {
        "SVRCHAIN_EVENT": "failure", "SVRCHAIN_RESULT": "failed", "SVRCHAIN_RUN": "1234.5678",
        "SVRCHAIN_FAILED": "web2", "SVRCHAIN_TRIGGER": "svr_restart", "SVRCHAIN_WEB_COUNT": "2",
        "SVRCHAIN_REASONS": "web2: no restart after 1 attempts (exit 255): ssh: connect to host 127.0.0.22 "
                            "port 22: Connection refused",
        "SVRCHAIN_LINE": "(unset)",  # the hook's own line is not handed on to what it runs
    }
    assert hook_env(hk, "success") is None
    assert "on_failure: done (exit 0)" in hk.log


def test_on_failure_names_a_refused_host_key_and_every_server_left(hk: Trigger):
    hk.host(WEB1, "hostkey")
    hk.host(WEB2, "down")
    assert hk.run("start").returncode == 1
    env = hook_env(hk, "failure")
    assert env is not None and env["SVRCHAIN_FAILED"] == "web1 web2"
    assert env["SVRCHAIN_REASONS"].startswith(f"web1: its host key is not the one pinned in {hk.root}/known_hosts; "
                                              "web2: no restart after 1 attempts (exit 255)")


def test_on_failure_when_the_database_never_became_ready(hk: Trigger):
    ready_within_1s(hk)
    hk.probe("never")
    assert hk.run("start").returncode == 1
    env = hook_env(hk, "failure")
    assert env is not None and env["SVRCHAIN_RESULT"] == "notready" and env["SVRCHAIN_FAILED"] == "web1 web2"
    assert env["SVRCHAIN_REASONS"] == "the database was not ready after 1s: no web server restarted"
    assert hk.ssh_calls("restart") == []


def test_on_success_after_a_run_that_restarted_every_web_server(hk: Trigger):
    assert hk.run("start").returncode == 0
    env = hook_env(hk, "success")
    assert env is not None and env["SVRCHAIN_RESULT"] == "ok" and env["SVRCHAIN_FAILED"] == ""
    assert hook_env(hk, "failure") is None
    assert hk.run("start").returncode == 0  # the same run again: followed already, no hook
    assert len((hk.root / "hook.success").read_text().splitlines()) == len(ENV)


def test_a_failing_hook_is_logged_and_changes_nothing():
    t = fake_trigger.make(retries=1, on_success="echo 'no route to the mail relay'; printf 'x\\033[2Jy' >&2; exit 3")
    try:
        assert t.run("start").returncode == 0
        assert t.status.result == "ok" and t.owed() == []
        assert "on_success: FAILED (exit 3); its output: no route to the mail relay x [2Jy" in t.log, t.log
        assert "\033" not in t.log
    finally:
        fake_trigger.remove(t)


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie (an orphan's exit status waits for init, which
    on some machines, these tests' own among them, reaps only every second or two)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(")") + 2:].startswith("Z")


def test_a_hung_hook_is_stopped_with_what_it_started(tmp_path):
    t = fake_trigger.make(retries=1, hook_timeout=1, restart_timeout=10)
    t.env["SVRCHAIN_TRIGGER_MS"] = "200"  # its 1 s is 200 ms here (the log still says 1 s)
    try:
        pids = t.root / "pids"
        t.configure(t.inv.model_copy(update={"trigger": t.inv.trigger.model_copy(update={
            "on_success": f"sleep 300 & echo $! > {pids}; sleep 300"})}))
        r = t.run("start", timeout=60)  # (only a net: the hook is stopped after 1 s)
        assert r.returncode == 0 and t.status.result == "ok"
        assert "on_success: FAILED: stopped after 1s (hook_timeout)" in t.log, t.log
        child = int(pids.read_text())
        end = time.monotonic() + 10
        while not ended(child) and time.monotonic() < end:
            time.sleep(0.05)
        assert ended(child)  # its background child went with it
    finally:
        fake_trigger.remove(t)


def test_the_hook_line_shows_in_no_process_list():
    """A webhook's address in the hook line (a secret) is not in any process's arguments."""
    t = fake_trigger.make(retries=1)
    try:
        out = t.root / "ps"
        t.configure(t.inv.model_copy(update={"trigger": t.inv.trigger.model_copy(update={
            "on_success": f"cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' > {out} # token=S3CRET-hook"})}))
        assert t.run("start").returncode == 0
        seen = out.read_text()
        assert "/proc/" in seen  # it read the process list (cat's own arguments are there)
        assert "S3CRET" not in seen
    finally:
        fake_trigger.remove(t)


def test_the_config_verb_shows_the_hooks(hk: Trigger):
    r = hk.run("config")
    assert r.stdout.splitlines() == [f"{k}={v}" for k, v in render.trigger_settings(hk.inv)]
    assert "hook_timeout=30" in r.stdout and "on_failure={ " in r.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="a mount namespace needs root")
def test_nap_sleeps_even_where_dev_fd_is_missing():
    """Without /dev/fd (process substitution fails), nap still waits: the trigger's waits never spin."""
    text = render.TRIGGER_SOURCE.read_text()
    nap = text[text.index("nap() {"):]
    nap = nap[:nap.index("\n}\n") + 3]
    script = f"{nap}\nfor _ in 1 2 3; do nap 0.1; done"
    start = time.monotonic()
    r = subprocess.run(["unshare", "--mount", "sh", "-c",
                        'mount -t tmpfs none /dev && test ! -e /dev/fd && exec bash -c "$0"', script],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start >= 0.28  # three naps of 0.1 s, not three instant returns
