"""A host that records what would run: the test double at the one boundary where svrchain talks to a
host (``Host._run``, the SSH channel). It answers the probe (``remote.files.probe``) from recorded
facts (tests/unit/fixtures/facts/*.json, as tests/record_facts.py wrote them) and records every other
command and every file write instead of running it; a write or a removal changes the files it answers
with, as the host would. Everything above the channel (the steps, the plan, apply, the probe's script
and its parser) is the real code.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState, Result
from svrchain.facts import Fact
from svrchain.remote import files
from svrchain.remote.connection import Host
from svrchain.remote.group import Session

FIXTURES = Path(__file__).parent / "fixtures" / "facts"
SERVER_VERSION = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"


@dataclass
class Call:
    """One command the host was asked to run (not a probe)."""

    script: str
    args: tuple[str, ...]
    stdin: bytes

    @property
    def what(self) -> str:
        """The call in a word: ``write <path>``, ``remove <paths>``, else the script's first line."""
        if self.script == files.WRITE_SCRIPT:
            return f"write {self.args[0]}"
        if self.script == files._REMOVE:
            return f"remove {' '.join(self.args[1:])}"
        return self.script.strip().splitlines()[0]


@dataclass
class State:
    """What the fake host holds: files by path, command answers by command text (a probe command not
    listed answers ``missing``, any other succeeds with no output), and ``fail``: a rule giving a
    failed result for a command to refuse."""

    files: dict[str, FileState] = field(default_factory=dict)
    answers: dict[str, Result] = field(default_factory=dict)
    missing: Result = field(default_factory=lambda: Result(127, "", "", b""))
    fail: Callable[[Call], Result | None] = lambda call: None
    host_key: str | None = None  # the host key blob the admin's connection saw
    reads: dict[str, str] = field(default_factory=dict)  # path -> the probe command that reads it (FILE_CMD)


def ok(out: str = "") -> Result:
    return Result(0, out, "", out.encode())


def failed(err: str = "refused", code: int = 1) -> Result:
    return Result(code, "", err, b"")


class FakeHost(Host):
    """A Host whose channel is the fake: probes answered from ``state``, everything else recorded."""

    def __init__(self, session: Session, real: Host, state: State):
        super().__init__(session.dialer, real.name, real.role, real.address, real.port, real.user)
        self.state = state
        self.calls: list[Call] = []
        self.probes = 0

    def connection(self) -> SimpleNamespace:
        """Only what is asked of a connection besides running commands: the host key it saw."""
        def seen() -> SimpleNamespace:
            if self.state.host_key is None:
                raise AssertionError(f"{self.name}: the fake host has no host key")
            return SimpleNamespace(get_base64=lambda: self.state.host_key)

        transport = SimpleNamespace(get_remote_server_key=seen, remote_version=SERVER_VERSION)
        return SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport))

    def server_version(self) -> str:
        return SERVER_VERSION

    def twin(self) -> Host:
        return self  # a fresh login on the fake is the same fake

    def close(self) -> None:
        pass

    def _run(self, script: str, *args: str, stdin: bytes = b"", timeout: float = 300) -> Result:
        if script.startswith(files._AS + "\nd=$(mktemp -d)"):
            self.probes += 1
            return self._probe(script)
        call = Call(script, args, stdin)
        self.calls.append(call)
        refused = self.state.fail(call)
        if refused is not None:
            return refused
        if script in self.state.answers:
            return self.state.answers[script]
        if script == files.WRITE_SCRIPT:
            path, mode, owner = args[0], int(args[1], 8), args[2].split(":")
            self.state.files[path] = FileState(path, True, stdin, mode, owner[0], owner[1])
            if path in self.state.reads:  # read by a command (its path known on the host only)
                self.state.answers[self.state.reads[path]] = Result(0, "", "", self._file(path)[1])
        elif script == files._REMOVE:
            for path in args[1:]:
                self.state.files.pop(path, None)
        elif script == 'rm -f -- "$1"':
            self.state.files.pop(args[0], None)
        return ok()

    def _probe(self, script: str) -> Result:
        """The probe's tar stream: each ``sec`` line answered from the state."""
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for m in re.finditer(r"^sec ([fc]\d+) ", script, re.M):
                lexer = shlex.shlex(script[m.end():], posix=True)
                lexer.whitespace_split = True
                name, body = m.group(1), lexer.get_token()
                rc, data = self._file(shlex.split(body)[1]) if name.startswith("f") else self._answer(body)
                for member, content in ((name, data), (name + ".rc", f"{rc}\n".encode())):
                    info = tarfile.TarInfo("./" + member)
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
        return Result(0, "", "", out.getvalue())

    def _file(self, path: str) -> tuple[int, bytes]:
        s = self.state.files.get(path)
        if s is None or not s.exists:
            return 44, b""
        return 0, f"{s.mode:o} {s.owner} {s.group}\n".encode() + s.content

    def _answer(self, command: str) -> tuple[int, bytes]:
        read = re.fullmatch(r'U=\S+; F=(\S+); ufile "\$U" "\$F"', command)  # account.read_files
        if read and command not in self.state.answers:
            return self._file(shlex.split(read.group(1))[0])
        r = self.state.answers.get(command, self.state.missing)
        return r.code, r.raw


def recorded(inv: Inventory, host: str, facts: list[Fact], fixture: str = "lab_chkconfig.json",
             written: dict[str, bytes] | None = None) -> State:
    """A host's state as recorded: the files and command answers of ``facts`` (a file svrchain writes
    has this checkout's bytes from ``written``: only the runtime answers are recorded)."""
    data = json.loads((FIXTURES / fixture).read_text())[host]
    written = written or {}
    state = State()
    for fact in facts:
        d = data[fact.name]
        for path, v in d["files"].items():
            if v is not None:
                content = written.get(path, v["content"].encode())
                state.files[path] = FileState(path, True, content, int(v["mode"], 8), v["owner"], v["group"])
        commands = fact.commands(inv)
        for name, r in d["results"].items():
            state.answers[commands[name]] = Result(r["code"], r["out"], "", r["out"].encode())
            if (fact.name, name) == ("web", "hostkeys") and r["out"].split():  # (sshd's: the key types alone)
                state.host_key = r["out"].split()[1]
    return state


def session_of(inv: Inventory, db: State, webs: dict[str, State]) -> Session:
    """A session on fake hosts: the DB server and the web servers named in ``webs`` (the others are
    not in this run, as with --limit)."""
    s = Session(inv)
    s.results.human = s.out = io.StringIO()
    s.db = FakeHost(s, s.db, db)
    s.all_webs = s.webs = [FakeHost(s, w, webs[w.name]) for w in s.all_webs if w.name in webs]
    return s
