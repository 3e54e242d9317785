"""What a step would change: desired files and commands against the state read from a host.

Pure logic. A step reads facts, builds :class:`FileSpec` values, and :func:`file_change` says
whether (and how) each differs; the runner prints the diff in a dry run and applies otherwise.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Result:
    """What a remote command did."""

    code: int
    stdout: str
    stderr: str
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class FileState:
    """A file as found on a host."""

    path: str
    exists: bool
    content: bytes = b""
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    # Why svrchain will not touch it (a symbolic link, another account's file in a home), or None.
    unsafe: str | None = None


@dataclass(frozen=True)
class FileSpec:
    """A file as svrchain wants it."""

    path: str
    content: bytes
    mode: int
    owner: str = "root"
    group: str = "root"
    parent_mode: int | None = None  # create the directory with this mode when it is missing
    # A check of the new content before it takes the old file's place: a shell command run on the
    # host with the temp file as $1 (e.g. 'visudo -cq -f "$1"'); a failure leaves the old file.
    validate: str | None = None
    # The account whose home holds the file: every step of the write then runs as that account
    # (root never acts through a path the account controls); owner is that account.
    runas: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class FileChange:
    """A file that differs: what it is, what it becomes, and why."""

    spec: FileSpec
    state: FileState
    reasons: tuple[str, ...]

    def diff(self) -> str:
        """A unified diff of the content (empty when only mode or owner differ)."""
        old = self.state.content.decode("utf-8", "replace").splitlines(keepends=True)
        new = self.spec.content.decode("utf-8", "replace").splitlines(keepends=True)
        lines = difflib.unified_diff(
            old, new,
            fromfile=self.spec.path if self.state.exists else "/dev/null",
            tofile=self.spec.path,
        )
        return "".join(x if x.endswith("\n") else x + "\n\\ No newline at end of file\n" for x in lines)


def file_change(spec: FileSpec, state: FileState) -> FileChange | None:
    """The change that makes ``state`` match ``spec``, or None when they already match."""
    if not state.exists:
        return FileChange(spec, state, ("create",))
    reasons: list[str] = []
    if state.content != spec.content:
        reasons.append("content")
    if state.mode != spec.mode:
        reasons.append(f"mode {state.mode:o}->{spec.mode:o}" if state.mode is not None else "mode")
    if (state.owner, state.group) != (spec.owner, spec.group):
        reasons.append(f"owner {state.owner}:{state.group}->{spec.owner}:{spec.group}")
    return FileChange(spec, state, tuple(reasons)) if reasons else None


@dataclass
class Outcome:
    """What one step did (or would do) on one host."""

    host: str
    step: str
    status: str  # "ok", "changed", "would change", "failed", "unreachable", "skipped"
    detail: str = ""
    diffs: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "unreachable")
