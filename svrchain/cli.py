"""How every svrchain task runs: one session, user errors as one line and a non-zero exit."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke import Collection, Exit, task

from svrchain.errors import SvrchainError, exit_code


def svr_task(*args: Any, **kwargs: Any) -> Any:
    """Like ``invoke.task``, but a :class:`SvrchainError` ends the task with its message (one line per
    problem) and its class's exit code (see :mod:`svrchain.errors`)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def wrapper(c: Any, *a: Any, **kw: Any) -> Any:
            try:
                return fn(c, *a, **kw)
            except SvrchainError as exc:
                raise Exit(f"svrchain: {exc}", code=exit_code(exc)) from None

        return task(wrapper, **kwargs)

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


def collection(*modules_tasks: Any) -> Collection:
    """A collection of the given tasks, with dashed names (``fab install-dbora``)."""
    ns = Collection()
    for t in modules_tasks:
        ns.add_task(t)
    ns.configure({"tasks": {"auto_dash_names": True}})
    return ns
