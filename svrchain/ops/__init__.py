"""Operations: pure functions from (inventory, facts) to a :class:`Change` for one host.

An operation reads nothing and writes nothing. It returns the files that differ from what svrchain
wants, then what the host must do after them, in order (:class:`Command`: a shell command, files
removed, or a check that puts everything back when it fails), and, when there is nothing to do, why
(its ``noop`` text, shown on the "ok" line). ``remote.apply`` is the one place that turns a change
into ok / would change / changed; ``verify`` plans the same operations against fresh facts, and any
change it finds is a gap. So the desired state is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from svrchain.core.plan import FileChange, FileSpec, FileState, Result, file_change


@dataclass(frozen=True)
class Command:
    """One thing the host does once the files are written: a shell command (``run``), or files
    removed (``removes``: each as found, copied to the backups first). ``shown`` is what the report
    says of it ('' for housekeeping nobody needs to read). With ``problem``, the command is a check:
    ``problem(result)`` says what is wrong (None: nothing), and on a problem every file written or
    removed before it is put back as found, nothing after it runs, and the step fails with that text."""

    run: str = ""
    shown: str = ""
    removes: tuple[FileState, ...] = ()
    problem: Callable[[Result], str | None] | None = None


def command(run: str, shown: str | None = None) -> Command:
    """A shell command, shown in the report as itself unless ``shown`` says otherwise."""
    return Command(run, run if shown is None else shown)


def removal(*states: FileState, shown: str | None = None) -> Command:
    """Remove files (each copied to the backups first); shown as "remove <paths>" unless said otherwise."""
    paths = ", ".join(s.path for s in states)
    return Command(shown=f"remove {paths}" if shown is None else shown, removes=states)


@dataclass(frozen=True)
class Change:
    """What one step must do on one host to reach the desired state."""

    files: tuple[FileChange, ...] = ()  # written first, in order
    commands: tuple[Command, ...] = ()  # then these, in order
    noop: str = ""  # why nothing is needed (the "ok" line's detail)
    said: str = ""  # the report's words for the whole change, when the operation words it itself

    @property
    def empty(self) -> bool:
        return not self.files and not self.commands

    def paths(self) -> dict[str, FileChange]:
        """The files that differ, by path."""
        return {c.spec.path: c for c in self.files}

    def then(self, other: Change, noop: str) -> Change:
        """This change followed by ``other``, as one step (``noop`` when both are empty)."""
        return Change(self.files + other.files, self.commands + other.commands, noop)

    def detail(self) -> str:
        """One line: its own words, else each file that differs and why, then each command shown."""
        if self.said:
            return self.said
        return ", ".join([f"{c.spec.path} ({', '.join(c.reasons)})" for c in self.files]
                         + [c.shown for c in self.commands if c.shown])


def files_change(specs: Iterable[FileSpec], states: dict[str, FileState], commands: Iterable[Command] = (),
                 noop: str = "") -> Change:
    """The change that brings each file of ``specs`` (found as ``states`` says) to its spec, then runs
    ``commands``."""
    changes = tuple(c for c in (file_change(s, states[s.path]) for s in specs) if c is not None)
    return Change(changes, tuple(commands), noop)
