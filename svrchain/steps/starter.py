"""init and docs: what the installed command ships besides its tasks, for a user with no checkout.

``svrchain init FILE`` writes the commented example inventory (the checkout's ``inventory/example.yaml``,
installed as package data: one file, the same bytes); ``svrchain docs [NAME]`` prints a doc a
message points to (the output formats and exit codes, the JSON schema), also shipped from the
checkout's ``docs/``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from svrchain.core import tell
from svrchain.core.errors import SvrchainError, UsageError

HERE = Path(__file__).resolve().parents[1]  # svrchain/
# What each doc of tell.DOCS (name -> the checkout's file) is; installed, each is package data (pyproject).
ABOUT = {
    "output": "the output formats (--json, --junit) and the exit codes",
    "schema": "the JSON schema of --json's document",
}
# The checkout's folders, as installed: svrchain.docs and svrchain.example (pyproject.toml).
INSTALLED_AS = {"docs": "docs", "inventory": "example"}


def shipped(relative: str) -> Path:
    """A file the command ships (``docs/output.md``): the installed copy in a wheel's svrchain/, else the
    checkout's own (an editable install or fab in the checkout)."""
    folder, name = relative.split("/", 1)
    installed = HERE / INSTALLED_AS[folder] / name
    return installed if installed.is_file() else HERE.parent / relative


def example_text() -> bytes:
    """The commented example inventory, as shipped."""
    return shipped(tell.EXAMPLE).read_bytes()


def run_init(file: str, force: bool = False) -> str:
    """Write the example inventory to ``file``; an existing file is kept unless ``force``. Returns the line
    to print."""
    path = Path(os.path.expanduser(file))
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name, e.g. {path / 'prod.yaml'}")
    data = example_text()
    try:
        if force:
            _replace(path, data)
        else:
            with path.open("xb") as out:
                out.write(data)
    except FileExistsError:
        raise UsageError(f"{path} exists; keeping it: choose another name, or pass --force to replace it") from None
    except OSError as exc:
        raise SvrchainError(f"cannot write {path}: {exc.strerror or exc}") from None
    return (f"wrote the example inventory to {path}: edit it (every key is explained in its comments), "
            f"then run {tell.command(f'trust-hosts -I {path}')}")


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run_docs(name: str, path: bool = False) -> str:
    """The text of the doc ``name`` (a key of :data:`tell.DOCS`), or with ``path`` where it is."""
    if name not in tell.DOCS:
        docs = "; ".join(f"{n}: {about}" for n, about in ABOUT.items())
        raise UsageError(f"docs {name}: no such doc; the docs are {docs}")
    where = shipped(tell.DOCS[name])
    return str(where) if path else where.read_text()
