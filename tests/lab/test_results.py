"""Results for CI and the admin's own SSH, on real hosts (SysV only: neither depends on the init system).

--json (validated against docs/output.schema.json) and --junit (parsed) from bootstrap and verify;
verify's line per host printed while another host is still not answering; fab smoke proving the
chain's path without restarting anything; an encrypted admin key held by ssh-agent; ProxyJump
through the DB host to a web server, with both host keys pinned."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import FAB, REPO, lab_of
from tests.paths import LAB_INVENTORY
from tests.unit.test_output import agent, ssh_add  # noqa: F401  (agent is a fixture)

pytestmark = pytest.mark.lab
SCHEMA = json.loads((REPO / "docs" / "output.schema.json").read_text())
WEBS = ("web1", "web2")
RAN = "restart: exit 0"  # the gate's log line for each restart of the web server that succeeded


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


@pytest.fixture(scope="module")
def chain(lab):
    """The lab bootstrapped, with --json and --junit: both checked here."""
    junit = labhosts.STATE / "bootstrap-junit.xml"
    r = lab.fab("bootstrap", "--json", "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr
    lab.bootstrap_result = (json.loads(r.stdout), r.stderr, ET.parse(junit).getroot())
    return lab


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


def test_bootstrap_json_and_junit(chain):
    doc, stderr, junit = chain.bootstrap_result
    validate(doc)
    assert doc["task"] == "bootstrap" and doc["exit_code"] == 0 and doc["error"] is None
    db = doc["hosts"][0]
    steps = {i["name"]: i["status"] for i in db["items"] if i["kind"] == "step"}
    assert steps["install-dbora"] == "changed" and steps["gen-key"] == "changed", steps
    checks = [i for h in doc["hosts"] for i in h["items"] if i["kind"] == "check"]
    assert checks and all(i["status"] == "ok" for i in checks)
    assert {h["name"] for h in doc["hosts"]} == {"db", *WEBS}
    # the human lines went to stderr, with the recap
    assert re.search(r"^db\s+install-dbora\s+changed\s", stderr, re.M) and "RECAP bootstrap" in stderr
    assert re.search(r"^web1\s+: ok=\d+  changed=[1-9]", stderr, re.M), stderr
    # JUnit: one testcase per host and step or check, none failing
    cases = junit.findall("testsuite/testcase")
    assert len(cases) == sum(len(h["items"]) for h in doc["hosts"])
    assert junit.get("failures") == "0" and junit.get("errors") == "0"
    assert "step install-dbora" in {c.get("name") for c in cases}


def gate_restarts(lab) -> dict[str, int]:
    return {w: int(lab.console(w, f"grep -c \"{RAN}\" /var/log/auth.log; true").stdout.split()[0]) for w in WEBS}


def apache_pid(lab, web: str) -> str:
    return lab.console(web, "cat /var/run/apache2/apache2.pid").stdout.strip()


def test_smoke_proves_the_path_and_restarts_nothing(chain, tmp_path):
    chain.settled()
    before, pids = gate_restarts(chain), {w: apache_pid(chain, w) for w in WEBS}
    statuses = {w: chain.console(w, "grep -c 'svr-restart-gate.*status' /var/log/auth.log; true").stdout.strip()
                for w in WEBS}
    junit = tmp_path / "smoke.xml"
    r = chain.fab("smoke", "--json", "--junit", str(junit))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    for web in doc["hosts"][1:]:
        path = next(i for i in web["items"] if i["name"] == "chain path")
        assert path["status"] == "ok" and "gate status: last restart:" in path["detail"], path
    # the gates answered 'status' (logged) and restarted nothing; Apache kept running
    for w in WEBS:
        now = chain.console(w, "grep -c 'svr-restart-gate.*status' /var/log/auth.log; true").stdout.strip()
        assert int(now) > int(statuses[w])
    assert gate_restarts(chain) == before and {w: apache_pid(chain, w) for w in WEBS} == pids
    names = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase")}
    assert "check chain path" in names
    # a gap on the path: the web server's line is gone, smoke says so and exits 2
    chain.console("web2", "cp /root/.ssh/authorized_keys /root/ak && grep -v svr-restart-gate /root/ak "
                          "> /root/.ssh/authorized_keys")
    try:
        gap = chain.fab("smoke", "--json")
        assert gap.returncode == 2, gap.stderr
        web2 = json.loads(gap.stdout)["hosts"][2]
        bad = {i["name"]: i["status"] for i in web2["items"] if i["status"] != "ok"}
        assert bad == {"authorized_keys": "gap", "chain path": "gap"}, web2
        assert re.search(r"^web2\s+GAP\s+2 of \d+ checks: authorized_keys, chain path", gap.stderr, re.M)
    finally:
        chain.console("web2", "cat /root/ak > /root/.ssh/authorized_keys && rm /root/ak")
    assert gate_restarts(chain) == before


def test_verify_prints_each_host_when_it_is_done(chain):
    """web2's sshd is stopped (SIGSTOP: it accepts but does not answer): web1's line is printed while
    web2 still hangs; then web2 is let go and verify ends ok. (The DB's line comes after the web
    servers': its "pinned host keys" check compares their keys.)"""
    env = {**os.environ, "INVENTORY": str(LAB_INVENTORY)}
    chain.console("web2", "pkill -STOP -x sshd")
    # whatever happens, web2's sshd goes on after 8 s (a blocked read then ends too)
    let_go = threading.Timer(8, lambda: chain.console("web2", "pkill -CONT -x sshd"))
    let_go.start()
    try:
        p = subprocess.Popen([*FAB, "verify"], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        seen: list[str] = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not any(x.startswith("web1 ") for x in seen):
            seen.append(p.stdout.readline())
        assert any(re.match(r"web1\s+ok\s+\d+ checks \(", x) for x in seen), seen
        assert not any(x.startswith(("web2", "db ")) for x in seen), seen
        assert p.poll() is None  # still waiting for web2
    finally:
        let_go.cancel()
        chain.console("web2", "pkill -CONT -x sshd")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, out + err
    assert re.search(r"^web2\s+ok\s+\d+ checks", out, re.M) and "RECAP verify" in out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_stops_verify_at_once_with_its_reports(chain, signum, code, tmp_path):
    """web2's sshd hangs (SIGSTOP: it accepts and never answers); once web1's line is in, SIGTERM (a CI
    job's timeout) or Ctrl-C stops verify at once: exit 143 / 130, the recap, the JSON document and
    the JUnit file written and marked interrupted, web1's checks in them; the connections are closed."""
    env = {**os.environ, "INVENTORY": str(LAB_INVENTORY)}
    junit = tmp_path / "verify.xml"
    chain.console("web2", "pkill -STOP -x sshd")
    let_go = threading.Timer(60, lambda: chain.console("web2", "pkill -CONT -x sshd"))
    let_go.start()
    try:
        p = subprocess.Popen([*FAB, "verify", "--json", "--junit", str(junit)], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(x.startswith("web1 ") for x in seen):
            seen.append(p.stderr.readline())
        assert any(re.match(r"web1\s+ok\s+\d+ checks \(", x) for x in seen) and p.poll() is None, seen
        p.send_signal(signum)
        out, err = p.communicate(timeout=30)  # web2 hangs for 60 s: the run does not wait for it
    finally:
        let_go.cancel()
        chain.console("web2", "pkill -CONT -x sshd")
    err = "".join(seen) + err
    assert p.returncode == code, err
    assert "RECAP verify (INTERRUPTED after" in err and re.search(r"^web1\s+: ok=\d+", err, re.M), err
    assert err.strip().splitlines()[-1].startswith("svrchain: interrupted by "), err
    doc = json.loads(out)
    validate(doc)
    assert doc["interrupted"] is True and doc["result"] == "interrupted" and doc["exit_code"] == code
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["web1"]["items"] and all(i["status"] == "ok" for i in hosts["web1"]["items"])
    assert hosts["web2"]["items"] == []
    root = ET.parse(junit).getroot()
    assert root.find("testsuite[@name='svrchain.verify.run']/testcase/error").get("type") == "interrupted"
    assert root.find("testsuite[@name='svrchain.verify.web1']") is not None
    assert chain.fab("verify").returncode == 0  # nothing was left behind: no lock, no stuck session


def encrypted_key(chain, tmp_path: Path) -> Path:
    """An admin key with a passphrase, authorized on every lab host (beside the lab's own key)."""
    key = tmp_path / "enc_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "sesame", "-C", "enc", "-f", str(key)], check=True)
    pub = Path(f"{key}.pub").read_text().strip()
    for h in ("db", *WEBS):
        chain.console(h, f"echo '{pub}' >> /root/.ssh/authorized_keys")
    return key


def inventory(tmp_path: Path, **connect) -> Path:
    data = labhosts.inventory_data()
    data["connect"].update(connect)
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_fab(args: list[str], inv: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*FAB, *args], cwd=REPO, env={**env, "INVENTORY": str(inv)}, text=True,
                          capture_output=True, timeout=120)


def test_a_passphrase_protected_key_through_ssh_agent(chain, tmp_path, agent):  # noqa: F811
    key = encrypted_key(chain, tmp_path)
    inv = inventory(tmp_path, identity=str(key))
    plain = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "SSH_AGENT_PID")}
    # no agent: one line, exit 4, nothing tried on any host
    r = run_fab(["verify"], inv, plain)
    assert r.returncode == 4 and r.stderr.strip() == (
        f"svrchain: key {key} is passphrase-protected; add it to ssh-agent (ssh-add {key}) and run again with "
        "SSH_AUTH_SOCK set, or set connect.identity to a key without a passphrase"), r.stderr
    # the agent holds it: verify logs in with it everywhere
    ssh_add(key, "sesame", agent, tmp_path)
    r = run_fab(["verify", "--json"], inv, {**plain, **agent})
    assert r.returncode == 0, r.stderr
    validate(json.loads(r.stdout))
    fp = subprocess.run(["ssh-keygen", "-lf", f"{key}.pub"], check=True, text=True,
                        capture_output=True).stdout.split()[1]
    assert fp in chain.console("web1", "grep 'Accepted publickey for root' /var/log/auth.log | tail -n 3").stdout


