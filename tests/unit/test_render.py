"""The scripts svrchain installs: headers that order them, and shellcheck-clean shell."""

import shlex
import shutil
import subprocess

import pytest

from svrchain.core import render
from svrchain.core.inventory import load
from tests.paths import LAB_INVENTORY

INV = load(LAB_INVENTORY)


def header(script: bytes) -> str:
    return script.decode().split("### END INIT INFO")[0]


def test_dbora_header_orders_it_for_chkconfig_and_insserv():
    h = header(render.dbora_init(INV))
    assert "# chkconfig: 345 98 11" in h
    assert "# Provides:          dbora" in h
    assert "# Default-Start:     3 4 5" in h
    assert "# Default-Stop:      0 1 2 6" in h


def test_trigger_header_orders_it_after_the_db():
    init = render.trigger_init(INV).decode()
    h = header(init.encode())
    assert "# chkconfig: 345 99 1" in h
    assert "# Required-Start:    dbora $network" in h
    assert "# Provides:          svr_restart" in h
    # A thin wrapper: the trigger itself is the static script.
    assert init.endswith("\nexec '/usr/local/lib/svrchain/svr_restart' \"$@\"\n")


def test_trigger_config_lists_every_web_server_and_the_readiness_check():
    lines = render.trigger_config(INV).decode().splitlines()
    assert lines[0].startswith("# Written by svrchain")
    assert "web=web1 198.18.0.21 22 root" in lines and "web=web2 198.18.0.22 22 root" in lines
    assert "ready_command=pg_isready -q -h 127.0.0.1" in lines
    assert "ready_interval=0.1" in lines and "run_interval=0.5" in lines
    assert "run_process=^/usr/lib/postgresql/[0-9]+/bin/postgres" in lines
    assert "run_user=postgres" in lines and "run_executable=/usr/lib/postgresql/15/bin/postgres" in lines
    assert "bound=457" in lines  # 60 + 1 + 3 + 3 * 2 * 60 + 3 + 30 (inventory/lab.yaml)


def test_tcp_readiness_probe():
    inv = INV.model_copy(update={"db": INV.db.model_copy(update={"ready": INV.db.ready.model_copy(
        update={"command": None, "port": 1521})})})
    assert "ready_command=timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/1521'\n" in render.trigger_config(inv).decode()


