"""Operations: pure functions from (inventory, facts) to a :class:`Change` for one host.

An operation reads nothing and writes nothing. It returns the files that differ from what svrchain
wants, the commands to run after them, and, when there is nothing to do, why (its ``noop`` text,
shown on the "ok" line). ``remote.apply`` is the one place that turns a change into ok / would
change / changed; ``verify`` plans the same operations against fresh facts, and any change it finds
is a gap. So the desired state is written once, here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from svrchain.core.plan import FileChange, FileSpec, FileState, file_change


@dataclass(frozen=True)
class Change:
    """What one step must do on one host to reach the desired state."""

    files: tuple[FileChange, ...] = ()
    commands: tuple[str, ...] = ()
    noop: str = ""  # why nothing is needed (the "ok" line's detail)
    what: tuple[str, ...] = ()  # the commands in words, for the report (same order as commands)

    @property
    def empty(self) -> bool:
        return not self.files and not self.commands

    def paths(self) -> dict[str, FileChange]:
        """The files that differ, by path."""
        return {c.spec.path: c for c in self.files}

    def then(self, other: Change, noop: str) -> Change:
        """This change followed by ``other``, as one step (``noop`` when both are empty)."""
        return Change(self.files + other.files, self.commands + other.commands, noop,
                      (self.what or self.commands) + (other.what or other.commands))

    def detail(self) -> str:
        """One line: each file that differs and why, then each command (in words where given)."""
        words = self.what or self.commands
        return ", ".join([f"{c.spec.path} ({', '.join(c.reasons)})" for c in self.files] + list(words))


def files_change(specs: Iterable[FileSpec], states: dict[str, FileState], commands: Iterable[str] = (),
                 noop: str = "", what: Iterable[str] = ()) -> Change:
    """The change that brings each file of ``specs`` (found as ``states`` says) to its spec, then runs
    ``commands``."""
    changes = tuple(c for c in (file_change(s, states[s.path]) for s in specs) if c is not None)
    return Change(changes, tuple(commands), noop, tuple(what))
