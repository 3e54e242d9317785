"""Inventory values in the shell scripts svrchain renders: whatever a valid inventory holds, each value
stays one quoted value. hypothesis generates valid inventories (names, IPv4/IPv6 addresses, ports,
paths, accounts, commands, a ready port or command, 1-4 web servers); every shell template is rendered
from them, shellcheck must pass, and every line must have as many lines and shell words as the same
template rendered from a plain inventory of the same shape. The trigger is a static script that
reads its settings as data: the rendered settings file must hold each value on its own line, the
real script must accept every valid inventory's values and read them back byte for byte, and run
the ready check and the run command fed whole to sh on stdin (never as an argument: ps shows those).
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from svrchain.core import render
from svrchain.core.inventory import Inventory, parse
from tests import fastyaml
from tests.examples import examples
from tests.unit import fake_trigger

SRC = Path("inventory/generated.yaml")
# No shrinking: it renders and compares hundreds of inventories (minutes); a failure shows the
# inventory as generated, which names the value that broke a line.
SHELL = settings(max_examples=examples(8, 200), deadline=None, suppress_health_check=[HealthCheck.too_slow],
                 phases=[Phase.explicit, Phase.reuse, Phase.generate])

# Every printable character, space included: what a command line may hold; shell syntax often.
PRINTABLE = st.characters(codec="utf-8", categories=("L", "M", "N", "P", "S")) | st.sampled_from(" '\"$`;&|<>(){}*?!#~")
SHELL_BITS = st.sampled_from([" ", "; ", " | ", " && ", "$(id)", "`id`", "'", '"', "\\", " #", "*", " > /x", "<", "(",
                              ")", "{", "}", "~", "!", "$x", "%", "=", ",", "\u00e9"])


def command_lines(exclude: str = "") -> st.SearchStrategy[str]:
    """Printable one-line commands full of shell syntax (without the characters in ``exclude``)."""
    bits = (SHELL_BITS | st.text(PRINTABLE, min_size=1, max_size=4)).filter(lambda b: not set(b) & set(exclude))
    return st.lists(bits, min_size=1, max_size=10).map("".join).filter(str.strip)
names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,15}\Z")
services = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.@-]{0,15}\Z")
accounts = st.from_regex(r"\A[a-z_][a-z0-9_-]{0,15}\Z")
paths = st.from_regex(r"\A/[A-Za-z0-9_.@+-]{1,12}(/[A-Za-z0-9_.@+-]{1,12}){0,3}\Z").filter(
    lambda p: "/../" not in p + "/" and not p.endswith("/.."))
ip = st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str) | st.sampled_from(
    ["::ffff:198.18.0.10", "0:0:0:0:0:0:0:1", "2001:DB8::0001"])
hostnames = st.from_regex(r"\A[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?\Z")
ports = st.integers(1, 65535)
sudo_words = st.from_regex(r"\A[A-Za-z0-9_./@+=:,-]{1,12}\Z")


def restart_commands(dedicated: bool) -> st.SearchStrategy[str]:
    if dedicated:  # a program's path and plain arguments, as the sudo rule needs
        program = paths.filter(lambda p: not p.endswith("/"))
        return st.tuples(program, st.lists(sudo_words, max_size=3)).map(lambda t: " ".join([t[0], *t[1]]))
    return command_lines(exclude='"\\')


@st.composite
def inventories(draw) -> dict:
    n = draw(st.integers(1, 4))
    dedicated = draw(st.booleans())
    web_names = draw(st.lists(names, min_size=n, max_size=n, unique_by=str.lower))
    web_addresses = draw(st.lists(ip | hostnames, min_size=n, max_size=n, unique=True).filter(
        lambda a: len({str(ipaddress.ip_address(x)) if _is_ip(x) else x for x in a}) == len(a)))
    # With oracle, readiness is svrchain's SQL check unless a command is given (a port is refused).
    ready = {"command": draw(command_lines())} if draw(st.booleans()) else {}
    oracle = {"home": draw(paths), "owner": draw(accounts), "sid": draw(names),
              **({"service": draw(services)} if draw(st.booleans()) else {}),
              **({"pdb": draw(names)} if draw(st.booleans()) else {})}
    run = draw(st.sampled_from(["", "process", "command"]))
    return {
        "connect": {"user": "root", "identity": "k", "known_hosts": "kh"},
        "db": {"name": draw(names.filter(lambda x: x not in web_names)), "address": draw(ip), "from": [draw(ip)],
               "service": draw(services), "oracle": oracle,
               "ready": {**ready, "timeout": draw(st.integers(1, 3600)),
                         "interval": draw(st.floats(0.01, 60, allow_nan=False)),
                         "successes": draw(st.integers(1, 20))},
               **({"run": {run: draw(command_lines()), "interval": draw(st.floats(0.1, 60, allow_nan=False))}}
                  if run else {})},
        "web": {"user": draw(accounts.filter(lambda u: u != "root")) if dedicated else "root",
                "restart_command": draw(restart_commands(dedicated)),
                **({} if dedicated else {"restart_shell": True}),  # as root, any shell line (said so)
                "servers": [{"name": name, "address": address, "port": draw(ports), "health_url": "http://x/"}
                            for name, address in zip(web_names, web_addresses, strict=True)]},
        "key": {"path": draw(paths)},
        "trigger": {"name": draw(services), "known_hosts": draw(paths), "log": draw(paths),
                    "connect_timeout": draw(st.integers(1, 3600)), "retries": draw(st.integers(1, 10)),
                    "restart_timeout": draw(st.integers(1, 3600))},
    }


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def plain(data: dict) -> dict:
    """An inventory of the same shape (web servers, ready port or command, root or not, words in
    the restart command) with plain values."""
    n = len(data["web"]["servers"])
    ready = {"command": "true"} if "command" in data["db"]["ready"] else {}
    given = data["db"].get("oracle", {})
    oracle = {"home": "/u01", "sid": "S", **({"service": "s"} if "service" in given else {}),
              **({"pdb": "P"} if "pdb" in given else {})}
    run = {k: "x" for k in data["db"].get("run", {}) if k in ("process", "command")}
    words = len(data["web"]["restart_command"].split()) if data["web"]["user"] != "root" else 1
    return {
        "connect": data["connect"],
        "db": {"name": "db", "address": "10.0.0.1", "oracle": oracle, "ready": ready, **({"run": run} if run else {})},
        "web": {"user": "root" if data["web"]["user"] == "root" else "svr",
                "restart_command": " ".join(["/x"] + ["a"] * (words - 1)),
                "servers": [{"name": f"w{i}", "address": f"10.0.0.{i + 2}", "health_url": "http://x/"}
                            for i in range(n)]},
    }


def scripts(inv: Inventory) -> dict[str, str]:
    return {"svr_restart": render.trigger_init(inv).decode(), "dbora": render.dbora_init(inv).decode(),
            "oracle": render.dbora_impl(inv).decode(), "gate": render.gate(inv).decode(),
            "oracle_ready": render.oracle_ready(inv).decode(), "watch": render.watch_init(inv).decode()}


def words(line: str) -> int | None:
    """The number of shell words on a line (None where the line alone does not tokenize): split as the
    shell does, on blanks and on its operators (;&|<>()), with quotes removed."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # 'a+b' or 'x@y' are one word to the shell, as to the test
    try:
        return len(list(lexer))
    except ValueError:
        return None


