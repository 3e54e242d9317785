"""One run on the inventory's hosts: which hosts (``--limit``), work on them in parallel, facts read
once per run, and the report: one line per host and step as it happens, the exit code at the end.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from invoke import Context

from svrchain.core import inventory, output, tell
from svrchain.core.errors import HostError, SvrchainError, Unreachable
from svrchain.core.plan import Outcome
from svrchain.remote import early, runopts, sshauth
from svrchain.remote.connection import WAKE, Dialer, Host, Once, load_known_hosts

T = TypeVar("T")
P = ParamSpec("P")


class Workers:
    """Up to ``count`` daemon threads running the calls submitted. The process never waits for them
    when it ends: on Ctrl-C or SIGTERM a thread stuck connecting to, or reading from, a host that
    hangs does not hold the run up (its connection is closed, and the thread ends with it)."""

    def __init__(self, count: int):
        self.count = max(1, count)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, fn: Callable[[], T]) -> Future:
        """Run ``fn`` on a worker; its Future holds the result or the exception."""
        fut: Future = Future()
        self._queue.put((fut, fn))
        if len(self._threads) < self.count:
            t = threading.Thread(target=self._work, name="svrchain-worker", daemon=True)
            self._threads.append(t)
            t.start()
        return fut

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            fut, fn = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed to the caller with the future
                    fut.set_exception(exc)

    def shutdown(self) -> None:
        """Let the workers end once the calls queued are done (without waiting for them)."""
        for _ in self._threads:
            self._queue.put(None)


def parallel_map(fn: Callable[[T], object], items: list[T], count: int) -> list:
    """``[fn(x) for x in items]`` on up to ``count`` workers; the first exception is raised once every
    call has ended. Waiting is interrupted by a signal (Ctrl-C, SIGTERM): then nothing more is waited for."""
    pool = Workers(min(count, len(items)))
    try:
        futures = [pool.submit(lambda x=x: fn(x)) for x in items]
        while wait(futures, timeout=WAKE).not_done:  # short steps: see connection.WAKE
            pass
        return [f.result() for f in futures]
    finally:
        pool.shutdown()


class GroupResult(Mapping[str, T]):
    """What :meth:`Session.each` got from each host, by host name in the hosts' order, as Fabric's
    GroupResult: ``succeeded``, the values; ``failed``, the errors. A failed host's value cannot be read
    (reading it raises its error), and failures nobody took in hand (``failed``, or
    :meth:`Session.report_failures`) are reported when the task's work ends (:func:`on_hosts`): a
    failure is never dropped without a word."""

    def __init__(self, step: str, results: dict[str, T | HostError]):
        self.step = step
        self._results = results
        self.taken = not any(isinstance(r, HostError) for r in results.values())

    @property
    def succeeded(self) -> dict[str, T]:
        """The hosts where the work returned, and what it returned."""
        return {h: r for h, r in self._results.items() if not isinstance(r, HostError)}

    @property
    def failed(self) -> dict[str, HostError]:
        """The hosts where the work raised, and the error; reading them takes the failures in hand."""
        self.taken = True
        return {h: r for h, r in self._results.items() if isinstance(r, HostError)}

    def __getitem__(self, host: str) -> T:
        result = self._results[host]
        if isinstance(result, HostError):
            raise result
        return result

    def __contains__(self, host: object) -> bool:
        return host in self._results

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


class Session:
    """One run: the inventory, its hosts, one connection each, and the outcome report."""

    def __init__(self, inv: inventory.Inventory, run: runopts.Run | None = None, lock: bool = False,
                 auth: sshauth.Auth | None = None):
        self.inv = inv
        self.results = run.results if run else output.Results("svrchain")
        self.out = self.results.human
        verbose = run is not None and run.options.verbose
        self.dialer = Dialer(inv, auth, say=self.results.say if verbose else None)
        self.outcomes: list[Outcome] = []
        self.unreachable: set[str] = set()  # hosts this run could not connect to (exit 3 if only they failed)
        self._facts = Once()  # facts read once per run, by key ("what:host")
        self._print_lock = threading.Lock()
        self._prefetcher: Workers | None = None
        self._groups: list[GroupResult] = []  # what each() returned, for failures nobody reported
        c, d = inv.connect, self.dialer
        self.db = Host(d, inv.db.name, "db", inv.db.address, inv.db.port or c.port, inv.db.user or c.user, lock)
        # Every web server of the inventory, and those this run works on (all, or --limit's).
        self.all_webs = [Host(d, s.name, "web", s.address, s.port or c.port, s.user or c.user, lock)
                         for s in inv.web.servers]
        limit = run.options.limit if run else ()
        chosen = runopts.limited([w.name for w in self.all_webs], inv.db.name, limit, inv.source)
        self.webs = [w for w in self.all_webs if w.name in chosen]
        for h in self.hosts:
            self.results.host(h.name, h.role, h.address)

    @classmethod
    def open(cls, where: Path | runopts.Run, lock: bool = False) -> Session:
        """Start a session on the hosts of a task's run (its inventory, --limit's web servers, its report)
        or of the inventory at a path (every web server, a report of its own), the local files it names
        checked; with ``lock``, each host is locked against other changing runs while connected. The
        first line printed names the inventory and the hosts."""
        try:
            return cls._checked(where, lock)
        except BaseException:
            early.discard()  # the connections the command started early: nothing was sent on them
            raise

    @classmethod
    def _checked(cls, where: Path | runopts.Run, lock: bool) -> Session:
        """The session of :meth:`open`, its inventory validated, the lab's guard and local files checked."""
        run = where if isinstance(where, runopts.Run) else None
        inv = inventory.load(*(runopts.inventory_choice(run.options) if run else (where, "")))
        if inv.lab:
            runopts.check_lab_inventory(inv)  # before the ssh config is read: it could lead elsewhere
        s = cls(inv, run, lock=lock)
        s.open_log()
        if inv.lab:
            s.check_lab_routes()
        s.check_files()
        s.announce()
        return s

    def check_lab_routes(self) -> None:
        """The lab's guard on where the ssh config leads: every HostName and ProxyJump through the lab."""
        routes = [r for h in [*self.all_webs, self.db] for r in (h.route, h.route.jump) if r is not None]
        runopts.check_lab(self.inv.source, [r.hostname for r in routes])


    def open_log(self) -> None:
        """The inventory's run log (``log``), unless --log chose one."""
        if self.inv.log and self.results.runlog.path is None:
            self.results.log_to(self.inv.path(self.inv.log), f"{self.inv.source}: log")

    def check_files(self) -> None:
        """The admin's key (or ssh-agent) and the pinned host keys: present, readable, not damaged."""
        inv, d = self.inv, self.dialer
        d.auth = sshauth.load_auth(inv)
        if not d.known_hosts.is_file():
            raise inventory.InventoryError(
                f"{inv.source}: connect.known_hosts: {d.known_hosts} does not exist; create it with "
                + tell.command("trust-hosts")
            )
        load_known_hosts(d.known_hosts, inv.source)

    def announce(self) -> None:
        """Say which inventory and which hosts this run works on (its first line)."""
        hosts = ", ".join(f"{h.name} {h.address}" for h in self.hosts)
        limit = ""
        if self.webs != self.all_webs:
            limit = f" (--limit: {len(self.webs)} of {len(self.all_webs)} web servers)"
        print(f"svrchain: inventory {self.inv.source}{' (the lab)' if self.inv.lab else ''}: {hosts}{limit}",
              file=self.out, flush=True)

    @property
    def hosts(self) -> list[Host]:
        """The DB server, then the web servers this run works on."""
        return [self.db, *self.webs]

    def close(self) -> None:
        """Close every connection (background work still going on ends with it)."""
        if self._prefetcher is not None:
            self._prefetcher.shutdown()
        for h in self.hosts:
            h.close()
        self.dialer.close()
        early.discard()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts: read once per run -----------------------------------------------------------

    def prefetch(self, hosts: list[Host] | None = None, facts: Callable[[Host], object] | None = None) -> None:
        """Start connecting (and reading ``facts``) in the background, overlapping other work."""
        hosts = self.hosts if hosts is None else hosts
        if self._prefetcher is None:
            self._prefetcher = Workers(self.parallel(len(self.hosts)))
        for h in hosts:
            self._prefetcher.submit(lambda h=h: _quietly((lambda: facts(h)) if facts else h.connection))

    def connect_db_first(self) -> None:
        """The DB host's connection (on a changing run: its lock) now, then every web server's in the
        background. Changing runs take the DB's lock before any web server's, so two runs started at
        the same instant never each hold a host the other waits for (they would wait out the lock's
        timeout and one would fail)."""
        _quietly(self.db.connection)
        self.prefetch(self.webs)

    def fact(self, key: str, read: Callable[[], T]) -> T:
        """``read()`` once per run and key; concurrent callers wait for the one reading."""
        return self._facts.get(key, read)

    def facts_once(self, keys: list[str], read: Callable[[set], dict]) -> list:
        """The values of ``keys``, those not read yet this run read together by ``read(missing)``."""
        return self._facts.get_many(keys, read)

    def prefetch_facts(self, *groups: tuple[list[str], Callable[[set], dict]]) -> None:
        """Start reading each group of keys in the background, each group together, one group after
        another on one worker (claimed now: a step that asks for one waits for this read rather than
        reading it again)."""
        claimed = [(c, read) for c, read in ((self._facts.claim(keys), read) for keys, read in groups) if c]
        if claimed:
            if self._prefetcher is None:
                self._prefetcher = Workers(self.parallel(len(self.hosts)))
            self._prefetcher.submit(lambda: [self._facts.settle(c, read) for c, read in claimed])

    def forget(self, host: Host) -> None:
        """Drop the facts read from ``host``: this run is about to change it."""
        self._facts.forget(lambda key: key.endswith(f":{host.name}"))

    # -- parallelism and reporting ---------------------------------------------------------

    def parallel(self, count: int) -> int:
        """Threads for work on ``count`` hosts: at most ``connect.max_parallel`` at once."""
        return max(1, min(self.inv.connect.max_parallel, count))

    def each(self, hosts: list[Host], fn: Callable[[Host], T], step: str) -> GroupResult[T]:
        """Run ``fn`` on every host in parallel: what each returned, or the HostError it raised, by host
        (``step``: what the work is, for the line of a failure nobody reports)."""
        def guarded(h: Host) -> T | HostError:
            try:
                return fn(h)
            except HostError as exc:
                return exc
        values = [guarded(hosts[0])] if len(hosts) == 1 else parallel_map(guarded, hosts, self.parallel(len(hosts)))
        result: GroupResult[T] = GroupResult(step, {h.name: v for h, v in zip(hosts, values, strict=True)})
        self._groups.append(result)
        return result

    def report_failures(self, result: GroupResult, fix: str = "") -> dict[str, HostError]:
        """Report each host where ``result``'s work raised on its own failed line (``fix``: what to do,
        added to the error); the hosts and errors."""
        failed = result.failed
        for host, error in failed.items():
            self.fail(host, result.step, HostError(f"{error}; {fix}") if fix else error)
        return failed

    def report_untaken(self) -> bool:
        """Report the failures of :meth:`each` that no caller took in hand; whether there were any."""
        untaken = [g for g in self._groups if not g.taken]
        for g in untaken:
            self.report_failures(g)
        return bool(untaken)

    def report(self, outcome: Outcome, show_diff: bool = False, seconds: float | None = None) -> Outcome:
        """Print one ``host step status detail`` line (and its diffs in a dry run), as it happens;
        record it for the recap, --json and --junit (``seconds``: how long it took; by default the
        time since the host's previous line)."""
        with self._print_lock:
            self.outcomes.append(outcome)
            status = outcome.status.replace(" ", "-")
            took = self.results.since_last(outcome.host) if seconds is None else round(seconds, 3)
            self.results.add(outcome.host, output.Item("step", outcome.step, status, outcome.detail, took))
            word = output.paint(f"{outcome.status:<13}", status, self.results.colour)
            line = f"{outcome.host:<10} {outcome.step:<20} {word} {output.shown(outcome.detail, keep='')}"
            print(line.rstrip(), file=self.out, flush=True)
            if show_diff:
                for d in outcome.diffs:
                    print(_indent(d), file=self.out, end="", flush=True)
        return outcome

    def fail(self, host: str, step: str, error: Exception) -> Outcome:
        """Report ``error`` as the step's outcome on ``host`` (unreachable when it could not connect)."""
        status = "failed"
        if isinstance(error, Unreachable):
            self.unreachable.add(host)
            status = "unreachable"
        return self.report(Outcome(host, step, status, str(error)))

    def run_steps(self, what: str, steps: Iterable[tuple[str, Callable[[], object]]]) -> None:
        """Run steps in order: a step's error goes on its own line and stops the steps after it;
        the task then exits non-zero if anything failed."""
        for name, step in steps:
            try:
                step()
            except SvrchainError as exc:
                self.fail(self.db.name, name, exc)
                break
        self.finish(what)

    def finish(self, what: str) -> None:
        """Raise a non-zero exit when any outcome of this run failed (exit 3 when only unreachable
        hosts failed, else 1)."""
        failed = [o for o in self.outcomes if o.failed]
        if failed:
            hosts = {o.host for o in failed}
            cls = Unreachable if hosts <= self.unreachable else SvrchainError
            raise cls(f"{what}: failed on {', '.join(sorted(hosts))} (see above)")


