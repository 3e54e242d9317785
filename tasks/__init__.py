"""svrchain's Fabric tasks: each a docstring, its flags and one call into the svrchain package.

``fabfile.py`` loads the collection ``ns``; the ``svrchain`` command has it built in (this folder is
installed as ``svrchain.tasks``); the code is in ``svrchain/``. Every task also takes
--inventory/-I (svr_task adds it); the tasks that can work on some web servers take --limit.

Each task imports its step when it runs, not when the command starts: a run loads only what its task
needs, and ``--help`` or ``--list`` no step at all (tests/unit/test_start.py keeps it so).
"""

from __future__ import annotations

from invoke import Context

from svrchain.cli import collection, local_task, svr_task


@svr_task(limit=True)
def trust_hosts(c: Context, yes: bool = False, dry_run: bool = False) -> None:
    """Show every host's SSH host key fingerprint and pin the new ones in connect.known_hosts.

    A key already pinned is checked; a changed key is refused (remove its line by hand if the change
    is expected). New keys are recorded after you confirm, or at once with --yes; --dry-run only
    shows them.
    """
    from svrchain.steps.hosts import run_trust_hosts

    run_trust_hosts(c, yes=yes, dry_run=dry_run)


@svr_task
def install_dbora(c: Context, dry_run: bool = False) -> None:
    """Install the DB start script (chkconfig: 345 98 11 + LSB header) and register it for 3, 4, 5.

    The site's script (db.script, or the built-in Oracle dbora template) goes to
    /usr/local/lib/svrchain/<service>. On SysV hosts /etc/init.d/<service> runs it and, on a restart
    outside a boot, starts the svr_restart trigger; on systemd hosts <service>.service runs it (or
    db.unit names the site's own unit). --dry-run shows the diff and changes nothing.
    """
    from svrchain.steps.dbora import run_install_dbora

    run_install_dbora(c, dry_run=dry_run)


@svr_task
def gen_key(c: Context, rotate: bool = False, dry_run: bool = False) -> None:
    """Create the DB server's dedicated restart key: no passphrase, mode 600, never leaves the host.

    ed25519 by default (RSA where the host's OpenSSH predates it). An existing key is kept;
    --rotate replaces it (then run push-key). --dry-run shows what would change.
    """
    from svrchain.steps.keys import run_gen_key

    run_gen_key(c, rotate=rotate, dry_run=dry_run)


@svr_task(limit=True)
def push_key(c: Context, dry_run: bool = False) -> None:
    """Install the DB server's key on every web server, restricted to the restart gate.

    Installs /usr/local/sbin/svr-restart-gate (it runs web.restart_command: restart and status
    verbs only, logged, serialized) and the line from="<DB address>",no-port-forwarding,
    no-X11-forwarding,no-agent-forwarding,no-pty,command="<the gate>" (plus restrict where
    OpenSSH has it); an older line for
    the key is replaced, other lines are kept byte for byte. Also pins every web server's host key
    (read from itself) in the DB server's known_hosts for the trigger. --dry-run shows the diffs.
    """
    from svrchain.steps.keys import run_push_key

    run_push_key(c, dry_run=dry_run)


@svr_task
def install_svr_restart(c: Context, dry_run: bool = False) -> None:
    """Install the trigger service svr_restart on the DB server, ordered after the DB.

    SysV: /etc/init.d/svr_restart (chkconfig: 345 99 1, Required-Start: dbora). systemd:
    svr-restart.service, After= and PartOf= the DB's unit and wanted by it, so a restart, a
    stop/start and a boot of the DB all run it. When it starts it waits (within db.ready.timeout)
    until the DB is ready, then SSHes with the restricted key to all web servers in parallel
    (BatchMode, pinned known_hosts, connect timeout, retries with backoff), logs each result to
    syslog and its log file, and exits non-zero if any web server failed. --dry-run shows the diff.
    """
    from svrchain.steps.trigger import run_install_svr_restart

    run_install_svr_restart(c, dry_run=dry_run)


@svr_task
def bootstrap(c: Context, dry_run: bool = False, adopt: bool = False, json: bool = False, junit: str = "") -> None:
    """Set up the whole chain: install-dbora, gen-key, push-key, install-svr-restart, then verify.

    Prints changed/ok per host and step; a second run changes nothing. --dry-run shows every
    change (with diffs) and touches nothing. Older key lines that restart the web server from the
    DB server around the gate (a chain set up by hand) are reported; --adopt retires them once
    svrchain's own key is proved on that web server (backed up; the old private key is named).
    --json prints one JSON document on stdout, --junit FILE writes a JUnit report (the docs task: `docs output`);
    exit 0 ok, 1 a step failed, 2 a gap found by the final verify, 3 a host unreachable, 4 bad inventory.
    """
    from svrchain.steps.bootstrap import run_bootstrap

    run_bootstrap(c, dry_run=dry_run, adopt=adopt)


@svr_task
def restart_chain(c: Context, dry_run: bool = False, yes: bool = False, json: bool = False, junit: str = "") -> None:
    """Maintenance: restart the DB and prove every web server restarted after it is ready.

    Restarts the DB service, waits until the DB is ready, checks that svr_restart restarted every
    web server after that (restarts directly where it did not), checks each health URL, and prints
    a per-host table with timings. --dry-run prints the plan. Exits non-zero on any failure (3 when
    only unreachable hosts failed). Asks for confirmation on a terminal; --yes skips the question
    (needed when stdin is not a terminal; not confirmed: exit 5). --json and --junit FILE report per
    host and step (the docs task: `docs output`).
    """
    from svrchain.steps.chain import run_restart_chain

    run_restart_chain(c, dry_run=dry_run, yes=yes)


