"""Results for people and for CI, without hosts: live lines, the recap, colour, the JSON document
(validated against docs/output.schema.json), the JUnit file (parsed), the exit codes, and the CLI's
--json/--junit flags end to end against hosts that do not answer (loopback ports nobody listens on),
fab run in this process (the ``program`` fixture, tests/unit/conftest.py)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from svrchain.core import errors, output
from svrchain.core.inventory import InventoryError
from tests.paths import LAB_INVENTORY

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "output.schema.json").read_text())


def validate(doc: dict) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def sample(stream=None) -> output.Results:
    r = output.Results("verify", human=stream or io.StringIO())
    r.host("db", "db", "198.18.0.10")
    r.host("web1", "web", "198.18.0.21")
    r.host("web2", "web", "198.18.0.22")
    r.add("db", output.Item("check", "key", "ok", "/root/.ssh/k ed25519", 0.2))
    r.add("web1", output.Item("check", "authorized_keys", "gap", "the DB server's key is not there", 0.3))
    r.add("web1", output.Item("check", "gate", "ok", "/usr/local/sbin/svr-restart-gate", 0.3))
    r.add("web2", output.Item("check", "reachable", "unreachable", "web2 (198.18.0.22:22): connection refused", 0.1))
    return r


def test_exit_codes_are_distinct_and_documented():
    assert errors.exit_code(errors.SvrchainError("x")) == 1
    assert errors.exit_code(errors.GapFound("x")) == 2
    assert errors.exit_code(errors.Unreachable("x")) == 3
    assert errors.exit_code(errors.BadInventory("x")) == 4
    assert errors.exit_code(InventoryError("x")) == 4
    from svrchain.core.errors import HostUnreachable
    assert errors.exit_code(HostUnreachable("x")) == 3
    doc = (REPO / "docs" / "output.md").read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |", "| 130 |", "| 143 |"):
        assert code in doc
    assert set(output.RESULTS) == {0, 1, 2, 3, 4, 5, 130, 143} == set(SCHEMA["properties"]["exit_code"]["enum"])
    assert set(output.RESULTS.values()) == set(SCHEMA["properties"]["result"]["enum"])


def test_recap_counts_per_host_without_colour():
    r = sample()
    lines = r.recap_lines()
    assert lines[0].startswith("RECAP verify (")
    assert lines[1] == "db         : ok=1  changed=0  gap=0  failed=0  unreachable=0"
    assert lines[2] == "web1       : ok=1  changed=0  gap=1  failed=0  unreachable=0"
    assert lines[3] == "web2       : ok=0  changed=0  gap=0  failed=0  unreachable=1"
    assert "\033[" not in "".join(lines)


def test_colour_only_on_a_tty_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not output.Results("verify", human=io.StringIO()).colour
    assert output.Results("verify", human=Tty()).colour
    coloured = sample(Tty()).recap_lines()
    assert "\033[31mgap=1\033[0m" in coloured[2]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not output.Results("verify", human=Tty()).colour
    assert "\033[" not in "".join(sample(Tty()).recap_lines())


def test_live_host_line_names_what_is_wrong():
    stream = io.StringIO()
    r = output.Results("verify", human=stream)
    items = [output.Item("check", "gate", "ok"), output.Item("check", "modes", "gap", "600")]
    r.host_line("web1", items, 0.25)
    r.host_line("web2", [output.Item("check", "reachable", "unreachable", "web2 (x:22): connection refused")], 1.0)
    r.host_line("db", [output.Item("check", "key", "ok")], 0.5)
    assert stream.getvalue().splitlines() == [
        "web1       GAP           1 of 2 checks: modes (0.25s)",
        "web2       UNREACHABLE   web2 (x:22): connection refused (1.00s)",
        "db         ok            1 checks (0.50s)",
    ]


def test_json_document_matches_the_schema():
    doc = sample().document(3, "verify: cannot reach web2 (see above)")
    validate(doc)
    assert doc["result"] == "unreachable" and doc["exit_code"] == 3
    assert [h["name"] for h in doc["hosts"]] == ["db", "web1", "web2"]
    web1 = doc["hosts"][1]
    assert web1["status"] == "gap" and web1["counts"]["gap"] == 1
    assert web1["items"][0] == {"kind": "check", "name": "authorized_keys", "status": "gap",
                                "detail": "the DB server's key is not there", "seconds": 0.3}
    assert doc["totals"]["ok"] == 2 and doc["totals"]["unreachable"] == 1
    with pytest.raises(jsonschema.ValidationError):
        validate({**doc, "result": "fine"})


def test_junit_one_testcase_per_host_and_check():
    root = ET.fromstring(sample().junit_xml(3, "verify: cannot reach web2"))
    assert root.tag == "testsuites" and root.get("tests") == "4"
    assert root.get("failures") == "1" and root.get("errors") == "1"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"svrchain.verify.db", "svrchain.verify.web1", "svrchain.verify.web2"}
    cases = {c.get("name"): c for c in suites["svrchain.verify.web1"].findall("testcase")}
    assert cases["check authorized_keys"].find("failure").get("type") == "gap"
    assert cases["check gate"].find("failure") is None
    err = suites["svrchain.verify.web2"].find("testcase/error")
    assert err.get("type") == "unreachable" and "connection refused" in err.text


@pytest.fixture
def _fab(program):
    """``_fab(*args, env=None, cwd=REPO)``: fab with this process's environment plus ``env``."""
    def run(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
        return program("fab", *args, cwd=cwd, env={**os.environ, **(env or {})})
    return run


def test_bad_inventory_json_and_junit(tmp_path, _fab):
    inv = tmp_path / "bad.yaml"
    inv.write_text("db:\n  adress: 1\n")
    junit = tmp_path / "out" / "verify.xml"
    r = _fab("verify", "--json", "--junit", str(junit), env={"INVENTORY": str(inv)})
    assert r.returncode == 4
    doc = json.loads(r.stdout)  # stdout is the JSON document and nothing else
    validate(doc)
    assert doc["result"] == "bad-inventory" and doc["hosts"] == [] and "adress" in doc["error"]
    assert r.stderr.startswith(f"svrchain: {inv}") and "Traceback" not in r.stderr
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.find("error").get("type") == "bad-inventory"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_inventory(tmp_path: Path, identity: Path | None) -> Path:
    """An inventory whose three hosts are loopback ports nobody listens on."""
    data = yaml.safe_load((LAB_INVENTORY).read_text())
    data.pop("lab", None)  # not the lab: loopback addresses
    port = closed_port()
    (tmp_path / "known_hosts").write_text("")
    data["connect"] = {"user": "root", "known_hosts": str(tmp_path / "known_hosts"), "timeout": 2, "port": port}
    if identity:
        data["connect"]["identity"] = str(identity)
    data["db"].update(address="127.0.0.1", script=str(REPO / "lab" / "files" / "dbora"))
    for i, w in enumerate(data["web"]["servers"]):
        w.update(address=f"127.0.0.{2 + i}", health_url=f"http://127.0.0.{2 + i}/")
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def keypair(tmp_path: Path, passphrase: str = "") -> Path:
    key = tmp_path / "admin_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)], check=True)
    return key


def test_unreachable_hosts_exit_3_with_json_on_stdout_and_lines_on_stderr(tmp_path, _fab):
    inv = loopback_inventory(tmp_path, keypair(tmp_path))
    junit = tmp_path / "smoke.xml"
    r = _fab("smoke", "--json", "--junit", str(junit), env={"INVENTORY": str(inv), "NO_COLOR": ""})
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    assert doc["task"] == "smoke" and doc["result"] == "unreachable"
    assert {h["name"]: h["status"] for h in doc["hosts"]} == {"db": "unreachable", "web1": "unreachable",
                                                              "web2": "unreachable"}
    assert "connection refused" in doc["hosts"][0]["items"][0]["detail"]
    # a live line per host, the table, the recap and the error line: all on stderr
    assert "RECAP smoke" in r.stderr and "web2       : ok=0" in r.stderr
    assert sum(1 for line in r.stderr.splitlines() if " UNREACHABLE " in line and "(" in line) >= 3
    assert r.stderr.strip().splitlines()[-1] == "svrchain: smoke: cannot reach db, web1, web2 (see above)"
    root = ET.parse(junit).getroot()
    assert root.get("errors") == "3" and root.get("failures") == "0"


def test_passphrase_protected_key_without_agent_is_one_clear_line(tmp_path, program):
    key = keypair(tmp_path, "sesame")
    inv = loopback_inventory(tmp_path, key)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    r = program("fab", "verify", env={**env, "INVENTORY": str(inv)})
    assert r.returncode == 4
    assert r.stderr.strip() == (f"svrchain: key {key} is passphrase-protected; add it to ssh-agent (ssh-add {key}) "
                                "and run again with SSH_AUTH_SOCK set, or set connect.identity to a key without "
                                "a passphrase")
    # the same without its .pub: the public half is read from the key's own header
    Path(f"{key}.pub").unlink()
    again = program("fab", "verify", env={**env, "INVENTORY": str(inv)})
    assert again.returncode == 4 and "passphrase-protected" in again.stderr


def test_no_identity_and_no_agent(tmp_path, program):
    inv = loopback_inventory(tmp_path, None)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    r = program("fab", "verify", env={**env, "INVENTORY": str(inv)})
    assert r.returncode == 4
    assert "connect.identity is not set and no ssh-agent holds a key" in r.stderr


@pytest.fixture
def agent(tmp_path):
    """A private ssh-agent for the test; its environment (SSH_AUTH_SOCK, SSH_AGENT_PID)."""
    out = subprocess.run(["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")], check=True, text=True,
                         capture_output=True).stdout
    env = dict(part.split("=", 1) for part in out.replace(";", "\n").split() if "=" in part)
    yield env
    subprocess.run(["kill", env["SSH_AGENT_PID"]], check=False)