def test_oracle_template_runs_dbstart_as_the_owner():
    from svrchain.core.inventory import parse

    inv = parse((render.TEMPLATES.parent.parent / "inventory" / "example.yaml").read_text(), INV.source)
    text = render.dbora_impl(inv).decode()
    assert 'setsid -w runuser -l "$ORACLE_OWNER" -c "$ORACLE_HOME/bin/dbstart $ORACLE_HOME" </dev/null &' in text


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by make install")
def test_scripts_are_shellcheck_clean(tmp_path):
    from svrchain.core.inventory import parse

    oracle = parse((render.TEMPLATES.parent.parent / "inventory" / "example.yaml").read_text(), INV.source)
    # The trigger itself (render.trigger_program(): its static file, the longest script by far) is
    # checked by test_trigger.py::test_the_trigger_is_shellcheck_clean.
    files = {"dbora": render.dbora_init(INV), "svr_restart": render.trigger_init(INV), "watch": render.watch_init(INV),
             "oracle": render.dbora_impl(oracle), "gate": render.gate(INV), "gate-sudo": render.gate(DEDICATED)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    r = subprocess.run(["shellcheck", *(str(tmp_path / n) for n in files)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_gate_embeds_the_restart_command_quoted():
    text = render.gate(INV).decode()
    assert "RESTART_COMMAND='/etc/init.d/apache2 restart'" in text
    odd = INV.model_copy(update={"web": INV.web.model_copy(update={"restart_command": "systemctl restart $(x) 'a'"})})
    assert """RESTART_COMMAND='systemctl restart $(x) '"'"'a'"'"''""" in render.gate(odd).decode()


def test_gate_accepts_only_restart_and_status():
    text = render.gate(INV).decode()
    assert 'verb=${SSH_ORIGINAL_COMMAND:-restart}' in text
    assert "    restart)\n" in text and "    status)\n" in text and "    *)\n" in text


DEDICATED = INV.model_copy(update={"web": INV.web.model_copy(update={"user": "svr-restart"})})


def test_dedicated_gate_restarts_through_sudo_and_nothing_else():
    text = render.gate(DEDICATED).decode()
    assert "RESTART=(sudo -n -- '/etc/init.d/apache2' 'restart')" in text
    assert 'sh -c "$RESTART_COMMAND"' not in text
    assert 'RESTART=(sh -c "$RESTART_COMMAND")' in render.gate(INV).decode()


def test_sudoers_rule_allows_exactly_the_command():
    rule = render.sudoers(DEDICATED).decode().splitlines()
    assert rule[-2:] == ["Defaults:svr-restart !requiretty",
                         "svr-restart ALL=(root) NOPASSWD: /etc/init.d/apache2 restart"]
    odd = DEDICATED.model_copy(update={"web": DEDICATED.web.model_copy(
        update={"restart_command": "/usr/bin/systemctl restart --job-mode=fail a:b,c"})})
    assert render.sudoers(odd).decode().endswith(
        "NOPASSWD: /usr/bin/systemctl restart --job-mode\\=fail a\\:b\\,c\n")


def test_sudo_listing_is_parsed_to_rules():
    from svrchain.facts.web import sudo_rules
    listing = ("Matching Defaults entries for u on web1:\n    env_reset, !requiretty\n\n"
               "User u may run the following commands on web1:\n    (root) NOPASSWD: /etc/init.d/apache2 restart\n"
               "    (ALL) NOPASSWD: ALL\n")
    assert sudo_rules(listing) == ("(root) NOPASSWD: /etc/init.d/apache2 restart", "(ALL) NOPASSWD: ALL")


def test_a_sudo_rule_without_arguments_allows_none():
    web = DEDICATED.web.model_copy(update={"restart_command": "/usr/sbin/apachectl"})
    bare = DEDICATED.model_copy(update={"web": web})
    assert render.sudoers(bare).decode().endswith('svr-restart ALL=(root) NOPASSWD: /usr/sbin/apachectl ""\n')
    assert render.sudo_command(bare) == '/usr/sbin/apachectl ""'
    assert "RESTART=(sudo -n -- '/usr/sbin/apachectl')" in render.gate(bare).decode()  # sudo runs it with none


def bash_words(script: str, words: str) -> list[str]:
    """The words ``words`` (a shell expression) expands to after ``script`` ran in bash."""
    r = subprocess.run(["bash", "-c", f'{script}\nprintf "%s\\n" {words}'], capture_output=True, text=True, check=True)
    return r.stdout.splitlines()


def contains(words: list[str], part: list[str]) -> bool:
    return any(words[i:i + len(part)] == part for i in range(len(words) - len(part) + 1))


def test_every_connection_of_the_key_uses_the_same_ssh_options():
    from svrchain.ops import key as ops_key
    from svrchain.steps import attacks

    options = render.ssh_options(INV)
    for must in (["-F", "/dev/null"], ["-o", "BatchMode=yes"], ["-o", "StrictHostKeyChecking=yes"],
                 ["-o", "UserKnownHostsFile=/etc/svrchain/known_hosts"], ["-o", "GlobalKnownHostsFile=/dev/null"],
                 ["-o", "IdentitiesOnly=yes"], ["-o", "IdentityAgent=none"]):
        assert contains(options, must), must
    assert contains(shlex.split(ops_key.proof_command(INV, "198.18.0.21", 22, "/root/k.new")), options)
    assert contains(bash_words(attacks.prelude(INV, "198.18.0.21", 22), "$S"), options)
    # The trigger's own: tests/unit/test_trigger.py reads them from its ssh calls.


EXAMPLE = render.TEMPLATES.parent.parent / "inventory" / "example.yaml"


def example_with_ready_command() -> tuple[str, str]:
    """example.yaml with its commented ready.command in place of ready.port; (text, the command)."""
    lines = EXAMPLE.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("# command:"))
    lines[at] = lines[at].replace("# command:", "command:", 1)
    command = lines[at].split("command:", 1)[1].strip()
    lines = [ln for ln in lines if not ln.lstrip().startswith("port: 1521")]
    return "\n".join(lines) + "\n", command


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by make install")
def test_the_example_inventory_and_its_oracle_ready_command_render_clean(tmp_path):
    from types import SimpleNamespace

    from svrchain.core.inventory import parse
    from svrchain.steps.chain import ready_probe

    text, command = example_with_ready_command()
    assert "sqlplus" in command and "'" in command
    for name, inv in (("default", parse(EXAMPLE.read_text(), EXAMPLE)), ("command", parse(text, EXAMPLE))):
        config = render.trigger_config(inv).decode()
        probe = ready_probe(SimpleNamespace(inv=inv))  # restart-chain runs it as sh -c "$1"; the trigger too
        assert f"\nready_command={probe}\n" in config
        (tmp_path / name).write_bytes(render.trigger_init(inv))
    assert parse(EXAMPLE.read_text(), EXAMPLE).db.ready.command == "/usr/local/lib/svrchain/oracle-ready"
    assert parse(text, EXAMPLE).db.ready.command == command
    r = subprocess.run(["shellcheck", str(tmp_path / "default"), str(tmp_path / "command")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_the_trigger_keeps_its_lock_and_sockets_where_only_root_writes():
    text = render.trigger_program().decode()
    assert "RUN_DIR=$ROOT/run/svrchain\nLOCK=$RUN_DIR/$NAME.lock\nCONTROL=$RUN_DIR/$NAME\n" in text
    # The tests' other root is honoured only when the script does not run as root.
    assert 'ROOT=\nif [ "$EUID" -ne 0 ]; then\n    ROOT=${SVRCHAIN_TRIGGER_ROOT:-}\nfi\n' in text
    assert "/var/lock" not in text and "run_dir_ok || return 1" in text


def _bounded_program(count: int, max_parallel: int, body: str) -> str:
    """The trigger's own ``bounded`` (and ``nap``) functions, cut from the static script, with
    MAX_PARALLEL and ``count`` web servers, and ``body`` after them: a real bash program."""
    text = render.TRIGGER_SOURCE.read_text()
    funcs = text[text.index("nap() {"):text.index("# connect_one NAME")]
    servers = " ".join(f"'web{i} 198.18.0.{20 + i} 22 root'" for i in range(1, count + 1))
    return "\n".join([f"MAX_PARALLEL={max_parallel}", f"WEB_SERVERS=({servers})", funcs, body])


def test_trigger_fan_out_is_bounded_by_max_parallel(tmp_path):
    inv = INV.model_copy(update={"trigger": INV.trigger.model_copy(update={"max_parallel": 3})})
    assert ("max_parallel", "3") in render.trigger_settings(inv)
    assert ("max_parallel", "32") in render.trigger_settings(INV)  # the default
    text = render.TRIGGER_SOURCE.read_text()
    assert 'printf \'%s\\n\' "${later[@]}" | bounded "$MAX_PARALLEL" restart_one "$1" &' in text
    assert 'webs | bounded "$MAX_PARALLEL" connect_one' in text and 'setsid "$0" connect "$RUN_STATUS"' in text
    # Each job marks itself running, notes how many run, and leaves: never more than 3 at once, every
    # web server once, the first three first.
    log = tmp_path / "log"
    body = f"""
job() {{
    mkdir "{tmp_path}/run.$1"
    ls -d "{tmp_path}"/run.* | wc -l >>"{log}"
    echo "start $1" >>"{log}.order"
    nap 0.05
    rmdir "{tmp_path}/run.$1"
}}
webs | bounded "$MAX_PARALLEL" job
"""
    r = subprocess.run(["bash", "-c", _bounded_program(12, 3, body)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    counts = [int(x) for x in log.read_text().split()]
    assert len(counts) == 12 and max(counts) <= 3
    order = (tmp_path / "log.order").read_text().split("\n")
    assert set(order[:3]) == {"start web1", "start web2", "start web3"}  # the first three, at once
    assert not list(tmp_path.glob("run.*"))
    assert render.watch_pidfile(INV) == "/run/svrchain/svr_restart_watch.pid"
    assert render.owed_dir(INV) == "/var/lib/svrchain/svr_restart.owed"
    assert "WATCH_PIDFILE=$RUN_DIR/${NAME}_watch.pid" in text and "OWED=$STATE_DIR/$NAME.owed" in text
