"""The pure side of remote I/O, without hosts: the probe's output turned into typed FileStates and
Results, the probe script itself run as a real program on this machine, and the once-per-run table
that the fact cache and the jump hosts share."""

from __future__ import annotations

import io
import os
import pwd
import subprocess
import tarfile
import threading
import time

import pytest

from svrchain.core.errors import HostError
from svrchain.core.plan import FileState, Result
from svrchain.facts import FILE_CMD, file_state
from svrchain.remote.connection import Once
from svrchain.remote.files import _AS, parse_probe, probe, probe_script, sections

LABEL = "web1 (198.18.0.21:22)"


def tar_of(members: dict[str, bytes]) -> bytes:
    """A tar stream like the probe's: one member per section, named ``./<name>``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_missing_file_is_exit_44():
    assert file_state(LABEL, "/etc/x", 44, b"") == FileState("/etc/x", exists=False)


def test_an_unsafe_file_is_exit_45_with_the_reason():
    state = file_state(LABEL, "/home/a/.ssh/authorized_keys", 45, b"is a symbolic link\n")
    assert state == FileState("/home/a/.ssh/authorized_keys", exists=True, unsafe="is a symbolic link")


def test_a_file_is_its_mode_owner_group_line_then_its_bytes_exactly():
    raw = b"640 root svr\nline one\r\nno final newline"
    assert file_state(LABEL, "/etc/x", 0, raw) == FileState("/etc/x", True, b"line one\r\nno final newline",
                                                           0o640, "root", "svr")
    assert file_state(LABEL, "/etc/e", 0, b"600 a b\n") == FileState("/etc/e", True, b"", 0o600, "a", "b")


def test_an_unreadable_file_is_one_line_naming_the_host_and_the_path():
    with pytest.raises(HostError) as err:
        file_state(LABEL, "/etc/x", 1, b"cat: /etc/x: Permission denied\n")
    assert str(err.value) == f"{LABEL}: cannot read /etc/x: cat: /etc/x: Permission denied"


def test_sections_pair_each_output_with_its_exit_code():
    raw = tar_of({"f0": b"644 root root\nx", "f0.rc": b"0\n", "c0": b"\xff\x00bytes", "c0.rc": b"3\n",
                  "c1": b"no code", "c2": b"", "c2.rc": b"\n"})
    assert sections(raw) == {"f0": (0, b"644 root root\nx"), "c0": (3, b"\xff\x00bytes"),
                             "c1": (1, b"no code"), "c2": (1, b"")}


def test_the_probe_becomes_states_by_path_and_results_by_name():
    raw = tar_of({"f0": b"", "f0.rc": b"44\n", "f1": b"600 root root\nsecret", "f1.rc": b"0\n",
                  "c0": b"caf\xc3\xa9\n", "c0.rc": b"0\n", "c1": b"\xff", "c1.rc": b"2\n"})
    states, results = parse_probe(LABEL, Result(0, "", "", raw), ["/a", "/b"], ["name", "bad"])
    assert states == {"/a": FileState("/a", False), "/b": FileState("/b", True, b"secret", 0o600, "root", "root")}
    assert results == {"name": Result(0, "café\n", "", b"caf\xc3\xa9\n"), "bad": Result(2, "\ufffd", "", b"\xff")}


def test_a_command_missing_from_the_probe_is_exit_1_with_no_output():
    _, results = parse_probe(LABEL, Result(0, "", "", tar_of({})), [], ["gone"])
    assert results == {"gone": Result(1, "", "", b"")}


def test_a_probe_that_sent_no_tar_is_one_line_with_its_stderr():
    with pytest.raises(HostError) as err:
        parse_probe(LABEL, Result(1, "", "sh: 1: tar: not found\n", b""), ["/a"], [])
    assert str(err.value) == f"{LABEL}: reading the host's state failed: sh: 1: tar: not found"


def test_the_probe_script_run_here_reads_files_and_commands_in_one_go(tmp_path):
    odd = tmp_path / "it's a file"
    odd.write_bytes(b"a\r\nb")
    odd.chmod(0o604)
    missing = str(tmp_path / "missing")
    env = str(tmp_path / "by-variable")
    (tmp_path / "by-variable").write_bytes(b"v")
    commands = {"bytes": "printf '\\377x'; exit 3", "shared": 'echo "$P"', "file": f"F={env}; {FILE_CMD}"}
    script = probe_script([str(odd), missing], list(commands.values()), prelude="P=from-the-prelude")
    done = subprocess.run(["sh", "-c", script, "svrchain"], capture_output=True, check=True, timeout=30)
    states, results = parse_probe(LABEL, Result(0, "", "", done.stdout), [str(odd), missing], list(commands))
    me = pwd.getpwuid(os.getuid()).pw_name
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    assert states == {str(odd): FileState(str(odd), True, b"a\r\nb", 0o604, me, group),
                      missing: FileState(missing, False)}
    assert (results["bytes"].code, results["bytes"].raw) == (3, b"\xffx")
    assert results["shared"] == Result(0, "from-the-prelude\n", "", b"from-the-prelude\n")
    assert file_state(LABEL, env, results["file"].code, results["file"].raw).content == b"v"


class ScriptHost:
    """Just enough of a Host for ``probe``: its script runs here, as a real program."""

    label = LABEL

    def run(self, script: str, *args: str, stdin: bytes = b"") -> Result:
        done = subprocess.run(["sh", "-c", script, "svrchain", *args], input=stdin, capture_output=True, timeout=30)
        return Result(done.returncode, "", done.stderr.decode(), done.stdout)


@pytest.mark.parametrize("first", [(), ("a",), ("b",), ("a", "b")])
def test_a_command_two_facts_ask_for_runs_once_and_both_get_its_result(tmp_path, first):
    runs = tmp_path / "runs"
    twice = f"echo ran >>{runs}; echo out; exit 3"
    _, results = probe(ScriptHost(), [], {"a": twice, "other": "echo other", "b": twice}, first=first)
    assert runs.read_text() == "ran\n"
    assert results["a"] == results["b"] == Result(3, "out\n", "", b"out\n")
    assert results["other"].stdout == "other\n"


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_as_runs_as_each_account_with_that_accounts_own_group(tmp_path, shell):
    """``as`` (every read and write in a home): the group looked up once for calls in a row as one
    account, again for another account, root never through setpriv, a failed lookup runs nothing."""
    script = _AS + f"""
