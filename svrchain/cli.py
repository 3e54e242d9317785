"""How every svrchain task runs: the inventory chosen on the command line, Fabric's flags honoured or
refused, user errors as one line and a documented exit code (see :mod:`svrchain.core.errors`), and its
results reported (live lines, a recap, --json, --junit FILE: see :mod:`svrchain.core.output`)."""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fabric.main
import invoke.program
from invoke import Collection, Exit, ParseError, Program, Task, task

from svrchain.core import output, tell
from svrchain.core.errors import Interrupted, SvrchainError, UsageError, exit_code
from svrchain.remote import runopts
from svrchain.remote.runopts import confirm

__all__ = ["collection", "confirm", "local_task", "svr_task"]

HELP = {
    "inventory": "the inventory file (else $INVENTORY, or INVENTORY= in .env); there is no default",
    "limit": "only these web servers, by name, comma-separated (e.g. web1,web3); the DB server is always used",
    "chain": "only this chain of an estate inventory (chains:), by name; default: every chain",
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
    "-i/--identity": "did you mean -I FILE (--inventory)? Ansible's -i is svrchain's -I; Fabric's -i "
                     "(--identity) is the inventory's connect.identity",
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


# What stands in a refused --prompt-for-* flag's secret (never asked: see _NoPrompt).
NOT_ASKED = "(not asked: refused)"


class _NoPrompt:
    """Stands for the getpass module in Fabric's and Invoke's programs, whose --prompt-for-* flags ask
    for a secret before any task runs (a prompt on a terminal; without one an EOFError traceback).
    svrchain refuses those flags: nothing is asked, the flag is recorded, and the task refuses it in
    one line (with its --json and --junit reports)."""

    @staticmethod
    def getpass(prompt: str = "", stream: Any = None) -> str:
        return NOT_ASKED


fabric.main.getpass = _NoPrompt  # type: ignore[attr-defined,assignment]
invoke.program.getpass = _NoPrompt  # type: ignore[attr-defined,assignment]


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
             verbose: bool = False, chain: str | None = None) -> runopts.RunOptions:
    """This run's choices from the command line and the config (Fabric's --dry is read by the caller)."""
    flags = refused_flags(c)
    if flags:
        raise UsageError(f"{flags[0]}: not supported; {REFUSED[flags[0]]}")
    prefix = getattr(c.config, "_project_prefix", None)
    return runopts.RunOptions(inventory=inventory, limit=runopts.parse_limit(limit),
                              project_dir=Path(prefix) if prefix else None, log=log or None, verbose=verbose,
                              chain=runopts.parse_chain(chain))


def _signature(fn: Callable[..., Any], limit: bool) -> inspect.Signature:
    """``fn``'s signature plus --inventory, --chain, --log and --verbose (and --limit): every task takes
    them, none declares them."""
    sig = inspect.signature(fn)
    kw = inspect.Parameter.KEYWORD_ONLY
    extra = [inspect.Parameter("inventory", kw, default=None, annotation=str | None),
             inspect.Parameter("chain", kw, default=None, annotation=str | None)]
    if limit:
        extra.append(inspect.Parameter("limit", kw, default=None, annotation=str | None))
    extra += [inspect.Parameter("log", kw, default=None, annotation=str | None),
              inspect.Parameter("verbose", kw, default=False, annotation=bool)]
    return sig.replace(parameters=[*sig.parameters.values(), *extra])


# The short flags every task's own options get, whatever the task declares (-i is Fabric's --identity;
# --log has none: -l is --limit).
SHORT = {"inventory": ("inventory", "I"), "verbose": ("verbose", "v"), "log": ("log",), "chain": ("chain",)}


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
                    verbose: bool = False, chain: str | None = None, **kw: Any) -> Any:
            tell.use(program_of(c))
            with output.shown_streams():  # what hosts say is shown escaped
                results = output.Results(fn.__name__.replace("_", "-"), json_out=bool(kw.pop("json", False)),
                                       junit=kw.pop("junit", None) or None)

                given = {"inventory": inventory, "chain": chain, "limit": limit, "log": log, "verbose": verbose, **kw}
                results.runlog.line(f"run: {fn.__name__.replace('_', '-')} {_shown_options(given)}".rstrip())

                def body() -> None:
                    problem = results.check_junit()
                    if problem:
                        raise UsageError(f"{problem}; nothing was done")
                    runopts.attach(c, runopts.Run(_options(c, inventory, limit, log, verbose, chain), results))
                    if log:
                        results.log_to(Path(log).expanduser(), "--log")
                    if dry_aware and c.config.run.dry:
                        kw["dry_run"] = True
                    fn(c, *a, **kw)

                with interrupts(results):
                    _run(body, results)

        wrapper.__signature__ = _signature(fn, limit)  # type: ignore[attr-defined]
        helps = {**HELP, **(RESULT_HELP if _has_result_flags(fn) else {}), **kwargs.pop("help", {})}
        if not limit:
            helps.pop("limit")
        return task(wrapper, klass=SvrTask, help=helps, **kwargs)

    if args and callable(args[0]):
        return decorate(args[0])
    return decorate


