"""What a run reports, and how: live per-host lines, an end-of-run recap, JSON and JUnit for CI.

Every task run by :func:`svrchain.cli.svr_task` has one :class:`Results`: steps (bootstrap's
changed/ok lines) and checks (verify's rows) are recorded per host as they happen, printed as human
lines on ``human`` (stdout, or stderr with ``--json`` so that stdout holds the JSON document alone),
and at the end summed up in a recap like Ansible's PLAY RECAP. The JSON document's schema is
``docs/output.schema.json``; the formats and exit codes are described in ``docs/output.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from svrchain.core.errors import UsageError

SCHEMA = "svrchain-results/1"
# Every status an item (a step or a check) can have, best first.
# "finding": doctor's advice (a setting that makes a DB restart worse), not a gap in the chain.
STATUSES = ("ok", "skipped", "changed", "would-change", "finding", "gap", "failed", "unreachable")
# The recap's columns: always these, and the others when a host has any.
RECAP_ALWAYS = ("ok", "changed", "failed", "unreachable")
_COLOURS = {"ok": "32", "changed": "33", "would-change": "33", "skipped": "36", "finding": "33", "gap": "31",
            "failed": "31", "unreachable": "35"}
# What a run ended with, by exit code (docs/output.md).
RESULTS = {0: "ok", 1: "failed", 2: "gap", 3: "unreachable", 4: "bad-inventory", 5: "declined",
           130: "interrupted", 143: "interrupted"}
INTERRUPTED = (130, 143)  # Ctrl-C (SIGINT), SIGTERM


@dataclass
class Item:
    """One step or check on one host: what it found or did, and how long it took."""

    kind: str  # "step" or "check"
    name: str
    status: str  # one of STATUSES
    detail: str = ""
    seconds: float = 0.0
    chain: str = ""  # on an estate: the chain whose part of the run it belongs to


@dataclass
class HostRecord:
    """A host of the run and its items."""

    name: str
    role: str
    address: str
    items: list[Item] = field(default_factory=list)
    seconds: float = 0.0  # since the run started, when the host's last item came in

    @property
    def status(self) -> str:
        """The host's worst status (ok when it has no item)."""
        return max((i.status for i in self.items), key=STATUSES.index, default="ok")

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for i in self.items if i.status == s) for s in STATUSES}


# The colours paint() writes: the only escape sequences a svrchain stream lets through (on a terminal).
_SGR = re.compile(r"(\x1b\[(?:0|3[1-6])m)")