@svr_task(limit=True)
def verify(c: Context, attacks: bool = False, json: bool = False, junit: str = "") -> None:
    """Read-only smoke check of the whole chain; a table per host, non-zero exit on any gap.

    Checks the scripts, their boot registration and order, the key and its modes, the exact line on
    every web server, and the pinned host keys. --attacks also tries, from the DB server, what the
    restricted key must refuse (commands, injection, pty, forwarding, sftp/scp, environment, another
    user) without restarting anything, and prints the matrix. Each host's line is printed as soon as
    its checks are in. --json and --junit FILE report per host and check (the docs task: `docs output`); exit 0 ok,
    2 a gap (or an attack not refused), 3 a host unreachable, 4 bad inventory.
    """
    from svrchain.steps.verify import run_verify

    run_verify(c, attacks=attacks)


@svr_task(limit=True)
def smoke(c: Context, json: bool = False, junit: str = "") -> None:
    """Read-only check for CI: verify's checks plus the chain's path end to end, restarting nothing.

    Besides every check of verify, the DB server asks each web server's gate for 'status' with the
    restricted key and the trigger's own ssh options (pinned known_hosts, BatchMode): the path a DB
    restart takes, proved without restarting anything. --json and --junit FILE report per host and
    check (the docs task: `docs output`); exit 0 ok, 2 a gap, 3 a host unreachable, 4 bad inventory.
    """
    from svrchain.steps.verify import run_smoke

    run_smoke(c)


@svr_task(limit=True)
def doctor(c: Context, strict: bool = False, json: bool = False, junit: str = "") -> None:
    """Read-only: on every web server, what decides how bad a DB restart is for it, with the fix.

    Reads, in one command per web server and changing nothing: the PHP settings of Apache's own PHP
    (the php.ini and conf.d files its PHP module loads, not the CLI's: oci8.ping_interval, oci8.events,
    oci8.persistent_timeout, oci8.max_persistent, pgsql.auto_reset_persistent, pgsql.allow_persistent,
    pgsql.max_persistent, each with the file and line it came from), Apache's MPM and how many
    workers it may run (the requests that can fail after a DB restart until the chain restarts
    Apache), and whether web.restart_command is graceful. Findings are advice: exit 0, or 2 with
    --strict; 3 when a web server is unreachable. --json and --junit FILE as verify's.
    """
    from svrchain.steps.doctor import run_doctor

    run_doctor(c, strict=strict)


@svr_task
def rotate_key(c: Context, dry_run: bool = False) -> None:
    """Replace the DB server's key without a moment in which the chain cannot restart a web server.

    A new key is made beside the old one, its line is added on every web server (the old line stays),
    and the new key is proved from the DB server on each with 'status'. Only then does it replace the
    old key, and the old lines are removed. If the new key fails anywhere, its lines are removed and
    the old key stays in place. --dry-run shows the plan.
    """
    from svrchain.steps.rotate import run_rotate_key

    run_rotate_key(c, dry_run=dry_run)


@svr_task(limit=True)
def harden_sshd(c: Context, dry_run: bool = False) -> None:
    """Web servers' sshd: public-key logins only, never locking the admin out.

    Sets PubkeyAuthentication yes, PasswordAuthentication and KbdInteractiveAuthentication no,
    AuthenticationMethods publickey, PermitRootLogin prohibit-password (forced-commands-only when
    the admin logs in as a sudo user), Protocol 2 where sshd still has that option, modern
    algorithms only (harden.algorithms) and harden.extra, in a drop-in that sshd reads first (or a
    block at the top of sshd_config). Each change is checked with sshd -t and sshd -T before the
    reload and with a fresh login after it, and rolled back if either fails. The first web server
    goes alone; the others follow only if it succeeded. --dry-run shows the diff.
    """
    from svrchain.steps.harden import run_harden_sshd

    run_harden_sshd(c, dry_run=dry_run)


@svr_task
def uninstall(c: Context, sshd: bool = False, dry_run: bool = False, yes: bool = False) -> None:
    """Remove everything svrchain installed; every other line and file stays as it was.

    DB server: the trigger service, svrchain's start script wrapper or unit for the DB (the site's
    own script it replaced, if any, is put back; the database is not stopped), the restart key,
    the pinned web host keys. Web servers: the key's line in authorized_keys (other lines byte for
    byte), the gate, its sudo rule and the account push-key created. Logs and the backups in
    /var/backups/svrchain stay. --sshd also takes out harden-sshd's setting (checked, reloaded,
    rolled back if a fresh login fails). --dry-run shows what would go. Asks for confirmation on a
    terminal; --yes skips the question (needed when stdin is not a terminal; not confirmed: exit 5).
    """
    from svrchain.steps.uninstall import run_uninstall

    run_uninstall(c, sshd=sshd, dry_run=dry_run, yes=yes)


@local_task
def init(c: Context, file: str, force: bool = False) -> str:
    """Write the commented example inventory to FILE, to start from (every key is explained in it).

    An existing FILE is kept unless --force (then replaced atomically). Nothing else is touched; no
    host is contacted. Then edit it, and run trust-hosts -I FILE.
    """
    from svrchain.steps.starter import run_init

    return run_init(file, force=force)


@local_task
def docs(c: Context, name: str, path: bool = False) -> str:
    """Print a doc the messages point to: NAME is output (the output formats and exit codes) or schema
    (the JSON schema of --json's document).

    --path prints where the doc is (installed with the command, or in the checkout) instead of its text.
    """
    from svrchain.steps.starter import run_docs

    return run_docs(name, path=path)


ns = collection(
    init, docs, trust_hosts, install_dbora, gen_key, push_key, install_svr_restart, bootstrap, restart_chain,
    verify, smoke, doctor, rotate_key, harden_sshd, uninstall,
)