id() {{ echo "id $*" >>{tmp_path}/log
    case $3 in web) echo 33 ;; app) echo 1001 ;; *) echo "no such user" >&2; return 1 ;; esac; }}
setpriv() {{ echo "setpriv $*" >>{tmp_path}/log; shift 4; "$@"; }}
as web echo one; as web echo two; as app echo three; as web echo four; as root echo five
as ghost echo six || echo "ghost: $?"
"""
    done = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=10)
    assert done.stdout == "one\ntwo\nthree\nfour\nfive\nghost: 1\n"
    assert (tmp_path / "log").read_text().splitlines() == [
        "id -g -- web", "setpriv --reuid=web --regid=33 --init-groups -- echo one",
        "setpriv --reuid=web --regid=33 --init-groups -- echo two",
        "id -g -- app", "setpriv --reuid=app --regid=1001 --init-groups -- echo three",
        "id -g -- web", "setpriv --reuid=web --regid=33 --init-groups -- echo four",
        "id -g -- ghost"]


def test_as_never_takes_a_group_from_the_environment(tmp_path):
    script = _AS + f"""
id() {{ echo "id $*" >>{tmp_path}/log; echo 33; }}
setpriv() {{ echo "setpriv $*" >>{tmp_path}/log; }}
as web true
"""
    subprocess.run(["sh", "-c", script], env={"PATH": "/usr/bin:/bin", "AS_USER": "web", "AS_GID": "0"},
                   check=True, timeout=10)
    assert (tmp_path / "log").read_text().splitlines() == [
        "id -g -- web", "setpriv --reuid=web --regid=33 --init-groups -- true"]


def test_once_reads_a_key_once_for_every_concurrent_caller():
    once, calls = Once(), []

    def read() -> int:
        calls.append(1)
        time.sleep(0.05)
        return 42
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(once.get("k", read))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [42] * 8 and len(calls) == 1
    assert once.values() == [42]


def test_once_keeps_an_error_and_forgets_only_what_it_is_told():
    once = Once()

    def fail() -> int:
        raise HostError("down")
    for _ in range(2):
        with pytest.raises(HostError, match="down"):
            once.get("a:web1", fail)
    once.get("b:web2", lambda: 2)
    assert once.values() == [2]  # the error is kept, not a value
    once.forget(lambda key: key.endswith(":web1"))
    assert once.get("a:web1", lambda: 1) == 1
    assert once.get("b:web2", lambda: 99) == 2