def _escaped(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def shown(text: str, keep: str = "\n\t") -> str:
    """``text`` (what a host said: a file's line, a command's output) made inert for a terminal, a
    log or XML: every character that is not printable (ESC, CR, BEL, DEL, C1 controls, bidi overrides,
    line separators, lone surrogates, ...) written as ``\\xNN``/``\\uNNNN``; printable Unicode kept,
    and the line breaks and tabs (``keep``: "" for text that must stay on one line, a table's cell)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else _escaped(c) for c in text)


class ShownStream:
    """A text stream that shows everything written to it with :func:`shown`: nothing a host says can
    move the cursor, rewrite a line or change the terminal. paint()'s colours pass, on a terminal only."""

    def __init__(self, stream: TextIO, colour: bool):
        self._stream = stream
        self._colour = colour

    def write(self, text: str) -> int:
        parts = _SGR.split(text)  # odd indexes: paint()'s colour codes
        self._stream.write("".join(p if i % 2 and self._colour else shown(p) for i, p in enumerate(parts)))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def shown_streams() -> Any:
    """While a task runs, stdout and stderr show host text escaped (:class:`ShownStream`)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (ShownStream(s, use_colour(s)) for s in saved)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def paint(text: str, status: str, colour: bool) -> str:
    """``text`` in the colour of ``status`` (unchanged without colour)."""
    code = _COLOURS.get(status)
    return f"\033[{code}m{text}\033[0m" if colour and code else text


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class RunLog:
    """The admin side's run log: every line the run prints, each with a timestamp, the task and the
    process id, appended to a file (``--log FILE``, else the inventory's ``log``). Lines printed before
    the file is known (before the inventory is read) are kept and written when it is opened."""

    def __init__(self, task: str):
        self.task = task
        self.path: Path | None = None
        self._fd: int | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def _stamp(self, text: str) -> bytes:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        clean = "".join(ch if ch.isprintable() else " " for ch in _ANSI.sub("", text))
        return f"{now} {self.task}[{os.getpid()}] {clean}\n".encode()

    def line(self, text: str) -> None:
        """Log one line (kept until the file is open)."""
        with self._lock:
            if self._fd is None:
                self._pending.append(text)
            else:
                os.write(self._fd, self._stamp(text))

    def open(self, path: Path) -> None:
        """Append to ``path`` from now on (made mode 600 when new); OSError when it cannot be."""
        with self._lock:
            if self._fd is not None:
                return
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self.path = path
            os.write(self._fd, b"".join(self._stamp(t) for t in self._pending))
            self._pending = []

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class Tee(io.TextIOBase):
    """A text stream that writes through to ``stream`` and hands every whole line to ``log``."""

    def __init__(self, stream: TextIO, log: RunLog):
        self.stream, self.log, self._part = stream, log, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        *lines, self._part = (self._part + text).split("\n")
        for ln in lines:
            self.log.line(ln)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def end(self) -> None:
        """Log a last line without its line break."""
        if self._part:
            self.log.line(self._part)
            self._part = ""


class Results:
    """Everything one run reports."""

    def __init__(self, task: str, json_out: bool = False, junit: str | None = None, human: TextIO | None = None):
        self.task = task
        self.json_out = json_out
        self.junit = junit
        self.human = human or (sys.stderr if json_out else sys.stdout)
        self.colour = use_colour(self.human)
        self.started = datetime.now(UTC)
        self._t0 = time.monotonic()
        self.hosts: dict[str, HostRecord] = {}
        self._lock = threading.Lock()
        self.runlog = RunLog(task)
        self._tees: list[tuple[str, Tee]] = []
        self.chain = ""  # on an estate: the chain whose part of the run is going on (stamped on each item)

    def capture(self) -> None:
        """From now on every human line (stdout, and stderr) also goes to the run log."""
        for name in ("stdout", "stderr") if not self.json_out else ("stderr",):
            tee = Tee(getattr(sys, name), self.runlog)
            setattr(sys, name, tee)
            self._tees.append((name, tee))
            if self.human is tee.stream:
                self.human = tee

    def release(self, exit_code: int, error: str | None) -> None:
        """Stop capturing; log the run's error and its exit code; close the run log."""
        for name, tee in reversed(self._tees):
            tee.end()
            setattr(sys, name, tee.stream)
            if self.human is tee:
                self.human = tee.stream
        self._tees = []
        if error:
            self.runlog.line(f"svrchain: {error}")
        self.runlog.line(f"exit {exit_code} ({RESULTS.get(exit_code, 'failed')}, {self.elapsed():.1f}s)")
        self.runlog.close()

    def log_to(self, path: Path, how: str) -> None:
        """Append this run's lines to ``path`` (the first call wins: --log before the inventory's)."""
        try:
            self.runlog.open(path)
        except OSError as exc:
            raise UsageError(f"{how}: cannot append to the run log {path}: {exc.strerror or exc}; "
                             "fix the path or its directory's permissions") from None

    def elapsed(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def host(self, name: str, role: str, address: str) -> HostRecord:
        """The host's record, made on first mention (the inventory's order is kept)."""
        with self._lock:
            if name not in self.hosts:
                self.hosts[name] = HostRecord(name, role, address)
            return self.hosts[name]

    def add(self, host: str, item: Item) -> Item:
        """Record one item for ``host`` (a host not yet mentioned is added with an unknown role)."""
        rec = self.host(host, "", "")
        with self._lock:
            item.chain = item.chain or self.chain
            rec.items.append(item)
            rec.seconds = self.elapsed()
        return item

    def since_last(self, host: str) -> float:
        """Seconds since the host's previous item (or the run's start): how long its latest step took."""
        rec = self.hosts.get(host)
        return round(self.elapsed() - (rec.seconds if rec and rec.items else 0.0), 3)

    def say(self, line: str) -> None:
        """Print one human line (thread-safe, flushed at once)."""
        with self._lock:
            print(line, file=self.human, flush=True)

    def host_line(self, host: str, items: list[Item], seconds: float) -> None:
        """The live line printed as soon as a host's checks are in: its worst status and what is wrong."""
        worst = max((i.status for i in items), key=STATUSES.index, default="ok")
        bad = [i for i in items if i.status in ("finding", "gap", "failed", "unreachable")]
        if worst == "unreachable":
            what = next(i.detail for i in bad if i.status == "unreachable")
        elif bad:
            what = f"{len(bad)} of {len(items)} checks: " + ", ".join(i.name for i in bad)
        else:
            what = f"{len(items)} checks"
        word = paint(f"{worst.upper() if worst != 'ok' else 'ok':<13}", worst, self.colour)
        self.say(f"{host:<10} {word} {shown(what, keep='')} ({seconds:.2f}s)")

    def recap_lines(self, interrupted: bool = False) -> list[str]:
        """PLAY RECAP-style lines: per host, the count of each status (``interrupted``: the run was
        stopped by a signal, said in its first line)."""
        hosts = [h for h in self.hosts.values() if h.items]
        when = f"INTERRUPTED after {self.elapsed():.1f}s" if interrupted else f"{self.elapsed():.1f}s"
        if not hosts:
            return [f"RECAP {self.task} ({when}): nothing done yet"] if interrupted else []
        cols = [s for s in STATUSES if s in RECAP_ALWAYS or any(h.counts()[s] for h in hosts)]
        lines = [f"RECAP {self.task} ({when})"]
        for h in hosts:
            counts = h.counts()
            cells = [paint(f"{s}={counts[s]}", s, self.colour and counts[s] > 0 and s != "ok") for s in cols]
            lines.append(f"{paint(f'{h.name:<10}', h.status, self.colour)} : " + "  ".join(cells))
        return lines

    def document(self, exit_code: int, error: str | None) -> dict:
        """The JSON document (docs/output.schema.json)."""
        totals = {s: sum(h.counts()[s] for h in self.hosts.values()) for s in STATUSES}
        return {
            "schema": SCHEMA,
            "task": self.task,
            "started": self.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "seconds": self.elapsed(),
            "exit_code": exit_code,
            "result": RESULTS.get(exit_code, "failed"),
            "error": error,
            "interrupted": exit_code in INTERRUPTED,
            "hosts": [{"name": h.name, "role": h.role, "address": h.address, "status": h.status,
                       "seconds": h.seconds, "counts": h.counts(), "items": [_item(i) for i in h.items]}
                      for h in self.hosts.values()],
            "totals": totals,
        }

    def junit_xml(self, exit_code: int, error: str | None) -> bytes:
        """A JUnit XML report: one testsuite per host, one testcase per step or check; a gap or a
        failed step is a failure, an unreachable host an error."""
        root = ET.Element("testsuites", name=f"svrchain {self.task}", time=f"{self.elapsed():.3f}")
        suites = [(h.name, h.items) for h in self.hosts.values() if h.items]
        explained = any(i.status in ("gap", "failed", "unreachable") for _, items in suites for i in items)
        if error and (exit_code in INTERRUPTED or not explained):
            suites.append(("run", [Item("run", self.task, RESULTS.get(exit_code, "failed"), error)]))
        for host, items in suites:
            _junit_suite(root, self.task, host, items, self.started)
        for attr in ("tests", "failures", "errors"):
            root.set(attr, str(sum(int(s.get(attr, "0")) for s in root)))
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"

    def check_junit(self) -> str | None:
        """Why the --junit file could not be written (None when it can): checked before the run (it is
        then not tried again at the end)."""
        problem = junit_problem(Path(self.junit)) if self.junit else None
        if problem:
            self.junit = None
        return problem

    def finish(self, exit_code: int, error: str | None) -> tuple[int, str | None]:
        """End of run: the recap (human), the JUnit file and the JSON document (stdout), as asked.
        Returns the run's exit code and error, with a JUnit file that could not be written as an
        error (exit 1 when the run had none)."""
        for line in self.recap_lines(exit_code in INTERRUPTED):
            self.say(line)
        if self.junit:
            try:
                path = Path(self.junit)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.junit_xml(exit_code, error))
            except OSError as exc:
                why = (junit_problem(Path(self.junit)) or "").rpartition(": ")[2] or exc.strerror or str(exc)
                problem = f"cannot write the JUnit report {self.junit}: {why}"
                exit_code, error = exit_code or 1, f"{error}; {problem}" if error else problem
        if self.json_out:
            json.dump(self.document(exit_code, error), sys.stdout, indent=2)
            sys.stdout.write("\n")
            sys.stdout.flush()
        return exit_code, error


def junit_problem(path: Path) -> str | None:
    """Why a JUnit report could not be written to ``path`` (None when it can): a directory, a parent
    that is a file, or a place this user may not write. Nothing is created."""
    if path.is_dir():
        return f"--junit {path}: is a directory; give a file name"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if path.exists():
        return None if os.access(path, os.W_OK) else f"--junit {path}: not writable"
    if not parent.is_dir():
        return f"--junit {path}: {parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--junit {path}: cannot create files in {parent}"
    return None


def _item(i: Item) -> dict:
    """An item in the JSON document: ``chain`` only on an estate's run."""
    return {k: v for k, v in asdict(i).items() if k != "chain" or v}


def _junit_suite(root: ET.Element, task: str, host: str, items: list[Item], started: datetime) -> None:
    """One host's testsuite."""
    suite = ET.SubElement(root, "testsuite", name=f"svrchain.{task}.{host}", hostname=host,
                          timestamp=started.isoformat(timespec="seconds").replace("+00:00", ""))
    failures = errors = 0
    for i in items:
        named = f"{i.kind} {i.name}" + (f" (chain {i.chain})" if i.chain else "")
        case = ET.SubElement(suite, "testcase", classname=f"svrchain.{task}.{host}", name=shown(named),
                             time=f"{i.seconds:.3f}")
        detail = shown(i.detail)  # XML forbids control characters: a host's are escaped, not written raw
        if i.status in ("gap", "failed"):
            failures += 1
            ET.SubElement(case, "failure", type=i.status, message=detail[:500]).text = detail
        elif i.status in ("unreachable", "bad-inventory", "declined", "interrupted"):
            errors += 1
            ET.SubElement(case, "error", type=i.status, message=detail[:500]).text = detail
        elif i.status == "skipped":
            ET.SubElement(case, "skipped", message=detail[:500])
        elif i.detail:
            ET.SubElement(case, "system-out").text = f"{i.status}: {detail}"
    suite.set("tests", str(len(items)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(sum(1 for i in items if i.status == "skipped")))
    suite.set("time", f"{sum(i.seconds for i in items):.3f}")
