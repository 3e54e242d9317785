"""The attack matrix: what the DB server's restricted key refuses, tried for real (fab verify --attacks).

Each attack runs on the DB server (where the key lives; it never leaves) against each web server,
and never restarts anything: it asks for "status", or for forwarding only (-N). A row passes when
what was seen is the refusal expected.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from svrchain.core import render
from svrchain.core.inventory import Inventory
from svrchain.remote.connection import Host
from svrchain.remote.group import Session

# $O is the options of every connection of the key (render.ssh_options, as the trigger uses them;
# word-split on purpose: the inventory allows no spaces in them); $S is ssh with the key and them;
# $D the destination (user@address).
_PRELUDE = r"""
S="ssh -i $KEY -p $PORT $O"
D="$USR@$ADDR"
first() { tr '\n' ' ' | cut -c1-100; }
# free_port: a local port nothing listens on (random, checked); the forward that binds it runs with
# ExitOnForwardFailure, so a port a local user took meanwhile fails the row instead of passing it.
free_port() {
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000 ))
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}
# forward OPTION SPEC: start a forward (-L or -D) on a free port; set P (port) and F (ssh's pid) once
# its listener is up, or say why not and fail (the row then fails: closed, never a false "refused").
forward() {
    P=$(free_port) || { echo "no free local port"; return 1; }
    $S -N -o ExitOnForwardFailure=yes "$1" "$(printf "$2" "$P")" "$D" 2>/dev/null & F=$!
    for _ in $(seq 50); do
        kill -0 "$F" 2>/dev/null || { echo "the forward on port $P could not be set up"; return 1; }
        [ "$(ss -Hltnp "sport = :$P" 2>/dev/null | grep -c "pid=$F,")" -gt 0 ] && return 0
        sleep 0.2
    done
    unforward; echo "the forward on port $P did not come up"; return 1
}
# unforward: end the forward. SIGKILL, not SIGTERM: ssh can miss a SIGTERM that comes while it sets up
# its handlers (it sets SIGTERM to ignored, then to its handler), and then never ends; waiting for it
# hung the matrix (seen in CI: a -D forward still running after the row's 30 s).
unforward() { kill -s KILL "$F" 2>/dev/null; wait "$F" 2>/dev/null; }
"""


@dataclass(frozen=True)
class Attack:
    """One row: what is tried, what must happen, and the script that tries it (exit 0 = refused)."""

    name: str
    expected: str
    script: str


ATTACKS = (
    Attack("arbitrary command", "refused by the gate, nothing runs",
           'out=$($S "$D" id 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 2 ] && ! echo "$out" | grep -q uid='),
    Attack("injection: restart;id", "refused, nothing runs",
           'out=$($S "$D" "restart;id" 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 2 ] && ! echo "$out" | grep -q uid='),
    Attack("injection: status && id", "refused, nothing runs",
           'out=$($S "$D" "status && id" 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 2 ] && ! echo "$out" | grep -q uid='),
    Attack("injection: $(id), `id`", "refused, nothing runs",
           'out=$($S "$D" \'$(id)`id`\' 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 2 ] && ! echo "$out" | grep -q uid='),
    Attack("injection: newline", "refused, nothing runs",
           'out=$($S "$D" "$(printf \'status\\nid\')" 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 2 ] && ! echo "$out" | grep -q uid='),
    Attack("pty request (-tt)", "no pty",
           'out=$($S -tt "$D" status 2>&1); echo "$out" | grep "^PTY" | first; '
           'echo "$out" | grep -q "PTY allocation request failed"'),
    Attack("local forwarding (-L)", "no byte flows",
           'forward -L "127.0.0.1:%s:127.0.0.1:80" || exit 1; '
           'n=$(curl -s -m 3 "http://127.0.0.1:$P/" | wc -c); unforward; '
           'echo "$n bytes through the tunnel"; [ "$n" -eq 0 ]'),
    Attack("dynamic forwarding (-D)", "no byte flows",
           'forward -D "127.0.0.1:%s" || exit 1; '
           'n=$(curl -s -m 3 --socks5 "127.0.0.1:$P" http://127.0.0.1/ | wc -c); unforward; '
           'echo "$n bytes through the SOCKS proxy"; [ "$n" -eq 0 ]'),
    Attack("remote forwarding (-R)", "refused by the server",
           'out=$(timeout 5 $S -N -o ExitOnForwardFailure=yes -R 127.0.0.1:0:127.0.0.1:22 "$D" 2>&1); '
           'echo "$out" | first; echo "$out" | grep -q "remote port forwarding failed"'),
    Attack("agent forwarding (-A)", "no agent in the session",
           # (IdentityAgent=none in $O would leave nothing to forward: an earlier -o wins in ssh.)
           'eval "$(ssh-agent -s)" >/dev/null; out=$(ssh -o "IdentityAgent=$SSH_AUTH_SOCK" -i $KEY -p $PORT $O '
           '-v -A "$D" status 2>&1); ssh-agent -k >/dev/null; '
           'echo "$out" | grep "^session:" | first; echo "$out" | grep -q "Requesting authentication agent forwarding" '
           '&& echo "$out" | grep -q "agent=none"'),
    Attack("X11 forwarding (-X)", "refused by the server",
           'out=$(DISPLAY=127.0.0.1:0 $S -v -X "$D" status 2>&1); echo "$out" | grep "^session:" | first; '
           'echo "$out" | grep -q "Requesting X11 forwarding" && echo "$out" | grep -q "x11=none"'),
    Attack("sftp subsystem", "refused by the gate",
           'out=$(echo "ls /" | timeout 10 sftp -b - -i $KEY -P $PORT $O '
           '"$D" 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -ne 0 ] && ! echo "$out" | grep -q "^etc"'),
    Attack("scp (legacy protocol)", "refused by the gate",
           'out=$(timeout 10 scp -O -i $KEY -P $PORT $O /etc/hostname '
           '"$D:/tmp/svrchain-scp-attack" 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; [ $rc -ne 0 ]'),
    Attack("environment (SendEnv LC_ALL, BASH_ENV)", "the gate runs unaffected",
           'out=$(LC_ALL=C BASH_ENV=/etc/passwd $S -o SendEnv=LC_ALL -o SendEnv=BASH_ENV "$D" status 2>&1); '
           'rc=$?; echo "exit $rc: $(echo "$out" | first)"; [ $rc -eq 0 ] && echo "$out" | grep -q "^last restart:"'),
    Attack("the key for another user", "authentication refused",
           'out=$($S "$OTHER@$ADDR" status 2>&1); rc=$?; echo "exit $rc: $(echo "$out" | first)"; '
           '[ $rc -eq 255 ] && echo "$out" | grep -q "Permission denied"'),
)


@dataclass
class Row:
    """One line of the printed matrix (``hung``: the attack was stopped at its time limit)."""

    web: str
    attack: str
    expected: str
    seen: str
    ok: bool
    hung: bool = False


# How long one attack may run (a normal one takes well under a second).
LIMIT = 30

# How each attack runs ($1 the script, $2 LIMIT): in a session of its own, so that every process it
# starts can be stopped with it. When it ends, whatever it left running (a forward, an agent's
# client) is stopped: it would hold the command's output open, and the matrix would wait for it. A
# watchdog in another session stops it at the limit, saying first what of it still ran (exit 124): each
# process's PID and command line, a long one as its start and its end (an ssh's options in between);
# it is stopped by its PID too, in case it has not made its session yet.
_LIMITED = r"""
setsid sh -c "$1" & p=$!
setsid sh -c 'sleep "$1"
    echo "still running: $(ps -o pid=,args= -s "$2" | grep -v "^ *$2 " | sed "s/^ *//" |
        awk "{ if (length(\$0) > 90) \$0 = substr(\$0, 1, 25) \" ... \" substr(\$0, length(\$0) - 59); print }" |
        paste -s -d ";")"
    kill -s TERM -- "-$2"; sleep 2; kill -s KILL -- "-$2"' watchdog "$2" "$p" & w=$!