def ssh_add(key: Path, passphrase: str, env: dict, tmp_path: Path) -> None:
    """Add an encrypted key to the agent, its passphrase given by an askpass program."""
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{passphrase}'\n")
    askpass.chmod(0o700)
    subprocess.run(["ssh-add", str(key)], check=True, capture_output=True, stdin=subprocess.DEVNULL,
                   env={**os.environ, **env, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force",
                        "DISPLAY": ":0"})


def test_passphrase_protected_key_held_by_the_agent_is_used(tmp_path, agent, _fab):
    key = keypair(tmp_path, "sesame")
    ssh_add(key, "sesame", agent, tmp_path)
    inv = loopback_inventory(tmp_path, key)
    r = _fab("verify", env={"INVENTORY": str(inv), **agent})
    assert r.returncode == 3, r.stderr  # the key was accepted; the hosts (closed ports) are unreachable
    assert "passphrase" not in r.stderr
    # and with no connect.identity at all, the agent's keys
    r = _fab("verify", env={"INVENTORY": str(loopback_inventory(tmp_path, None)), **agent})
    assert r.returncode == 3, r.stderr


def test_the_ci_examples_run_smoke_and_keep_the_junit_report():
    gh = yaml.safe_load((REPO / "docs" / "ci" / "github-actions.yml").read_text())
    steps = gh["jobs"]["smoke"]["steps"]
    run = next(s["run"] for s in steps if "smoke" in s.get("name", "").lower())
    assert "fab smoke" in run and "--junit results/smoke.xml" in run and "--json" in run
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s.get("if") == "always()" for s in steps)
    gl = yaml.safe_load((REPO / "docs" / "ci" / "gitlab-ci.yml").read_text())["svrchain-smoke"]
    assert any("fab smoke" in line and "--junit results/smoke.xml" in line for line in gl["script"])
    assert gl["artifacts"]["reports"]["junit"] == "results/smoke.xml" and gl["artifacts"]["when"] == "always"