def on_hosts(lock: bool = False) -> Callable[[Callable[Concatenate[Session, P], None]],
                                             Callable[Concatenate[Context, P], None]]:
    """A task's work on its hosts: ``work(session, ...)`` becomes ``run(c, ...)``, which opens the session
    of the run Invoke's context ``c`` carries and closes it after, a failure of :meth:`Session.each` that
    the work left unreported reported then (and the task failed). ``lock``: the task changes hosts, so
    they are locked against other changing runs (unless ``dry_run=True`` is passed)."""
    def decorate(work: Callable[Concatenate[Session, P], None]) -> Callable[Concatenate[Context, P], None]:
        @functools.wraps(work)
        def run(c: Context, *args: P.args, **kwargs: P.kwargs) -> None:
            with Session.open(runopts.of(c), lock=lock and not kwargs.get("dry_run", False)) as s:
                try:
                    work(s, *args, **kwargs)
                finally:
                    untaken = s.report_untaken()
                if untaken:
                    s.finish(s.results.task)
        return run
    return decorate


def _quietly(fn: Callable[[], object]) -> None:
    """Run ``fn``, dropping a HostError: the host remembers it and raises it on first real use."""
    with contextlib.suppress(HostError):
        fn()


def _indent(text: str) -> str:
    """``text`` indented by four spaces (a diff under its report line)."""
    return "".join("    " + line for line in text.splitlines(keepends=True))
