"""The command line never surprises (issue 22, section 1), without hosts: Fabric's --prompt-for-* flags
refused before anything prompts; an unknown task or flag in one line with "did you mean" (exit 4); -i
pointing at -I; Ctrl-C and SIGTERM stopping a run at once with its recap, --json and --junit marked
interrupted (exit 130 / 143), against loopback listeners that accept TCP and never send an SSH banner;
a --junit path that cannot be written; every task's recap; a declined confirmation (exit 5)."""

from __future__ import annotations

import getpass
import io
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from svrchain.cli import parse_problem
from svrchain.core import output
from tests.unit.test_cli_flags import REPO, Silent, environment, write_inventory
from tests.unit.test_output import validate

BIN = Path(sys.executable).parent
PROMPTS = ["--prompt-for-login-password", "--prompt-for-passphrase", "--prompt-for-sudo-password"]


def refused_in_one_line(r: subprocess.CompletedProcess, flag: str) -> None:
    """Exit 4, one line naming the flag, and the JSON document saying so."""
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().startswith(f"svrchain: {flag}: not supported;"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr and "Enter" not in r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    assert doc["exit_code"] == 4 and flag in doc["error"]


@pytest.mark.parametrize("tool", ["fab", "svrchain"])
@pytest.mark.parametrize("flag", PROMPTS)
def test_prompt_flags_are_refused_before_anything_prompts(flag, tool, tmp_path, program):
    """Without a terminal Fabric's prompt was an EOFError traceback (exit 1, no JSON): now one line,
    exit 4, and the JSON document."""
    refused_in_one_line(program(tool, flag, "verify", "--json", "-I", str(tmp_path / "never-read.yaml"),
                                env=environment()), flag)


@pytest.mark.parametrize(("tool", "flag"), [("fab", PROMPTS[0]), ("svrchain", PROMPTS[2])])
def test_prompt_flags_are_refused_in_a_process_of_its_own(tool, flag, tmp_path):
    """The same from the installed command, in a fresh process: svrchain's stand-in for Fabric's and
    Invoke's getpass is in place before their programs would ask (what the run in this process cannot
    show: svrchain is imported here already)."""
    r = subprocess.run([str(BIN / tool), flag, "verify", "--json", "-I", str(tmp_path / "never-read.yaml")],
                       cwd=REPO, env=environment(), text=True, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60)
    refused_in_one_line(r, flag)


@pytest.mark.parametrize("flag", PROMPTS)
def test_nothing_is_asked_even_on_a_terminal(flag, tmp_path, monkeypatch, program):
    def asked(prompt: str = "", stream=None) -> str:
        raise AssertionError(f"prompted: {prompt}")
    monkeypatch.setattr(getpass, "getpass", asked)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    r = program("svrchain", flag, "verify", "-I", str(tmp_path / "never-read.yaml"))
    assert r.returncode == 4 and r.stderr.strip().startswith(f"svrchain: {flag}: not supported;"), r.stderr


# (command line, the one line on stderr)
PARSE = [
    (["verfy"], "svrchain: verfy: unknown task; did you mean verify?"),
    (["bootstrapp", "-I", "x.yaml"], "svrchain: bootstrapp: unknown task; did you mean bootstrap?"),
    (["nonsense"], "svrchain: nonsense: unknown task; `{tool} --list` lists the tasks"),
    (["verify", "--jsn"], "svrchain: --jsn: unknown flag; did you mean --json?"),
    (["verify", "--limt", "web1"], "svrchain: --limt: unknown flag; did you mean --limit?"),
    (["bootstrap", "--dryrun"], "svrchain: --dryrun: unknown flag; did you mean --dry-run?"),
    (["verify", "--zzz"], "svrchain: --zzz: unknown flag; `{tool} --help <task>` lists its flags"),
    (["verify", "--limit"], "svrchain: --limit: needs a value; see `{tool} --help <task>`"),
    (["verify", "-I"], "svrchain: --inventory: needs a value; see `{tool} --help <task>`"),
    (["verify", "-i", "inventory/lab.yaml"], "svrchain: -i/--identity: not supported; did you mean -I FILE "
                                             "(--inventory)? Ansible's -i is svrchain's -I"),
    (["-i", "inventory/lab.yaml", "verify"], "svrchain: -i/--identity: not supported; did you mean -I FILE "
                                             "(--inventory)? Ansible's -i is svrchain's -I"),
]


@pytest.mark.parametrize("tool", ["fab", "svrchain"])
@pytest.mark.parametrize(("args", "line"), PARSE, ids=[" ".join(a) for a, _ in PARSE])
def test_unknown_task_or_flag_is_one_line_with_did_you_mean(args, line, tool, program):
    r = program(tool, *args, env=environment())
    assert r.returncode == 4, r.stdout + r.stderr
    assert r.stderr.strip() == line.format(tool=tool) if "{tool}" in line else r.stderr.strip().startswith(line), \
        r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_parse_problem_wording():
    tasks, flags = ["verify", "smoke", "bootstrap"], ["--json", "--junit", "--inventory", "-I", "--help"]
    assert parse_problem("No idea what 'smok' is!", tasks, flags) == "smok: unknown task; did you mean smoke?"
    assert parse_problem("No idea what '--JSON' is!", tasks, flags) == "--JSON: unknown flag; did you mean --json?"
    assert parse_problem("No idea what '-i' is!", tasks, flags).startswith("-i: unknown flag; did you mean -I FILE")
    assert parse_problem("'x' is ambiguous when given after an optional-value flag", tasks, flags, "fab") == \
        "'x' is ambiguous when given after an optional-value flag; see `fab --help <task>`"


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------------------

@pytest.fixture
def silent() -> Iterator[Silent]:
    listeners = Silent()
    yield listeners
    listeners.close()


def hanging_inventory(tmp_path: Path, listeners: Silent) -> Path:
    """Every host a listener that never sends an SSH banner, with a connect timeout far longer than a
    run interrupted at once may take."""
    return write_inventory(tmp_path, list(listeners[:3]), timeout=600)


@pytest.mark.parametrize("tool", ["fab", "svrchain"])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_a_signal_stops_the_run_at_once_and_the_reports_say_interrupted(signum, code, tool, tmp_path, silent):
    inv = hanging_inventory(tmp_path, silent)
    junit = tmp_path / "out" / "verify.xml"
    err = tmp_path / "stderr"
    with err.open("w") as stderr_file:
        p = subprocess.Popen([str(BIN / tool), "verify", "--json", "--junit", str(junit), "-I", str(inv)],
                             cwd=REPO,
                             env=environment({"NO_COLOR": "1"}), text=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=stderr_file)
    try:
        deadline = time.monotonic() + 180  # (a loaded machine starts Python slowly)
        while "svrchain: inventory" not in err.read_text():  # the hosts are being connected to
            assert time.monotonic() < deadline and p.poll() is None, err.read_text()
            time.sleep(0.05)
        while silent.most_open < 3:  # every host's connection is open, and hangs
            assert time.monotonic() < deadline, silent.most_open
            time.sleep(0.05)
        p.send_signal(signum)
        # Far less than the connect timeout (600 s): the run does not wait for its hanging connections.
        try:
            out, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 60 s after the signal:\n{err.read_text()}")
    finally:
        p.kill()
    stderr = err.read_text()
    assert p.returncode == code, stderr
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
    assert stderr.strip().splitlines()[-1] == (f"svrchain: interrupted by {name}: stopped; connections closed; "
                                               "see the recap for what was done"), stderr
    assert "RECAP verify (INTERRUPTED after" in stderr and "Traceback" not in stderr
    doc = json.loads(out)
    validate(doc)
    assert doc["interrupted"] is True and doc["result"] == "interrupted" and doc["exit_code"] == code
    assert [h["name"] for h in doc["hosts"]] == ["db", "web1", "web2"]
    case = ET.parse(junit).getroot().find("testsuite[@name='svrchain.verify.run']/testcase")
    assert case.get("name") == "run verify" and case.find("error").get("type") == "interrupted"


def test_interrupted_documents_match_the_schema():
    r = output.Results("bootstrap", human=io.StringIO())
    r.host("db", "db", "198.18.0.10")
    r.add("db", output.Item("step", "install-dbora", "changed", "", 0.1))
    doc = r.document(143, "interrupted by SIGTERM")
    validate(doc)
    assert doc["interrupted"] and doc["result"] == "interrupted" and doc["hosts"][0]["counts"]["changed"] == 1
    assert not r.document(0, None)["interrupted"]
    assert r.recap_lines(interrupted=True)[0].startswith("RECAP bootstrap (INTERRUPTED after ")
    root = ET.fromstring(r.junit_xml(130, "interrupted by Ctrl-C (SIGINT)"))
    assert root.get("errors") == "1"
    assert root.find("testsuite[@name='svrchain.bootstrap.run']/testcase/error").get("type") == "interrupted"


# -- --junit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["file/x.xml", "dir"])
def test_an_unwritable_junit_path_is_refused_before_any_host(where, tmp_path, program):
    (tmp_path / "file").write_text("a file, not a directory")
    (tmp_path / "dir").mkdir()
    inv = write_inventory(tmp_path, [("127.0.0.1", 1), ("127.0.0.2", 1)])
    r = program("svrchain", "verify", "--json", "--junit", str(tmp_path / where), "-I", str(inv),
                env=environment())
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().startswith(f"svrchain: --junit {tmp_path / where}:"), r.stderr
    assert r.stderr.strip().endswith("; nothing was done") and len(r.stderr.strip().splitlines()) == 1
    assert "svrchain: inventory" not in r.stderr  # no host was tried
    assert json.loads(r.stdout)["exit_code"] == 4


@pytest.mark.parametrize(("code", "error"), [(0, None), (2, "verify: 1 gap(s) on web1"), (3, "verify: cannot reach")])
def test_a_junit_file_that_cannot_be_written_is_an_error_whatever_the_outcome(code, error, tmp_path):
    (tmp_path / "file").write_text("")
    r = output.Results("verify", junit=str(tmp_path / "file" / "x.xml"), human=io.StringIO())
    got, said = r.finish(code, error)
    assert got == (code or 1)
    assert said.endswith(f"cannot write the JUnit report {tmp_path / 'file' / 'x.xml'}: {tmp_path / 'file'} is "
                         "not a directory")
    assert error is None or said.startswith(error)


# -- every task ends with the recap (a declined confirmation, exit 5: test_cli_flags.py) -------------

def test_trust_hosts_ends_with_its_recap(tmp_path, program):
    inv = write_inventory(tmp_path, [("127.0.0.1", 1), ("127.0.0.2", 1)])
    r = program("svrchain", "trust-hosts", "-I", str(inv), env=environment({"NO_COLOR": "1"}))
    assert r.returncode == 3, r.stderr
    assert "RECAP trust-hosts (" in r.stdout
    assert "db         : ok=0  changed=0  failed=0  unreachable=1" in r.stdout


def test_restart_chain_with_the_db_down_ends_with_its_recap(tmp_path, program):
    inv = write_inventory(tmp_path, [("127.0.0.1", 1), ("127.0.0.2", 1)])
    r = program("svrchain", "restart-chain", "--yes", "--json", "-I", str(inv), env=environment())
    assert r.returncode == 3, r.stderr
    assert "RECAP restart-chain (" in r.stderr and "db         : ok=0  changed=0  failed=0  unreachable=1" in r.stderr
    doc = json.loads(r.stdout)
    validate(doc)
    assert doc["hosts"][0]["items"][0]["name"] == "restart" and doc["hosts"][0]["status"] == "unreachable"


# -- verify: a database that runs outside its service ------------------------------------------------

def test_service_problem_reads_the_cgroup_of_the_databases_process():
    """service_probe's output on a systemd host: the DB's main process and its cgroup (cgroup v2 and
    v1), or, with db.run.command, whether the unit is active (tested on the lab: test_bootstrap.py)."""
    from svrchain.core.inventory import parse
    from svrchain.facts.chain import service_problem
    from tests.paths import LAB_INVENTORY

    inv = parse(LAB_INVENTORY.read_text(), LAB_INVENTORY)
    assert service_problem(inv, "pid 42\n0::/system.slice/dbora.service\n") is None
    assert service_problem(inv, "pid 42\n1:name=systemd:/system.slice/dbora.service/x\n") is None
    assert service_problem(inv, "pid 42\n0::/system.slice/lab-db.service\n") == \
        "its process 42 is in /system.slice/lab-db.service, not dbora.service"
    assert service_problem(inv, "pid 42\n0::/user.slice/user-0.slice/session-1.scope\n").startswith("its process 42")
    v1 = "pid 51\n12:cpu,cpuacct:/\n4:memory:/\n1:name=systemd:/system.slice/lab-db.service\n"
    assert service_problem(inv, v1) == "its process 51 is in /system.slice/lab-db.service, not dbora.service"
    assert service_problem(inv, v1.replace("lab-db", "dbora")) is None
    hybrid = "pid 52\n0::/\n1:name=systemd:/system.slice/lab-db.service\n"
    assert service_problem(inv, hybrid) == "its process 52 is in /system.slice/lab-db.service, not dbora.service"
    # the systemd lab's hosts (a container: systemd's tree under /payload, in the unified hierarchy)
    lab = "pid 51\n9:name=systemd:/payload\n4:memory:/process_api/fe\n1:cpu:/\n0::/payload/system.slice/{}\n"
    assert service_problem(inv, lab.format("lab-db.service")) == \
        "its process 51 is in /payload/system.slice/lab-db.service, not dbora.service"
    assert service_problem(inv, lab.format("dbora.service")) is None
    assert service_problem(inv, "pid 42\n0::/system.slice/dbora.service.old\n") is not None
    assert service_problem(inv, "") is None  # SysV host, or no process: nothing to tell
    assert service_problem(inv, "active active\n") is None
    assert service_problem(inv, "active inactive\n") == "dbora.service is inactive"