wait "$p"; rc=$?
kill -s KILL -- "$w" "-$w" "-$p" 2>/dev/null
case $rc in 137 | 143) exit 124 ;; esac
exit "$rc"
"""


def prelude(inv: Inventory, address: str, port: int) -> str:
    """The shell variables and helpers every attack on the web server at ``address`` uses."""
    env = (f"KEY={shlex.quote(inv.key.path)} O={shlex.quote(shlex.join(render.ssh_options(inv)))} "
           f"USR={shlex.quote(inv.web.user)} OTHER={'root' if inv.web.dedicated else 'nobody'} "
           f"ADDR={shlex.quote(address)} PORT={port}")
    return f"{env}\n{_PRELUDE}"


def run_attacks(session: Session, web: Host, attacks: tuple[Attack, ...] = ATTACKS,
                limit: int = LIMIT) -> list[Row]:
    """Every attack from the DB server against ``web``, one at a time, each within ``limit`` seconds."""
    env = prelude(session.inv, web.address, web.port)
    rows = []
    for a in attacks:
        r = session.db.run(_LIMITED, f"{env}\n{a.script}", str(limit), timeout=limit + 30)
        last = (r.stdout.strip().splitlines() or [""])[-1]
        hung = r.code == 124
        seen = f"no answer within {limit}s, stopped; {last[:400]}" if hung else last[:100]
        rows.append(Row(web.name, a.name, a.expected, seen, r.ok, hung))
    return rows