# What a hostile account puts in its authorized_keys (or a host in a command's output): ESC sequences
# that clear the screen and rewrite a line, a carriage return, a bell, a C1 CSI, a bidi override, a
# line separator, a NUL.
HOSTILE = "runs 'apachectl graceful\x1b[2J\x1b[1A\rlegacy keys  ok\x07\x9b31m\u202edcba\u2028x\x00' é ü 日本"


def test_host_text_is_shown_escaped_and_printable_unicode_kept():
    got = output.shown(HOSTILE)
    assert got.isprintable(), got
    assert got == ("runs 'apachectl graceful\\x1b[2J\\x1b[1A\\rlegacy keys  ok\\x07\\x9b31m\\u202edcba\\u2028x\\x00'"
                   " é ü 日本").replace("\\r", "\\x0d")
    assert output.shown("two\nlines\tand a tab") == "two\nlines\tand a tab"


@pytest.mark.parametrize("colour", [False, True])
def test_a_task_stream_escapes_host_text_and_keeps_only_its_own_colours(colour):
    raw = Tty() if colour else io.StringIO()
    stream = output.ShownStream(raw, colour)
    r = output.Results("verify", human=stream)
    r.colour = colour
    r.add("web1", output.Item("check", "legacy keys", "gap", HOSTILE))
    r.host_line("web1", r.hosts["web1"].items, 0.1)
    print(f"web1 {HOSTILE}", file=stream)
    text = raw.getvalue()
    assert not any(c in text for c in "\x07\r\x9b\u202e\u2028\x00"), repr(text)
    sgr = [m for m in __import__("re").findall(r"\x1b\[[^m]*m", text)]
    assert sgr == (["\x1b[31m", "\x1b[0m"] if colour else []), repr(text)
    assert "\\x1b[2J" in text


def test_junit_with_host_control_characters_parses_and_json_stays_valid():
    r = output.Results("verify", human=io.StringIO())
    r.host("web1", "web", "198.18.0.21")
    r.add("web1", output.Item("check", "legacy \x1bkeys", "gap", HOSTILE))
    r.add("web1", output.Item("check", "modes", "ok", HOSTILE))
    root = ET.fromstring(r.junit_xml(2, None))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "\\x1b[2J" in failure.text and "\x1b" not in failure.text
    assert root.find("testsuite/testcase").get("name") == "check legacy \\x1bkeys"
    doc = json.loads(json.dumps(r.document(2, None)))
    assert doc["hosts"][0]["items"][0]["detail"] == HOSTILE  # JSON keeps the text exactly, escaped by JSON itself
    validate(doc)