class Signalled(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, raised in the main thread wherever it waits: the run stops at once."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# Taken by whoever writes an interrupted run's reports: the main thread, or the watchdog.
_reporting = threading.Lock()
WATCHDOG_SECONDS = 2.0


def _on_signal(signum: int, results: output.Results) -> None:
    """The first SIGINT or SIGTERM stops the run; any later one is ignored while the reports are written."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    _watchdog(signum, results)
    raise Signalled(signum)


def _watchdog(signum: int, results: output.Results) -> None:
    """Should the interrupt raised in the main thread be lost (raised while a finalizer runs there,
    where Python only prints it), end the run from another thread a moment later, reports written."""
    def later() -> None:
        if _reporting.acquire(blocking=False):
            stop = Interrupted(signum)
            code, error = results.finish(stop.code, str(stop))
            results.release(code, error)
            _exit_now(code, f"svrchain: {error}")
    timer = threading.Timer(WATCHDOG_SECONDS, later)
    timer.daemon = True
    timer.start()


@contextlib.contextmanager
def interrupts(results: output.Results) -> Iterator[None]:
    """While a task runs (in the main thread): Ctrl-C and SIGTERM raise :class:`Signalled` there (the
    run's ``results`` are reported, by a watchdog should that be lost)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # (a task run by a test in a thread of its own: signals are the main thread's)
        return
    before = {s: signal.signal(s, lambda signum, frame: _on_signal(signum, results))
              for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


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
    """Run a task's body; report its results (recap, JSON, JUnit), also when it fails or a signal
    stops it (its connections closed on the way out: their threads end with them); then exit with
    its error's line and code."""
    code, error = 0, None
    results.capture()
    try:
        try:
            body()
        except SvrchainError as exc:
            code, error = exit_code(exc), str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Signalled)
            _reporting.acquire()  # (held by the watchdog: it ends the process)
            stop = Interrupted(getattr(exc, "signum", signal.SIGINT))
            code, error = stop.code, str(stop)
        code, error = results.finish(code, error)
    finally:
        results.release(code, error)
    if code in output.INTERRUPTED and threading.current_thread() is threading.main_thread():
        _exit_now(code, f"svrchain: {error}")
    if code:
        raise Exit(f"svrchain: {output.shown(error)}", code=code)


def _exit_now(code: int, line: str) -> None:
    """End the process at once, the reports written: threads still stuck in a connect or a read of a
    host that hangs (their connections closed) are not waited for, nor is Python's teardown."""
    print(line, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(code)


def _has_result_flags(fn: Callable[..., Any]) -> bool:
    """Whether the task declares --json and --junit."""
    return {"json", "junit"} <= set(inspect.signature(fn).parameters)


_NO_IDEA = re.compile(r"^No idea what '(.*)' is!$")
_NO_VALUE = re.compile(r"^Flag <Argument: ([^>]*)> needed value")


def parse_problem(message: str, tasks: list[str], flags: list[str], prog: str = "svrchain") -> str:
    """A parse error of the command line as one line, with a "did you mean" for an unknown task or flag
    (``tasks``: the task names; ``flags``: those the failing place accepts; ``prog``: fab or svrchain)."""
    m = _NO_IDEA.match(message)
    if not m:
        v = _NO_VALUE.match(message)
        name = max(re.findall(r"[\w-]+", v.group(1)), key=len, default="") if v else ""
        what = f"--{name.replace('_', '-')}: needs a value" if v else message.rstrip("!")
        return f"{what}; see `{prog} --help <task>`"
    token = m.group(1)
    if token == "-i":
        return ("-i: unknown flag; did you mean -I FILE (--inventory)? svrchain's inventory flag is -I "
                "(-i is Ansible's)")
    is_flag = token.startswith("-")
    words = flags if is_flag else tasks
    close = difflib.get_close_matches(token, words, n=1, cutoff=0.6)
    if not close and is_flag:
        close = [f for f in words if f.lower() == token.lower()]
    what = "flag" if is_flag else "task"
    hint = f"did you mean {close[0]}?" if close else (
        f"`{prog} --help <task>` lists its flags" if is_flag else f"`{prog} --list` lists the tasks")
    return f"{token}: unknown {what}; {hint}"


def _parse_tasks(self: Program) -> None:
    """Invoke's parse of the tasks and their flags, an error as one line and exit 4."""
    try:
        _invoke_parse_tasks(self)
    except ParseError as exc:
        ctx = exc.context
        flags = sorted(ctx.flags) if ctx is not None else []
        if self.initial_context is not None:
            flags += sorted(self.initial_context.flags)
        prog = Path(self.called_as or "svrchain").name
        line = parse_problem(str(exc), list(self.collection.task_names), flags, prog)
        raise Exit(f"svrchain: {line}", code=4) from None


# Every Invoke program in this process (fab loads this module with the fabfile, before it parses the
# tasks; the svrchain command imports it first) reports a bad command line this way.
_invoke_parse_tasks = getattr(Program.parse_tasks, "__wrapped__", Program.parse_tasks)
_parse_tasks.__wrapped__ = _invoke_parse_tasks  # type: ignore[attr-defined]
Program.parse_tasks = _parse_tasks  # type: ignore[method-assign]


def collection(*modules_tasks: Any) -> Collection:
    """A collection of the given tasks, with dashed names (``fab install-dbora``)."""
    ns = Collection()
    for t in modules_tasks:
        ns.add_task(t)
    ns.configure({"tasks": {"auto_dash_names": True}})
    return ns
