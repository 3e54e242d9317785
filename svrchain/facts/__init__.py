"""Facts: what svrchain reads of a host, each with its probe and its parser side by side (as
pyinfra's FactBase does). A :class:`Fact` names the files it reads and the shell commands it runs;
:meth:`Fact.parse` turns what they gave into the frozen dataclass the operations take.

Pure: reading is ``remote.facts.gather``, which runs every fact a run needs from a host in one
probe (one round trip), keeps each parsed fact for the run, and reads again, after a change to
the host, only the facts asked for again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from svrchain.core.errors import HostError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState, Result

T = TypeVar("T")

# A file read as a probe command, for a path only known on the host ($F): see file_state.
FILE_CMD = 'file "$F"'
# The same for a file in account $U's home, read as $U, never through a link (remote.files' ufile).
UFILE_CMD = 'ufile "$U" "$F"'


def file_state(label: str, path: str, rc: int, raw: bytes) -> FileState:
    """A file's state from the output of ``FILE_CMD`` or ``UFILE_CMD`` on host ``label`` (mode/owner
    line, then the bytes; exit 44: no such file, 45: unsafe, and why)."""
    if rc == 44:
        return FileState(path, exists=False)
    if rc == 45:
        return FileState(path, exists=True, unsafe=raw.decode(errors="replace").strip())
    if rc != 0:
        raise HostError(f"{label}: cannot read {path}: {raw.decode(errors='replace').strip()}")
    meta, _, content = raw.partition(b"\n")
    mode, owner, group = meta.decode().split()
    return FileState(path, True, content, int(mode, 8), owner, group)


@dataclass(frozen=True)
class Raw:
    """What one fact's part of the probe gave: its files, and its commands' results by name."""

    label: str  # the host, as errors name it
    states: dict[str, FileState]
    results: dict[str, Result]

    def file(self, name: str, path: str) -> FileState:
        """The file ``path`` that the command ``name`` read (FILE_CMD, UFILE_CMD)."""
        r = self.results[name]
        return file_state(self.label, path, r.code, r.raw)


class Fact(Generic[T]):
    """One fact: its name (unique per host and inventory), the files it reads, the commands it runs
    (by name), the shell its commands share (``prelude``, run once per probe), and its parser."""

    name: str = ""
    # Its commands that look at other processes' command lines (pgrep -f): run alone, before the
    # probe's other sections, which run at once and could otherwise be seen among them.
    first: tuple[str, ...] = ()

    def prelude(self, inv: Inventory) -> str:
        """Shell run once before every command of the probe (it may set variables they share)."""
        return ""

    def files(self, inv: Inventory) -> list[str]:
        """The files the probe reads for this fact."""
        return []

    def commands(self, inv: Inventory) -> dict[str, str]:
        """The read-only commands the probe runs for this fact, by name."""
        return {}

    def stdin(self, inv: Inventory) -> bytes:
        """What the prelude reads on stdin (a secret never goes on a command line); b"" for none."""
        return b""

    def parse(self, inv: Inventory, raw: Raw) -> T:
        """The fact, typed, from what its files and commands gave (may raise a HostError naming the host)."""
        raise NotImplementedError
