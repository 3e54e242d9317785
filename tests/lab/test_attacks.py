"""The attack matrix on the lab's real sshd: the restricted key does nothing but its one job."""

from __future__ import annotations

import pytest
import yaml

from lab import hosts as labhosts
from svrchain.remote.group import Session
from svrchain.steps.attacks import Attack, run_attacks
from tests.lab.conftest import lab_of
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    """The key's refusals are sshd's and the gate's, the same on either init system: SysV hosts."""
    yield from lab_of("sysv")


# The matrix's rows, written here (not read from svrchain.steps.attacks): a row that goes missing fails the test.
ATTACK_NAMES = (
    "arbitrary command", "injection: restart;id", "injection: status && id", "injection: $(id), `id`",
    "injection: newline", "pty request (-tt)", "local forwarding (-L)", "dynamic forwarding (-D)",
    "remote forwarding (-R)", "agent forwarding (-A)", "X11 forwarding (-X)", "sftp subsystem",
    "scp (legacy protocol)", "environment (SendEnv LC_ALL, BASH_ENV)", "the key for another user",
)


def apache_pid(lab, web: str) -> str:
    return lab.host(web).check_output("cat /var/run/apache2/apache2.pid")


def test_every_attack_is_refused_and_nothing_restarts(chain):
    before = {w: apache_pid(chain, w) for w in ("web1", "web2")}
    r = chain.fab("verify", "--attacks", timeout=600)
    print(r.stdout)  # the matrix, in the test output
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(("web1 ", "web2 "))]
    refused = [(ln.split()[0], ln) for ln in rows if ln.rstrip().endswith(" refused")]
    for web in ("web1", "web2"):
        for name in ATTACK_NAMES:
            assert [ln for w, ln in refused if w == web and f" {name} " in ln], (web, name, r.stdout)
    assert len(refused) == 30, r.stdout  # 15 attacks on each of the 2 web servers
    assert {w: apache_pid(chain, w) for w in ("web1", "web2")} == before  # no attack restarted Apache
    assert not chain.host("web1").file("/tmp/svrchain-scp-attack").exists
    assert "REFUSED: 'id'" in chain.host("web1").file("/var/log/auth.log").content_string


TRIGGER_SSH = ("ssh -F /dev/null -i /root/.ssh/svr_restart_key -o BatchMode=yes "
               "-o UserKnownHostsFile=/etc/svrchain/known_hosts root@198.18.0.21")
# Everything the dedicated account can write under the gate's state tree, the old shared directory
# included, set to a value that runs code when it reaches shell arithmetic.
CRAFT = r"""C='a[$(touch /tmp/svrchain-pwned)]'; export C
runuser -u svr-restart -- sh -c 'for d in /var/lib/svrchain/gate /var/lib/svrchain/gate/*; do
    for f in requested covered rc; do printf "%s\n" "$C" >"$d/$f" 2>/dev/null; done
done; true'"""


def test_the_dedicated_account_cannot_make_roots_gate_run_code(chain, tmp_path):
    """web.user goes root -> svr-restart -> root: what the account wrote never reaches root's gate."""
    data = labhosts.inventory_data()
    data["web"]["user"] = "svr-restart"
    dedicated = tmp_path / "dedicated.yaml"
    dedicated.write_text(yaml.safe_dump(data))
    r = chain.fab("push-key", inventory=dedicated)
    assert r.returncode == 0, r.stdout + r.stderr
    chain.console("web1", CRAFT)
    assert "a[$(touch" in chain.console("web1", "cat /var/lib/svrchain/gate/svr-restart/requested").stdout
    r = chain.fab("push-key")  # back to root
    assert r.returncode == 0, r.stdout + r.stderr
    chain.console("web1", CRAFT)  # root's own directory is out of its reach
    assert chain.console("web1", "runuser -u svr-restart -- touch /var/lib/svrchain/gate/root/x",
                         check=False).returncode != 0
    before = apache_pid(chain, "web1")
    r = chain.host("db").run(f"{TRIGGER_SSH} restart")
    assert r.rc == 0, r.stderr
    assert apache_pid(chain, "web1") != before
    assert not chain.host("web1").file("/tmp/svrchain-pwned").exists
    assert chain.console("web1", "stat -c '%a %U' /var/lib/svrchain/gate /var/lib/svrchain/gate/root").stdout.split(
        "\n")[:2] == ["755 root", "700 root"]


# A local user of the DB server listens first on the ports the -L and -D rows used to forward on
# (fixed ones), accepting and closing every connection: the forward could not bind, and 0 bytes came
# back, which read as "refused" whatever the key allowed.
SQUAT = ("id mallory >/dev/null 2>&1 || useradd -m mallory; for p in 18080 18081; do "
         "setsid runuser -u mallory -- perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "
         "\"127.0.0.1\", LocalPort => shift, Listen => 5, ReuseAddr => 1) or die; while ($c = $s->accept) "
         "{ close $c }' $p </dev/null >/dev/null 2>&1 & done; sleep 1")
ALLOW_FORWARDING = (r"cp -a /root/.ssh/authorized_keys /root/ak && sed -i -e 's/no-port-forwarding,//' "
                    r"-e 's/restrict,/restrict,port-forwarding,/' /root/.ssh/authorized_keys")


def test_ports_a_local_user_holds_never_make_a_working_forward_read_as_refused(chain):
    # web1's line allows forwarding (verify would stop at that gap before its attacks: the matrix's
    # own code is run here, from the DB server over real SSH, as verify --attacks runs it).
    with chain.fault("db", SQUAT, "pkill -u mallory perl; true"), \
            chain.fault("web1", ALLOW_FORWARDING, "mv /root/ak /root/.ssh/authorized_keys"), \
            Session.open(LAB_INVENTORY) as s:
        assert chain.console("db", "ss -Hltn 'sport = :18080'").stdout.strip()  # mallory holds it
        rows = {r.attack: r for r in run_attacks(s, s.webs[0])}
    for name in ("local forwarding (-L)", "dynamic forwarding (-D)"):
        assert not rows[name].ok, rows[name]  # a forward that works is NOT refused
        assert "bytes through" in rows[name].seen and not rows[name].seen.startswith("0 "), rows[name]
    assert rows["pty request (-tt)"].ok  # the rest of the line's restrictions still hold


def test_an_attack_that_hangs_is_stopped_and_its_row_says_what_still_ran(chain):
    """An attack that never ends is stopped at its limit with everything it started, and its row fails
    naming it and what still ran; one that ends leaving a process behind (as a forward left running
    would), holding the command's output open, has it stopped: the matrix goes on either way, never
    waiting on a command that does not end."""
    hangs = Attack("hangs", "nothing", 'echo started; sleep 97 & sleep 98; echo "not reached"')
    leaves = Attack("leaves a process", "nothing", "sleep 96 & echo done")
    with Session.open(LAB_INVENTORY) as s:
        rows = run_attacks(s, s.webs[0], attacks=(hangs, leaves), limit=2)
    assert [(r.attack, r.ok, r.hung) for r in rows] == [("hangs", False, True), ("leaves a process", True, False)]
    assert rows[0].seen.startswith("no answer within 2s, stopped; still running: "), rows[0]
    assert "sleep 97" in rows[0].seen and "sleep 98" in rows[0].seen, rows[0]
    assert rows[1].seen == "done", rows[1]
    assert chain.console("db", "pgrep -f 'sleep 9[6-8]'", check=False).stdout == ""  # none left running
