"""How every svrchain task runs: the inventory chosen on the command line, Fabric's flags honoured or
refused, user errors as one line and a documented exit code (see :mod:`svrchain.errors`), and its
results reported (live lines, a recap, --json, --junit FILE: see :mod:`svrchain.output`)."""

from __future__ import annotations

import functools
import inspect
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, Task, task

from svrchain import output, runopts, tell
from svrchain.errors import SvrchainError, UsageError, exit_code
from svrchain.runopts import confirm

__all__ = ["collection", "confirm", "local_task", "svr_task"]

HELP = {
    "inventory": "the inventory file (else $INVENTORY, or INVENTORY= in .env); there is no default",
    "limit": "only these web servers, by name, comma-separated (e.g. web1,web3); the DB server is always used",
    "log": "append this run's lines, with timestamps, to FILE (else the inventory's log: key, if any)",
    "verbose": "show each remote command (as run on the host) and its exit code",
}
# The help of the result flags, for the tasks that declare them (verify, smoke, bootstrap, restart-chain).
RESULT_HELP = {
    "json": "print one JSON document on stdout (its schema: the docs task, `docs schema`); human lines go to stderr",
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


def _options(c: Any, inventory: str | None, limit: str | None, log: str | None = None,
             verbose: bool = False) -> runopts.RunOptions:
    """This run's choices from the command line and the config (Fabric's --dry is read by the caller)."""
    flags = refused_flags(c)
    if flags:
        raise UsageError(f"{flags[0]}: not supported; {REFUSED[flags[0]]}")
    prefix = getattr(c.config, "_project_prefix", None)
    return runopts.RunOptions(inventory=inventory, limit=runopts.parse_limit(limit),
                              project_dir=Path(prefix) if prefix else None, log=log or None, verbose=verbose)


def _signature(fn: Callable[..., Any], limit: bool) -> inspect.Signature:
    """``fn``'s signature plus --inventory, --log and --verbose (and --limit): every task takes them, none
    declares them."""
    sig = inspect.signature(fn)
    kw = inspect.Parameter.KEYWORD_ONLY
    extra = [inspect.Parameter("inventory", kw, default=None, annotation=str | None)]
    if limit:
        extra.append(inspect.Parameter("limit", kw, default=None, annotation=str | None))
    extra += [inspect.Parameter("log", kw, default=None, annotation=str | None),
              inspect.Parameter("verbose", kw, default=False, annotation=bool)]
    return sig.replace(parameters=[*sig.parameters.values(), *extra])


# The short flags every task's own options get, whatever the task declares (-i is Fabric's --identity;
# --log has none: -l is --limit).
SHORT = {"inventory": ("inventory", "I"), "verbose": ("verbose", "v"), "log": ("log",)}


class SvrTask(Task):
    """A task whose --inventory has the short flag -I and --verbose -v."""

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list:
        args = super().get_arguments(ignore_unknown_help)
        for a in args:
            a.names = SHORT.get(a.name, a.names)
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
        def wrapper(c: Any, *a: Any, inventory: str | None = None, limit: str | None = None, log: str | None = None,
                    verbose: bool = False, **kw: Any) -> Any:
            tell.use(program_of(c))
            with output.shown_streams():  # what hosts say is shown escaped
                results = output.start(fn.__name__.replace("_", "-"), json_out=bool(kw.pop("json", False)),
                                       junit=kw.pop("junit", None) or None)

                given = {"inventory": inventory, "limit": limit, "log": log, "verbose": verbose, **kw}
                results.runlog.line(f"run: {fn.__name__.replace('_', '-')} {_shown_options(given)}".rstrip())

                def body() -> None:
                    runopts.use(_options(c, inventory, limit, log, verbose))
                    if log:
                        results.log_to(Path(log).expanduser(), "--log")
                    if dry_aware and c.config.run.dry:
                        kw["dry_run"] = True
                    fn(c, *a, **kw)

                _run(body, results)

        wrapper.__signature__ = _signature(fn, limit)  # type: ignore[attr-defined]
        helps = {**HELP, **(RESULT_HELP if _has_result_flags(fn) else {}), **kwargs.pop("help", {})}
        if not limit:
            helps.pop("limit")
        return task(wrapper, klass=SvrTask, help=helps, **kwargs)

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


def _shown_options(given: dict[str, Any]) -> str:
    """A task's options as the run log's first line names them (those given, as flags)."""
    words: list[str] = []
    for name, value in given.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value not in (None, False, ""):
            words += [flag, str(value)]
    return shlex.join(words)


def program_of(c: Any) -> str:
    """``svrchain`` when the installed command runs this task (it sets ``svrchain_program``), else ``fab``."""
    return c.config.get("svrchain_program", "fab")


def local_task(fn: Callable[..., Any]) -> Any:
    """A task that works on this machine only (no inventory, no host): its messages name this run's
    program, it prints the line its body returns, and a :class:`SvrchainError` ends it with one line and
    its class's exit code."""

    @functools.wraps(fn)
    def wrapper(c: Any, *a: Any, **kw: Any) -> None:
        tell.use(program_of(c))
        try:
            said = fn(c, *a, **kw)
        except SvrchainError as exc:
            raise Exit(f"svrchain: {exc}", code=exit_code(exc)) from None
        if said:
            print(said, end="" if said.endswith("\n") else "\n")

    return task(wrapper)


def _run(body: Callable[[], None], results: output.Results) -> None:
    """Run a task's body; report its results (recap, JSON, JUnit), also when it fails; then exit with
    its error's line and code."""
    code, error = 0, None
    results.capture()
    try:
        try:
            body()
        except SvrchainError as exc:
            code, error = exit_code(exc), str(exc)
        try:
            results.finish(code, error)
        except OSError as exc:
            code = code or 1
            error = error or f"cannot write the JUnit report {results.junit}: {exc.strerror or exc}"
    finally:
        results.release(code, error)
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