def words_per_line(text: str) -> list[int | None]:
    """The number of shell words on each line."""
    return [words(line) for line in text.split("\n")]


def reshaped_lines(text: str, baseline: str) -> list[tuple[str, str]]:
    """The lines of ``text`` with another number of shell words than the same line of ``baseline`` (a
    line the same in both has the same words: only the others are split)."""
    return [(line, base) for line, base in zip(text.split("\n"), baseline.split("\n"), strict=True)
            if line != base and words(line) != words(base)]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by make install")
@SHELL
@given(inventories())
def test_no_inventory_value_changes_the_shape_of_a_shell_line(tmp_path_factory, data):
    inv = parse(fastyaml.dump(data), SRC)
    base = parse(fastyaml.dump(plain(data)), SRC)
    rendered, baseline = scripts(inv), scripts(base)
    folder = tmp_path_factory.mktemp("scripts")
    for name, text in rendered.items():
        (folder / name).write_text(text)
    # shellcheck reads the scripts while the checks below run (the trigger's runs mostly wait).
    shellcheck = subprocess.Popen(["shellcheck", *(str(folder / n) for n in rendered)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    try:
        for name, text in rendered.items():
            assert text.count("\n") == baseline[name].count("\n"), name
            assert reshaped_lines(text, baseline[name]) == [], (name, data)
        config = render.trigger_config(inv).decode()
        assert config.count("\n") == render.trigger_config(base).decode().count("\n")
        for s in data["web"]["servers"]:  # addresses rendered in canonical form, whatever was written
            address = str(ipaddress.ip_address(s["address"])) if _is_ip(s["address"]) else s["address"]
            assert f"\nweb={s['name']} {address} {s['port']} {inv.web.user}\n" in config
        trigger_reads_it_as_written(inv)
        out, _ = shellcheck.communicate()
        assert shellcheck.returncode == 0, out
    finally:
        if shellcheck.poll() is None:
            shellcheck.kill()
            shellcheck.communicate()


def test_the_comparison_sees_a_value_that_is_not_quoted():
    """The check is meaningful: an unquoted command line changes its line's words."""
    quoted = render.gate(parse(fastyaml.dump(plain(LAB)), SRC)).decode()
    unquoted = quoted.replace("RESTART_COMMAND='/x'", "RESTART_COMMAND=/x; id")
    assert words_per_line(quoted) != words_per_line(unquoted)
    assert reshaped_lines(unquoted, quoted) == [("RESTART_COMMAND=/x; id", "RESTART_COMMAND='/x'")]
    assert sum(c or 0 for c in words_per_line(quoted)) > 300


# A stand-in sh for the trigger: records each call's arguments (NUL-separated, one call a line), says nothing.
FAKE_SH = """#!/bin/bash
printf '%s\\0' "$@" "stdin:$(cat)" >>@ROOT@/sh.calls
printf '\\n' >>@ROOT@/sh.calls
"""


def sh_calls(root) -> list[list[str]]:
    f = root / "sh.calls"
    return [call.split("\0") for call in f.read_text().split("\0\n") if call] if f.exists() else []


def trigger_reads_it_as_written(inv: Inventory) -> None:
    """The real trigger accepts the settings rendered from ``inv``, reads back each value byte for byte
    (its config verb), and feeds the ready check and the run command to sh on stdin, each whole (never
    on a command line)."""
    t = fake_trigger.make()
    try:
        t.configure(inv)
        r = t.run("config")
        assert r.returncode == 0, (r.stderr, render.trigger_config(inv).decode())
        assert r.stdout.splitlines() == [f"{k}={v}" for k, v in render.trigger_settings(inv)]
        # A start: the same command lines, with the files it writes and its pace under the test's root.
        ready = inv.db.ready.model_copy(update={"successes": 1, "interval": 0.01})
        trig = inv.trigger.model_copy(update={"log": f"{t.root}/trigger.log", "known_hosts": f"{t.root}/kh"})
        quick = inv.model_copy(update={"db": inv.db.model_copy(update={"ready": ready}), "trigger": trig,
                                       "key": inv.key.model_copy(update={"path": f"{t.root}/key"})})
        t.configure(quick)
        (t.root / "bin" / "sh").write_text(FAKE_SH.replace("@ROOT@", str(t.root)))
        (t.root / "bin" / "sh").chmod(0o755)
        r = t.run("start")
        assert r.returncode == 0, (r.stderr, t.log)
        calls = sh_calls(t.root)
        assert ["stdin:" + render.ready_check(inv)] in calls  # read by sh on stdin: no argument at all
        if inv.db.run.command:
            assert ["stdin:" + inv.db.run.command] in calls
        assert {c[1][-2] for c in t.ssh_calls("restart")} == {
            f"{inv.web.user}@{s.address}" for s in inv.web.servers}
    finally:
        fake_trigger.remove(t)


LAB = {"connect": {"user": "root", "identity": "k", "known_hosts": "kh"}, "db": {"ready": {"command": "x"}},
       "web": {"user": "root", "restart_command": "x", "servers": [{}]}}