def test_proxyjump_through_the_db_host(chain, tmp_path):
    """web1 reached through the DB host (an alias, 'jump', in the admin's ssh config): web1's sshd
    sees the admin's key come from the DB's address; the jump host's key is pinned and checked."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host jump\n  HostName {labhosts.DB_ADDRESS}\n  User root\n\nHost web1\n  ProxyJump jump\n")
    inv = inventory(tmp_path, ssh_config=str(cfg))
    admin_fp = subprocess.run(["ssh-keygen", "-lf", str(labhosts.STATE / "admin_key.pub")], check=True, text=True,
                              capture_output=True).stdout.split()[1]
    r = run_fab(["verify", "--limit", "web1", "--json"], inv, dict(os.environ))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    assert [h["status"] for h in doc["hosts"]] == ["ok", "ok"]
    log = chain.console("web1", "grep 'Accepted publickey for root' /var/log/auth.log | tail -n 3").stdout
    assert f"from {labhosts.DB_ADDRESS} " in log.splitlines()[-1] and admin_fp in log.splitlines()[-1], log
    # the jump host's key is not pinned: refused, exit 3, naming the jump host
    known = tmp_path / "known_hosts"
    known.write_text("".join(x + "\n" for x in (labhosts.STATE / "known_hosts").read_text().splitlines()
                             if not x.startswith(labhosts.DB_ADDRESS + " ")))
    r = run_fab(["verify", "--limit", "web1"], inventory(tmp_path, ssh_config=str(cfg), known_hosts=str(known)),
                dict(os.environ))
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.search(r"^web1\s+reachable\s+UNREACHABLE\s+web1: jump host root@198\.18\.0\.10:22: host key unknown",
                     r.stdout, re.M), r.stdout
