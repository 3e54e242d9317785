"""Session.each's results (issue 21 §4): what each host returned, or its error, by host. A failure
can be read only as a failure, and one no caller reports is reported when the task's work ends, the
task failing with it: a failure on one host is never dropped without a word. Pure: the hosts are
never connected to (the work given to each does not touch them)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from invoke import Config, Context

from svrchain.core import output
from svrchain.core.errors import HostError, HostUnreachable, SvrchainError, Unreachable
from svrchain.remote import runopts
from svrchain.remote.connection import Host
from svrchain.remote.group import Session, on_hosts
from tests.unit.test_cli_flags import write_inventory

HOSTS = [("127.0.0.10", 22), ("127.0.0.11", 22), ("127.0.0.12", 22)]  # db, web1, web2


def task_context(tmp_path: Path) -> tuple[Context, output.Results]:
    """A task's context as svrchain.cli gives it: the run (its inventory chosen, its report) attached."""
    results = output.Results("task", human=io.StringIO())
    c = Context(Config())
    runopts.attach(c, runopts.Run(runopts.RunOptions(inventory=str(write_inventory(tmp_path, HOSTS))), results))
    return c, results


def fails_on(name: str, error: type[HostError] = HostError):
    """Work that fails on the host ``name`` and returns the others' names in capitals."""
    def work(host: Host) -> str:
        if host.name == name:
            raise error(f"{host.name}: it broke")
        return host.name.upper()
    return work


def failed_lines(results: output.Results) -> list[tuple[str, str, str, str]]:
    return [(h, i.name, i.status, i.detail) for h, rec in results.hosts.items() for i in rec.items
            if i.status in ("failed", "unreachable")]


def test_the_values_and_the_failures_come_apart_by_host(tmp_path):
    with Session.open(write_inventory(tmp_path, HOSTS)) as s:
        r = s.each(s.hosts, fails_on("web1"), step="work")
        assert r.succeeded == {"db": "DB", "web2": "WEB2"}
        assert list(r) == ["db", "web1", "web2"] and len(r) == 3 and "web1" in r
        assert [str(e) for e in r.failed.values()] == ["web1: it broke"]


def test_a_failed_hosts_value_cannot_be_read(tmp_path):
    with Session.open(write_inventory(tmp_path, HOSTS)) as s:
        r = s.each(s.webs, fails_on("web1"), step="work")
        assert r["web2"] == "WEB2"
        with pytest.raises(HostError, match="web1: it broke"):
            r["web1"]  # the read is the test
        with pytest.raises(HostError, match="web1: it broke"):
            list(r.values())
        with pytest.raises(HostError, match="web1: it broke"):
            dict(r.items())


def test_a_failure_nobody_reports_is_said_and_fails_the_task(tmp_path):
    @on_hosts(lock=True)
    def careless(s: Session, dry_run: bool = False) -> None:
        s.each(s.webs, fails_on("web2"), step="careless")  # its result dropped

    c, results = task_context(tmp_path)
    with pytest.raises(SvrchainError, match=r"failed on web2 \(see above\)"):
        careless(c, dry_run=False)
    assert failed_lines(results) == [("web2", "careless", "failed", "web2: it broke")]


def test_an_unreported_unreachable_host_ends_the_task_as_unreachable(tmp_path):
    @on_hosts()
    def careless(s: Session) -> None:
        s.each(s.hosts, fails_on("web1", HostUnreachable), step="connect")

    c, results = task_context(tmp_path)
    with pytest.raises(Unreachable, match="failed on web1"):
        careless(c)
    assert failed_lines(results) == [("web1", "connect", "unreachable", "web1: it broke")]


def test_a_failure_reported_by_the_caller_is_said_once(tmp_path):
    @on_hosts()
    def careful(s: Session) -> None:
        s.report_failures(s.each(s.webs, fails_on("web1"), step="careful"), "fix it")

    c, results = task_context(tmp_path)
    careful(c)  # the caller reported it: the task decides its own exit (run_steps, finish)
    assert failed_lines(results) == [("web1", "careful", "failed", "web1: it broke; fix it")]


def test_failures_read_by_the_caller_are_its_own(tmp_path):
    """Reading ``failed`` takes them in hand (restart-chain turns them into its rows' notes)."""
    @on_hosts()
    def handles(s: Session) -> None:
        assert list(s.each(s.webs, fails_on("web1"), step="restart").failed) == ["web1"]

    c, results = task_context(tmp_path)
    handles(c)
    assert failed_lines(results) == []


def test_a_task_stopped_by_an_error_still_says_the_failures_left(tmp_path):
    @on_hosts()
    def stops(s: Session) -> None:
        s.each(s.webs, fails_on("web2"), step="first")
        raise SvrchainError("stopped")

    c, results = task_context(tmp_path)
    with pytest.raises(SvrchainError, match=r"^stopped$"):
        stops(c)
    assert failed_lines(results) == [("web2", "first", "failed", "web2: it broke")]


def test_the_run_stays_one_object_through_invokes_config(tmp_path):
    """Invoke copies config values when it merges them; the run (its report) must stay the same."""
    c, results = task_context(tmp_path)
    run = runopts.of(c)
    c.config.load_overrides({"run": {"dry": True}})
    assert runopts.of(c) is run and runopts.of(c).results is results


def test_a_dry_run_locks_no_host_and_a_changing_run_does(tmp_path):
    seen: list[bool] = []

    @on_hosts(lock=True)
    def changing(s: Session, dry_run: bool = False) -> None:
        seen.extend(h.locks for h in s.hosts)

    c, _ = task_context(tmp_path)
    changing(c, dry_run=True)
    changing(c, dry_run=False)
    assert seen == [False] * 3 + [True] * 3
