"""How every svrchain task runs: one session, user errors as one line and a documented exit code,
and its results reported (live lines, recap, --json, --junit FILE)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from invoke import Collection, Exit, task

from svrchain import output
from svrchain.errors import SvrchainError, exit_code

# The help of the result flags, for the tasks that have them.
RESULT_HELP = {
    "json": "print one JSON document on stdout (docs/output.schema.json); human lines go to stderr",
    "junit": "also write a JUnit XML report to FILE (one testcase per host and step or check)",
}


def svr_task(*args: Any, **kwargs: Any) -> Any:
    """Like ``invoke.task``, but a :class:`SvrchainError` ends the task with its message (one line on
    stderr) and its exit code (errors.py). A task that declares ``json`` and ``junit`` flags gets
    them handled here: they are taken out of its arguments and decide how its results are reported."""

    def decorate(fn: Callable[..., Any]) -> Any:
        @functools.wraps(fn)
        def wrapper(c: Any, *a: Any, **kw: Any) -> Any:
            results = output.start(fn.__name__.replace("_", "-"), json_out=bool(kw.pop("json", False)),
                                   junit=kw.pop("junit", None) or None)
            code, error = 0, None
            try:
                fn(c, *a, **kw)
            except SvrchainError as exc:
                code, error = exit_code(exc), str(exc)
            try:
                results.finish(code, error)
            except OSError as exc:
                code, error = code or 1, error or f"cannot write the JUnit report {results.junit}: {exc.strerror}"
            if code:
                raise Exit(f"svrchain: {error}", code=code)

        if _has_result_flags(fn):
            kwargs["help"] = {**RESULT_HELP, **(kwargs.get("help") or {})}
        return task(wrapper, **kwargs)

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


def _has_result_flags(fn: Callable[..., Any]) -> bool:
    code = fn.__code__
    return {"json", "junit"} <= set(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])


def collection(*modules_tasks: Any) -> Collection:
    """A collection of the given tasks, with dashed names (``fab install-dbora``)."""
    ns = Collection()
    for t in modules_tasks:
        ns.add_task(t)
    ns.configure({"tasks": {"auto_dash_names": True}})
    return ns
