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

from svrchain.core import estate, inventory, output, tell
from svrchain.core.errors import GapFound, HostError, SvrchainError, Unreachable, UsageError
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


class Hosts:
    """The hosts of a run on an estate, one :class:`Host` (one connection) each, whatever the chains
    they are in: keyed by host (name, address, port, user), never by chain; and the one dialer."""

    def __init__(self, dialer: Dialer, lock: bool):
        self.dialer = dialer
        self.lock = lock
        self._hosts: dict[tuple[str, str, int, str], Host] = {}

    def get(self, name: str, role: str, address: str, port: int, user: str) -> Host:
        """The run's one handle on this host (made on first use)."""
        key = (name, address, port, user)
        if key not in self._hosts:
            self._hosts[key] = Host(self.dialer, name, role, address, port, user, self.lock)
        return self._hosts[key]

    def close(self) -> None:
        """Close every host's connection, then the dialer's (jump hosts)."""
        for h in self._hosts.values():
            h.close()
        self.dialer.close()


class Session:
    """One run: the inventory, its hosts, one connection each, and the outcome report. On an estate, one
    session per chain, sharing the run's :class:`Hosts` (a host in several chains is connected once)."""

    def __init__(self, inv: inventory.Inventory, run: runopts.Run | None = None, lock: bool = False,
                 auth: sshauth.Auth | None = None, shared: Hosts | None = None, chain: str = ""):
        self.inv = inv
        self.results = run.results if run else output.Results("svrchain")
        self.out = self.results.human
        verbose = run is not None and run.options.verbose
        self.dialer = shared.dialer if shared else Dialer(inv, auth, say=self.results.say if verbose else None)
        self.shared = shared
        self.chain = chain  # the chain's name on an estate ("" for a one-DB inventory)
        self.estate: estate.Estate | None = None  # on an estate: the whole of it (every chain)
        self.done: frozenset[str] = frozenset()  # on an estate: the chains this run has worked on, this one too
        self.peers: list[Session] = [self]  # on an estate: the session of every chain of this run, in order
        self.outcomes: list[Outcome] = []
        self.unreachable: set[str] = set()  # hosts this run could not connect to (exit 3 if only they failed)
        self._facts = Once()  # facts read once per run, by key ("what:host")
        self._print_lock = threading.Lock()
        self._prefetcher: Workers | None = None
        self._groups: list[GroupResult] = []  # what each() returned, for failures nobody reported
        c, d = inv.connect, self.dialer
        make = shared.get if shared else functools.partial(_host, d, lock)
        self.db = make(inv.db.name, "db", inv.db.address, inv.db.port or c.port, inv.db.user or c.user)
        # Every web server of the inventory, and those this run works on (all, or --limit's).
        self.all_webs = [make(s.name, "web", s.address, s.port or c.port, s.user or c.user) for s in inv.web.servers]
        limit = run.options.limit if run else ()
        if shared and limit:  # an estate's --limit names web servers of any chain
            limit = tuple(n for n in limit if n in {w.name for w in self.all_webs})
        chosen = runopts.limited([w.name for w in self.all_webs], inv.db.name, limit, inv.source)
        self.webs = [w for w in self.all_webs if w.name in chosen]
        for h in self.hosts:
            self.results.host(h.name, h.role, h.address)

    @classmethod
    def open(cls, where: Path | runopts.Run, lock: bool = False, inv: inventory.Inventory | None = None) -> Session:
        """Start a session on the hosts of a task's run (its inventory, --limit's web servers, its report)
        or of the inventory at a path (every web server, a report of its own), the local files it names
        checked; with ``lock``, each host is locked against other changing runs while connected. The
        first line printed names the inventory and the hosts."""
        try:
            return cls._checked(where, lock, inv)
        except BaseException:
            early.discard()  # the connections the command started early: nothing was sent on them
            raise

    @classmethod
    def _checked(cls, where: Path | runopts.Run, lock: bool, inv: inventory.Inventory | None = None) -> Session:
        """The session of :meth:`open`, its inventory validated, the lab's guard and local files checked."""
        run = where if isinstance(where, runopts.Run) else None
        inv = inv or inventory.load(*(runopts.inventory_choice(run.options) if run else (where, "")))
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
        """Say which inventory and which hosts this run works on (its first line; on an estate, the
        first line of each chain's part)."""
        hosts = ", ".join(f"{h.name} {h.address}" for h in self.hosts)
        limit = ""
        if self.webs != self.all_webs:
            limit = f" (--limit: {len(self.webs)} of {len(self.all_webs)} web servers)"
        chain = f", chain {self.chain}" if self.chain else ""
        self.results.chain = self.chain
        print(f"svrchain: inventory {self.inv.source}{' (the lab)' if self.inv.lab else ''}{chain}: {hosts}{limit}",
              file=self.out, flush=True)

    def markers_of(self, web: Host) -> frozenset[str] | None:
        """On an estate: the markers of every DB server (of any chain) that may restart ``web``, whose
        lines it keeps; None for a one-DB inventory (no other DB server's line is touched)."""
        return self.estate.markers(web.name) if self.estate is not None and self.estate.named else None

    def staying(self, web: Host) -> list[str]:
        """On an estate: the other chains whose DB server restarts ``web`` and that this run has not worked
        on (not chosen, or still to come): what they share with this chain (the gate, the account) stays."""
        if self.estate is None:
            return []
        return [c.name for c in self.estate.restarters(web.name) if c.name not in self.done]

    @property
    def hosts(self) -> list[Host]:
        """The DB server, then the web servers this run works on."""
        return [self.db, *self.webs]

    def close(self) -> None:
        """Close every connection (background work still going on ends with it); on an estate the
        connections are the run's, closed once every chain is done (:func:`on_hosts`)."""
        if self._prefetcher is not None:
            self._prefetcher.shutdown()
        if self.shared is not None:
            return
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

    def connect_db_first(self, then: Callable[[], None] | None = None) -> None:
        """The DB host's connection (on a changing run: its lock) now, then ``then()`` (e.g. start
        reading the DB host's facts: queued before the web servers' connections, the DB's probe being
        the run's longest wait), then every web server's connection in the background. Changing runs
        take the DB's lock before any web server's, so two runs started at the same instant never each
        hold a host the other waits for (they would wait out the lock's timeout and one would fail)."""
        _quietly(self.db.connection)
        if then is not None:
            then()
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
    they are locked against other changing runs (unless ``dry_run=True`` is passed). On an estate the
    work runs once per chain (all, or --chain's), one connection per host for the whole run."""
    def decorate(work: Callable[Concatenate[Session, P], None]) -> Callable[Concatenate[Context, P], None]:
        @functools.wraps(work)
        def run(c: Context, *args: P.args, **kwargs: P.kwargs) -> None:
            r, locking = runopts.of(c), lock and not kwargs.get("dry_run", False)
            try:
                est = estate.load(*runopts.inventory_choice(r.options))
                chains = est.chosen(r.options.chain)
            except BaseException:
                early.discard()  # the connections the command started early: nothing was sent on them
                raise
            if est.named:
                run_chains(r, est, chains, locking, lambda s: _work(s, work, *args, **kwargs))
                return
            with Session.open(r, lock=locking, inv=chains[0].inv) as s:
                _work(s, work, *args, **kwargs)
        return run
    return decorate


def _work(s: Session, work: Callable[..., None], *args: object, **kwargs: object) -> None:
    """A task's work on one session; a failure of :meth:`Session.each` it left unreported fails the task."""
    try:
        work(s, *args, **kwargs)
    finally:
        untaken = s.report_untaken()
    if untaken:
        s.finish(s.results.task)


def chain_sessions(r: runopts.Run, est: estate.Estate, chains: list[estate.Chain], lock: bool,
                   check: bool = True) -> list[Session]:
    """One session per chain (those with a web server in --limit, if given), sharing one :class:`Hosts`;
    the lab's guard, the run log and (with ``check``) the admin's files checked once, before any connection."""
    known = {s.name for c in est.chains for s in c.inv.web.servers}
    runopts.limited(sorted(known), "", r.options.limit, est.source)  # each --limit name is a web server
    if r.options.limit:
        chains = [c for c in chains if known & set(r.options.limit) & {s.name for s in c.inv.web.servers}]
    if not chains:
        raise UsageError(f"--limit {','.join(r.options.limit)}: no web server of the chain(s) chosen")
    if chains[0].inv.lab:
        for c in chains:
            runopts.check_lab_inventory(c.inv)
    say = r.results.say if r.options.verbose else None
    shared = Hosts(Dialer(chains[0].inv, say=say), lock)
    sessions = [Session(c.inv, r, lock, shared=shared, chain=c.name) for c in chains]
    for s in sessions:
        s.estate = est
        s.peers = sessions
        if s.inv.lab:
            s.check_lab_routes()
    sessions[0].open_log()
    if check:
        sessions[0].check_files()
    return sessions


def run_chains(r: runopts.Run, est: estate.Estate, chains: list[estate.Chain], lock: bool,
               work: Callable[[Session], None]) -> None:
    """``work`` on each chain in turn, every DB server connected (and locked) before any web server.
    A chain whose hosts failed does not stop the next; the run then fails with every chain's error."""
    sessions = chain_sessions(r, est, chains, lock)
    errors: list[SvrchainError] = []
    try:
        for s in sessions if lock else []:
            _quietly(s.db.connection)
        for i, s in enumerate(sessions):
            s.done = frozenset(x.chain for x in sessions[: i + 1])
            s.announce()
            try:
                work(s)
            except (HostError, Unreachable, GapFound) as exc:
                errors.append(type(exc)(f"chain {s.chain}: {exc}"))
            except SvrchainError as exc:
                if type(exc) is not SvrchainError:
                    raise
                errors.append(SvrchainError(f"chain {s.chain}: {exc}"))
    finally:
        sessions[0].shared.close()  # type: ignore[union-attr]
    if errors:
        worst = max(errors, key=lambda e: e.code)
        raise type(worst)("\n".join(str(e) for e in errors))


def _host(dialer: Dialer, lock: bool, name: str, role: str, address: str, port: int, user: str) -> Host:
    """A host of a one-DB run (its own handle)."""
    return Host(dialer, name, role, address, port, user, lock)


def _quietly(fn: Callable[[], object]) -> None:
    """Run ``fn``, dropping a HostError: the host remembers it and raises it on first real use."""
    with contextlib.suppress(HostError):
        fn()


def _indent(text: str) -> str:
    """``text`` indented by four spaces (a diff under its report line)."""
    return "".join("    " + line for line in text.splitlines(keepends=True))
