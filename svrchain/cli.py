"""How every svrchain task runs: the inventory chosen on the command line, Fabric's flags honoured or
refused, user errors as one line and a documented exit code (see :mod:`svrchain.errors`), and its
results reported (live lines, a recap, --json, --junit FILE: see :mod:`svrchain.output`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, Task, task

from svrchain import output, runopts
from svrchain.errors import SvrchainError, UsageError, exit_code
from svrchain.runopts import confirm

__all__ = ["collection", "confirm", "svr_task"]

HELP = {
    "inventory": "the inventory file (else $INVENTORY, or INVENTORY= in .env); there is no default",
    "limit": "only these web servers, by name, comma-separated (e.g. web1,web3); the DB server is always used",
}
# The help of the result flags, for the tasks that declare them (verify, smoke, bootstrap, restart-chain).
RESULT_HELP = {
    "json": "print one JSON document on stdout (docs/output.schema.json); human lines go to stderr",
    "junit": "also write a JUnit XML report to FILE (one testcase per host and step or check)",
}

# Fabric's and Invoke's flags svrchain cannot honour: where the setting lives instead.
REFUSED = {
    "-H/--hosts": "svrchain takes its hosts from the inventory (db.address, web.servers): choose the "
                  "inventory with -I and some web servers with --limit",
    "-i/--identity": "svrchain logs in with the inventory's connect.identity: set it there",
    "-S/--ssh-config": "set connect.ssh_config in the inventory (e.g. ~/.ssh/config: host aliases and "
                       "ProxyJump), so that every run on this site reaches its hosts the same way",
    "-t/--connect-timeout": "set connect.timeout in the inventory",
    "-T/--command-timeout": "svrchain's waits are in the inventory (db.ready.timeout, trigger.restart_timeout)",
    "--prompt-for-login-password": "svrchain logs in with a key only (connect.identity in the inventory)",
    "--prompt-for-passphrase": "svrchain never asks for a passphrase: add the key to ssh-agent (ssh-add)",
    "--prompt-for-sudo-password": "svrchain needs passwordless sudo (sudo -n) for connect.user, or connect.user: root",
    "-e/--echo": "svrchain runs no local commands; each remote step is printed with its result anyway",
    "-w/--warn-only": "svrchain runs no local commands; a failed step always ends the task with its exit code",
    "-p/--pty": "svrchain runs no local commands; remote commands never get a terminal",
    "--hide": "svrchain runs no local commands; its output is one line per host and step",
}


def refused_flags(c: Any) -> list[str]:
    """The flags of this command line svrchain cannot honour (read from the config they set)."""
    cfg = c.config
    over = getattr(cfg, "_overrides", {}) or {}
    ck, run = over.get("connect_kwargs") or {}, over.get("run") or {}
    found = {
        "-H/--hosts": hasattr(c, "host") and hasattr(c, "client"),  # Fabric ran the task per host
        "-i/--identity": bool(ck.get("key_filename")),
        "-S/--ssh-config": bool(getattr(cfg, "_runtime_ssh_path", None)),
        "-t/--connect-timeout": bool(ck.get("timeout")),
        "-T/--command-timeout": bool((over.get("timeouts") or {}).get("command")),
        "--prompt-for-login-password": "password" in ck,
        "--prompt-for-passphrase": "passphrase" in ck,
        "--prompt-for-sudo-password": "password" in (over.get("sudo") or {}),
        "-e/--echo": bool(run.get("echo")),
        "-w/--warn-only": bool(run.get("warn")),
        "-p/--pty": bool(run.get("pty")),
        "--hide": bool(run.get("hide")),
    }
    return [flag for flag, present in found.items() if present]


def _options(c: Any, inventory: str | None, limit: str | None) -> runopts.RunOptions:
    """This run's choices from the command line and the config (Fabric's --dry is read by the caller)."""
    flags = refused_flags(c)
    if flags:
        raise UsageError(f"{flags[0]}: not supported; {REFUSED[flags[0]]}")
    prefix = getattr(c.config, "_project_prefix", None)
    return runopts.RunOptions(inventory=inventory, limit=runopts.parse_limit(limit),
                              project_dir=Path(prefix) if prefix else None)


def _signature(fn: Callable[..., Any], limit: bool) -> inspect.Signature:
    """``fn``'s signature plus --inventory (and --limit): every task takes them, none declares them."""
    sig = inspect.signature(fn)
    extra = [inspect.Parameter("inventory", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None)]
    if limit:
        extra.append(inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=str | None))
    return sig.replace(parameters=[*sig.parameters.values(), *extra])


class SvrTask(Task):
    """A task whose --inventory has the short flag -I (-i is Fabric's --identity)."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list:
        args = super().get_arguments(ignore_unknown_help)
        for a in args:
            if a.name == "inventory":
                a.names = ("inventory", "I")
        return args


def svr_task(*args: Any, limit: bool = False, **kwargs: Any) -> Any:
    """Like ``invoke.task``, and every task also takes --inventory/-I (with ``limit``, --limit too);
    Fabric's --dry is the task's --dry-run (a read-only task ignores it); a flag svrchain cannot honour
    is refused; a :class:`SvrchainError` ends the task with its message and its class's exit code. A
    task that declares ``json`` and ``junit`` gets them handled here (taken out of its arguments): its
    results are reported as asked, also when it fails (:func:`_run`)."""

    def decorate(fn: Callable[..., Any]) -> Any:
        dry_aware = "dry_run" in inspect.signature(fn).parameters

        @functools.wraps(fn)
        def wrapper(c: Any, *a: Any, inventory: str | None = None, limit: str | None = None, **kw: Any) -> Any:
            def body() -> None:
                runopts.use(_options(c, inventory, limit))
                if dry_aware and c.config.run.dry:
                    kw["dry_run"] = True
                fn(c, *a, **kw)

            with output.shown_streams():  # what hosts say is shown escaped
                results = output.start(fn.__name__.replace("_", "-"), json_out=bool(kw.pop("json", False)),
                                       junit=kw.pop("junit", None) or None)
                _run(body, results)

        wrapper.__signature__ = _signature(fn, limit)  # type: ignore[attr-defined]
        helps = {**HELP, **(RESULT_HELP if _has_result_flags(fn) else {}), **kwargs.pop("help", {})}
        if not limit:
            helps.pop("limit")
        return task(wrapper, klass=SvrTask, help=helps, **kwargs)

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


def _run(body: Callable[[], None], results: output.Results) -> None:
    """Run a task's body; report its results (recap, JSON, JUnit), also when it fails; then exit with
    its error's line and code."""
    code, error = 0, None
    try:
        body()
    except SvrchainError as exc:
        code, error = exit_code(exc), str(exc)
    try:
        results.finish(code, error)
    except OSError as exc:
        code = code or 1
        error = error or f"cannot write the JUnit report {results.junit}: {exc.strerror or exc}"
    if code:
        raise Exit(f"svrchain: {output.shown(error)}", code=code)


def _has_result_flags(fn: Callable[..., Any]) -> bool:
    """Whether the task declares --json and --junit."""
    return {"json", "junit"} <= set(inspect.signature(fn).parameters)


def collection(*modules_tasks: Any) -> Collection:
    """A collection of the given tasks, with dashed names (``fab install-dbora``)."""
    ns = Collection()
    for t in modules_tasks:
        ns.add_task(t)
    ns.configure({"tasks": {"auto_dash_names": True}})
    return ns
