"""The web tier's doctor, pure: what decides how bad a DB restart is for a web server, from what one
read-only probe of that server printed (doctor's step runs :data:`PROBE` there).

PHP's persistent-connection settings as Apache's PHP (the apache2handler SAPI, not the CLI) loads
them, Apache's MPM and how many workers it may run, and what the inventory's restart command does to
requests in flight. Each becomes a :class:`Finding` with the fix. Nothing here does I/O.
"""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from dataclasses import dataclass, field

MAXB = 1048576  # no file or command output is read beyond this (the probe's bound)
MARK = b"\n@@svrchain-doctor@@ "

# One remote command: every read bounded (1 MiB, 10-20 s), files checked to be regular before they are
# opened (a FIFO would block), nothing written, and only root's own programs run: Apache's server
# program itself (/usr/sbin/apache2 with Debian's /etc/apache2/envvars, or /usr/sbin/httpd), only if
# root owns it and nobody else can write it (not apache2ctl: it makes Apache's run and lock
# directories when they are missing); never a php binary. Each piece of
# output is framed: MARK kind status mode owner length name, then exactly length bytes.
HELPERS = r"""
export LC_ALL=C
MAXB=1048576
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
emit() { printf '\n@@svrchain-doctor@@ %s %s %s %s %s %s\n' "$1" "$2" "$3" "$4" "$(wc -c <"$d/o")" "$5"; cat "$d/o"; }
put() {
    : >"$d/o"
    case $2 in *'
'*) emit "$1" oddname - - "$(printf %s "$2" | tr '\n' '?')"; return;; esac
    [ -e "$2" ] || { emit "$1" missing - - "$2"; return; }
    [ -f "$2" ] || { emit "$1" notfile - - "$2"; return; }
    set -- "$1" "$2" $(stat -L -c '%a %U %s' -- "$2")
    [ "$5" -le $MAXB ] || { emit "$1" big "$3" "$4" "$2"; return; }
    timeout 10 head -c $MAXB -- "$2" >"$d/o" 2>/dev/null || { : >"$d/o"; emit "$1" unreadable "$3" "$4" "$2"; return; }
    emit "$1" ok "$3" "$4" "$2"
}
run() {
    n=$1; shift
    { timeout 20 "$@" </dev/null 2>&1; echo $? >"$d/rc"; } | head -c $MAXB >"$d/o"
    emit cmd "$(cat "$d/rc")" - - "$n"
}
"""
PROBE = HELPERS + r"""
safe() { [ -f "$1" ] && [ -n "$(find -L "$1" -maxdepth 0 -user 0 ! -perm /022)" ]; }
srv=; envf=
if safe /usr/sbin/apache2 && safe /etc/apache2/envvars; then srv=/usr/sbin/apache2; envf=/etc/apache2/envvars
elif safe /usr/sbin/httpd; then srv=/usr/sbin/httpd
fi
if [ -n "$srv" ]; then
    server='if [ -n "$1" ]; then . "$1"; fi; shift; exec "$@"'
    run ctl echo "$srv"
    run version sh -c "$server" sh "$envf" "$srv" -V
    run includes sh -c "$server" sh "$envf" "$srv" -t -D DUMP_INCLUDES
    cp "$d/o" "$d/inc"
    sed -n 's/^ *([^)]*) \(\/.*\)$/\1/p' "$d/inc" | while IFS= read -r f; do put conf "$f"; done
fi
: >"$d/ps"
for p in /proc/[0-9]*; do
    c=$(cat "$p/comm" 2>/dev/null) || continue
    case $c in apache2|httpd) ;; *) continue;; esac
    s=$(cat "$p/stat" 2>/dev/null) || continue
    set -- ${s##*) }
    echo "${p#/proc/} $2 $(stat -c %u "$p") $c" >>"$d/ps"
done
cp "$d/ps" "$d/o"; emit cmd 0 - - ps
main=$(awk 'NR==FNR { parent[$1] = 1; next } $3 == 0 && !($2 in parent) { print $1; exit }' "$d/ps" "$d/ps")
env=
if [ -n "$main" ]; then
    tr '\0' '\n' <"/proc/$main/environ" 2>/dev/null | grep -a '^PHP\(RC\|_INI_SCAN_DIR\)=' >"$d/o"; emit cmd 0 - - env
    env=$(cat "$d/o")
    grep -a -o '/[^ ]*\(libphp\|mod_php\|mpm\)[^ /]*\.so$' "/proc/$main/maps" 2>/dev/null | sort -u >"$d/o"
    emit cmd 0 - - maps
fi
for f in /etc/php/*/apache2/php.ini /etc/php/*/apache2/php-apache2handler.ini /etc/php/*/apache2/conf.d/*.ini \
         /etc/php.ini /etc/php-apache2handler.ini /etc/php.d/*.ini; do
    [ -e "$f" ] || [ -L "$f" ] && put ini "$f"
done
rc=$(printf '%s\n' "$env" | sed -n 's/^PHPRC=//p')
sd=$(printf '%s\n' "$env" | sed -n 's/^PHP_INI_SCAN_DIR=//p')
inc=$(sed -n 's/^ *([^)]*) \(\/.*\)$/\1/p' "$d/inc" 2>/dev/null)
ini=$(timeout 10 grep -hi '^[[:space:]]*phpinidir[[:space:]]' $inc </dev/null 2>/dev/null |
      sed 's/^[[:space:]]*[^[:space:]]*[[:space:]]*//; s/"//g')
for p in $(printf '%s\n' "$rc" "$ini" | tr ' ' '\n'); do
    if [ -d "$p" ]; then put ini "$p/php-apache2handler.ini"; put ini "$p/php.ini"; else put ini "$p"; fi
done
IFS=:
for s in $sd; do
    [ -n "$s" ] || continue
    for f in "$s"/*.ini; do [ -e "$f" ] || [ -L "$f" ] && put ini "$f"; done
done
"""


@dataclass(frozen=True)
class Read:
    """One piece of the probe's output: a file (``conf``, ``ini``) or a command's output (``cmd``)."""

    kind: str
    status: str  # files: ok, missing, notfile, big, unreadable, oddname; commands: the exit code
    mode: int | None
    owner: str
    name: str  # the file's path, or the command's name
    data: bytes

    @property
    def text(self) -> str:
        """The bytes as text (undecodable bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    @property
    def writable_by_others(self) -> str | None:
        """Who besides root could change this file (None: nobody)."""
        if self.owner not in ("root", "-"):
            return self.owner
        if self.mode is not None and self.mode & 0o022:
            return "its group or everyone" if self.mode & 0o002 else "its group"
        return None


def frames(raw: bytes) -> tuple[list[Read], bool]:
    """The probe's output as its pieces, and whether it was whole (False: cut short or malformed)."""
    reads: list[Read] = []
    pos = raw.find(MARK)
    while pos >= 0:
        start = pos + len(MARK)
        end = raw.find(b"\n", start)
        head = raw[start:end].decode("utf-8", "replace").split(" ", 5) if end >= 0 else []
        if len(head) != 6 or not head[4].isdigit():
            return reads, False
        kind, status, mode, owner, length, name = head
        size = int(length)
        data = raw[end + 1:end + 1 + size]
        if len(data) != size:
            return reads, False
        reads.append(Read(kind, status, int(mode, 8) if re.fullmatch(r"[0-7]{1,4}", mode) else None, owner, name,
                          data))
        nxt = end + 1 + size
        if nxt == len(raw) or raw.startswith(MARK, nxt):
            pos = nxt if nxt < len(raw) else -1
        else:
            return reads, False
    return reads, True


# -- Apache's configuration ------------------------------------------------------------------------

SCOPES = ("virtualhost", "directory", "directorymatch", "location", "locationmatch", "files", "filesmatch",
          "if", "elseif", "else", "proxy", "proxymatch")


@dataclass(frozen=True)
class Directive:
    """One directive of Apache's configuration, where it is, and the sections around it."""

    name: str  # lower case
    args: tuple[str, ...]
    where: str  # file:line
    scope: str  # "" at server level, else the innermost per-request section (e.g. "<VirtualHost *:80>")


def _words(text: str) -> list[str]:
    """A directive line's words (Apache's quoting); an unbalanced quote keeps the rest as one word."""
    try:
        return shlex.split(text, comments=False, posix=True)
    except ValueError:
        return text.split()


def _lines(text: str) -> list[tuple[int, str]]:
    """The logical lines of a config file (backslash continuations joined), with their first line number."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for n, line in enumerate(text.split("\n"), 1):  # Apache's lines end at \n only
        line = line.rstrip()
        if not pending:
            first = n
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append((first, (pending + line).strip()))
        pending = ""
    return out


def directives(files: list[Read]) -> list[Directive]:
    """Every directive of the included files, in Apache's order, with the sections they are in
    (``<IfModule>`` conditions are kept as sections: see :func:`effective`)."""
    found: list[Directive] = []
    for f in files:
        stack: list[str] = []
        for n, line in _lines(f.text):
            if not line or line.startswith("#"):
                continue
            if line.startswith("</"):
                if stack:
                    stack.pop()
                continue
            if line.startswith("<"):
                stack.append(line.rstrip(">").lstrip("<").strip())
                continue
            words = _words(line)
            if words:
                found.append(Directive(words[0].lower(), tuple(words[1:]), f"{f.name}:{n}", "\x00".join(stack)))
    return found


def loaded_modules(found: list[Directive], mpm: str | None) -> set[str]:
    """The names ``<IfModule>`` may test for the modules LoadModule loads (and the MPM, when built in)."""
    names = {"core.c", "http_core.c", "mod_so.c", "so_module", "core_module"}
    for d in found:
        if d.name == "loadmodule" and len(d.args) >= 2:
            names.add(d.args[0].lower())
            base = posixpath.basename(d.args[1]).lower()
            names.add(re.sub(r"\.so$", ".c", base))
            if m := re.fullmatch(r"(?:lib)?(?:mod_)?php(\d*)[\d.]*\.so", base):
                names |= {"mod_php.c", f"mod_php{m.group(1)}.c", "php_module", f"php{m.group(1)}_module"}
    if mpm:
        names |= {f"mpm_{mpm}_module", f"{mpm}.c", f"mod_mpm_{mpm}.c"}
    return names


def _applies(section: str, loaded: set[str]) -> bool | None:
    """Whether a section's directives apply: False for an <IfModule> of a module not loaded, None for
    a per-request section (they apply to some requests only), True otherwise."""
    word, _, arg = section.partition(" ")
    word = word.lower()
    if word == "ifmodule":
        arg = arg.strip().strip('"').lower()
        negate = arg.startswith("!")
        return (arg.lstrip("!") in loaded) != negate
    if word in SCOPES:
        return None
    return True


def effective(found: list[Directive], loaded: set[str]) -> list[Directive]:
    """The directives that take effect: those in an <IfModule> of a module not loaded dropped, the
    innermost per-request section named in ``scope`` ("" at server level)."""
    kept = []
    for d in found:
        scope, ok = "", True
        for section in filter(None, d.scope.split("\x00")):
            applies = _applies(section, loaded)
            if applies is False:
                ok = False
            elif applies is None:
                scope = f"<{section}>"
        if ok:
            kept.append(Directive(d.name, d.args, d.where, scope))
    return kept


def last(found: list[Directive], *names: str) -> Directive | None:
    """The server-level directive among ``names`` that Apache uses (the last one)."""
    hits = [d for d in found if d.name in names and not d.scope and d.args]
    return hits[-1] if hits else None


# -- Apache's MPM: how many workers can hold a dead connection ----------------------------------------

@dataclass(frozen=True)
class Mpm:
    """Apache's MPM and its limits."""

    name: str | None
    workers: int  # requests served at once (MaxRequestWorkers)
    processes: int  # child processes at most
    threads: int  # threads per child
    why: str  # where the numbers came from
    running: int | None  # children running now (None: Apache is not running)


def _number(d: Directive | None, default: int) -> tuple[int, str]:
    """A directive's whole-number value and where it came from, else ``default``."""
    if d is None:
        return default, "default"
    try:
        return max(0, int(d.args[0])), d.where
    except ValueError:
        return default, f"default ({d.where}: {d.args[0]!r} is not a number)"


def mpm(found: list[Directive], name: str | None, running: int | None) -> Mpm:
    """The MPM's limits as Apache computes them from the configuration (defaults where unset)."""
    limit, at_l = _number(last(found, "serverlimit"), 256 if name == "prefork" else 16)
    if name == "prefork":
        mrw, at_m = _number(last(found, "maxrequestworkers", "maxclients"), 256)
        n = min(mrw, limit)
        return Mpm(name, n, n, 1, f"MaxRequestWorkers {mrw} ({at_m}), ServerLimit {limit} ({at_l})", running)
    tpc, at_t = _number(last(found, "threadsperchild"), 25)
    tpc = max(tpc, 1)
    mrw, at_m = _number(last(found, "maxrequestworkers", "maxclients"), limit * tpc)
    procs = min(limit, math.ceil(mrw / tpc))
    return Mpm(name, min(mrw, procs * tpc), procs, tpc, f"MaxRequestWorkers {mrw} ({at_m}), ServerLimit {limit} "
               f"({at_l}), ThreadsPerChild {tpc} ({at_t})", running)


def mpm_name(version: str, found: list[Directive]) -> str | None:
    """The MPM: ``apache2 -V``'s (``httpd -V``'s) "Server MPM", else the LoadModule of an mpm_*_module."""
    if m := re.search(r"^Server MPM:\s+(\w+)", version, re.M):
        return m.group(1).lower()
    mods = [d.args[0].lower() for d in found if d.name == "loadmodule" and d.args]
    hits = [m.group(1) for x in mods if (m := re.fullmatch(r"mpm_(\w+)_module", x))]
    return hits[-1] if hits else None


@dataclass(frozen=True)
class Proc:
    """A process named apache2 or httpd."""

    pid: int
    ppid: int
    uid: int
    name: str


def processes(text: str) -> list[Proc]:
    """The probe's process table (``pid ppid uid name`` lines; anything else skipped)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and all(p.isdigit() for p in parts[:3]):
            out.append(Proc(int(parts[0]), int(parts[1]), int(parts[2]), parts[3]))
    return out


def children(procs: list[Proc]) -> int | None:
    """How many children root's Apache runs now (None: no Apache runs). Its main process is root's and
    has no Apache for a parent; the web account's own processes cannot pass for it."""
    pids = {p.pid for p in procs}
    main = next((p for p in procs if p.uid == 0 and p.ppid not in pids), None)
    return None if main is None else sum(1 for p in procs if p.ppid == main.pid)


# -- PHP's ini files, as the Apache module loads them ------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """An ini value and where it was set (``where`` empty: PHP's default)."""

    value: str  # as PHP reads it (On -> "1", Off -> "")
    where: str = ""
    text: str = ""  # as written

    def shown(self) -> str:
        """The value as written, and where: ``Off (/etc/php/8.2/apache2/php.ini:1313)``."""
        written = self.text or {"1": "On", "": "Off"}.get(self.value, self.value)
        return f"{written} ({self.where or 'not set: PHP default'})"


_TRUE = {"on", "yes", "true"}
_FALSE = {"off", "no", "false", "none"}


def ini_value(raw: str) -> str:
    """An ini value as PHP reads it: quotes removed, a comment after ``;`` dropped, On/Off -> 1/''."""
    raw = raw.strip()
    if raw.startswith('"'):
        end = raw.find('"', 1)
        return raw[1:end] if end > 0 else raw[1:]
    raw = raw.split(";", 1)[0].strip()
    low = raw.lower()
    return "1" if low in _TRUE else "" if low in _FALSE else raw


def parse_ini(read: Read) -> list[tuple[str, str, str]]:
    """(key, value, file:line) of every assignment PHP's Apache module takes from an ini file; the
    [PATH=] and [HOST=] sections are CGI/FastCGI's and skipped."""
    out = []
    skip = False
    for n, line in enumerate(re.split(r"\r\n|\r|\n", read.text), 1):  # PHP's ini lines end at \r, \n or both
        line = line.strip(" \t")
        if not line or line.startswith(";"):
            continue
        if line.startswith("["):
            skip = bool(re.match(r"\[[ \t]*(path|host)[ \t]*=", line, re.I))
            continue
        key, eq, value = line.partition("=")
        if eq and not skip and key.strip():
            out.append((key.strip().lower(), value.split(";", 1)[0].strip()[:80], f"{read.name}:{n}"))
    return out


@dataclass
class Php:
    """What Apache's PHP loads: its files in order, its settings, the extensions, and what went wrong."""

    module: str | None  # the PHP module's path (libphp8.2.so), None: Apache loads no PHP
    files: list[str] = field(default_factory=list)
    settings: dict[str, Setting] = field(default_factory=dict)
    extensions: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # files not read, files others can write
    per_request: list[str] = field(default_factory=list)  # php_*value in a vhost/directory


def php_module(maps: str, found: list[Directive]) -> str | None:
    """The PHP module Apache runs (from the running server's memory map), else the one it loads."""
    for line in maps.splitlines():
        if re.search(r"/(lib|mod_)php[^/]*\.so$", line.strip()):
            return line.strip()
    loads = [d.args[1] for d in found if d.name == "loadmodule" and len(d.args) >= 2
             and re.search(r"php", d.args[0], re.I)]
    return loads[-1] if loads else None


def compiled_dirs(module: str) -> tuple[str, str]:
    """(PHP_CONFIG_FILE_PATH, PHP_CONFIG_FILE_SCAN_DIR) the distribution builds the module with:
    Debian's /etc/php/<v>/apache2 and its conf.d; RHEL's /etc and /etc/php.d."""
    if m := re.search(r"/usr/lib/apache2/modules/libphp(\d+\.\d+)\.so$", module):
        base = f"/etc/php/{m.group(1)}/apache2"
        return base, f"{base}/conf.d"
    return "/etc", "/etc/php.d"


def _env(env: str, name: str) -> str | None:
    """The value of ``name`` in the running Apache's environment (``NAME=value`` lines), or None."""
    for line in env.splitlines():
        if line.startswith(name + "="):
            return line[len(name) + 1:]
    return None


def ini_files(module: str, env: str, inidir: str | None, reads: dict[str, Read]) -> tuple[str | None, list[str]]:
    """(the php.ini the module loads, the scan directories) as PHP's php_init_config finds them:
    PHPINIDir alone if set, else $PHPRC then the built-in directory; in each, php-apache2handler.ini
    before php.ini; $PHP_INI_SCAN_DIR (":"-separated, an empty entry for the built-in one) over it."""
    base, scan = compiled_dirs(module)
    path = [inidir] if inidir else [p for p in (_env(env, "PHPRC"), base) if p]
    found = None
    for p in path:
        here = [p] if p.endswith(".ini") else [f"{p}/php-apache2handler.ini", f"{p}/php.ini"]
        found = next((x for x in here if x in reads and reads[x].status != "missing"), None)
        if found:
            break
    scan_env = _env(env, "PHP_INI_SCAN_DIR")
    dirs = [s or scan for s in scan_env.split(":")] if scan_env is not None else [scan]
    return found, [d.rstrip("/") for d in dirs if d]


def _scanned(dirs: list[str], reads: dict[str, Read]) -> list[str]:
    """The *.ini files of the scan directories, each directory's sorted as PHP sorts them (bytes)."""
    out: list[str] = []
    for d in dirs:
        names = sorted((p for p in reads if posixpath.dirname(p) == d and p.endswith(".ini")),
                       key=lambda p: p.encode("utf-8", "surrogateescape"))
        out += [p for p in names if p not in out]
    return out


def _file_problem(r: Read) -> str | None:
    """Why a file PHP loads could not be inspected, or who else can change it (None: fine)."""
    why = {"big": "is larger than 1 MiB: not read", "notfile": "is not a regular file: not read",
           "unreadable": "could not be read within 10 s", "oddname": "has a line break in its name: not read"}
    if r.status in why:
        return f"{r.name} {why[r.status]}"
    other = r.writable_by_others
    if r.status == "ok" and other:
        return f"{r.name} can be changed by {other} (owner {r.owner}, mode {r.mode or 0:o}): whoever can write it " \
               "sets PHP's settings; make it root's, not writable by others"
    return None


def php(found: list[Directive], maps: str, env: str, reads: dict[str, Read]) -> Php:
    """Apache's PHP: its files in the order PHP loads them, the last value of every key, the extensions
    loaded, then server-level php_admin_value/php_value (and flags) of Apache's configuration."""
    module = php_module(maps, found)
    if module is None:
        return Php(None)
    inidir = last(found, "phpinidir")
    main, dirs = ini_files(module, env, inidir.args[0] if inidir else None, reads)
    out = Php(module, [*([main] if main else []), *_scanned(dirs, reads)])
    if main is None:
        out.problems.append(f"no php.ini found for {module} (PHP's defaults apply)")
    for path in out.files:
        r = reads[path]
        if problem := _file_problem(r):
            out.problems.append(problem)
        for key, value, where in parse_ini(r) if r.status == "ok" else []:
            if key in ("extension", "zend_extension"):
                out.extensions.add(extension_name(ini_value(value)))
            else:
                out.settings[key] = Setting(ini_value(value), where, value)
    _apache_values(out, found)
    return out


def _apache_values(out: Php, found: list[Directive]) -> None:
    """Apache's php_value/php_flag/php_admin_value/php_admin_flag: at server level they set the value;
    inside a virtual host or directory they apply to some requests only (noted)."""
    for d in found:
        if d.name not in ("php_value", "php_flag", "php_admin_value", "php_admin_flag") or len(d.args) < 2:
            continue
        key, value = d.args[0].lower(), d.args[1][:80]
        if d.scope:
            out.per_request.append(f"{key}={value} in {d.scope} ({d.where})")
        else:
            out.settings[key] = Setting(ini_value(value), d.where, value)


def extension_name(value: str) -> str:
    """``extension=pgsql``, ``pgsql.so``, ``/usr/lib/php/20220829/oci8.so`` -> ``pgsql`` / ``oci8``."""
    base = posixpath.basename(value.strip())
    return re.sub(r"^php_|\.(so|dll)$", "", base).lower()


# -- Findings -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One row of doctor's report: ``ok`` False is a finding (what is wrong, what it costs, the fix)."""

    check: str
    ok: bool
    detail: str


# PHP's defaults (php.net), for keys no file sets.
DEFAULTS = {"oci8.ping_interval": "60", "oci8.events": "", "oci8.persistent_timeout": "-1",
            "oci8.max_persistent": "-1", "pgsql.auto_reset_persistent": "", "pgsql.allow_persistent": "1",
            "pgsql.max_persistent": "-1"}


def setting(p: Php, key: str) -> Setting:
    """The value PHP's Apache module uses for ``key``."""
    return p.settings.get(key) or Setting(DEFAULTS.get(key, ""))


def _int(value: str, default: int) -> int:
    """A number as PHP's ini reads it (its leading digits; none: 0); ``default`` for an unset value."""
    if value == "" and default != 0:
        return default
    m = re.match(r"\s*([+-]?\d{1,18})", value)
    return int(m.group(1)) if m else 0


def _on(value: str) -> bool:
    """Whether PHP reads a boolean ini value as on."""
    return value.strip().lower() not in ("", "0", *_FALSE)


def oci8_findings(p: Php, workers: str) -> list[Finding]:
    """OCI8's persistent connections: is a dead one found before a request uses it?"""
    ping, events = setting(p, "oci8.ping_interval"), setting(p, "oci8.events")
    timeout, most = setting(p, "oci8.persistent_timeout"), setting(p, "oci8.max_persistent")
    n = _int(ping.value, 60)
    fix = "fix: oci8.ping_interval = 0 (a ping before each reuse), in the php.ini above"
    if n < 0:
        row = Finding("oci8.ping_interval", False, f"{ping.shown()}: dead connections are never detected before use: "
                      f"after a DB restart {workers} fail (ORA-03113/ORA-03135) until the chain restarts Apache; {fix}")
    elif n > 0:
        row = Finding("oci8.ping_interval", False, f"{ping.shown()}: a connection used again within {n}s is not "
                      f"checked (on a busy server, every one): after a DB restart {workers} can fail; {fix}")
    else:
        row = Finding("oci8.ping_interval", True, f"{ping.shown()}: every persistent connection is pinged before "
                      "reuse and replaced if dead (one round trip per request)")
    rows = [row, Finding("oci8.events", True, f"{events.shown()}: " + (
        "FAN events on: connections to a failed instance are dropped at once" if _on(events.value) else
        "off: Oracle FAN notices are ignored; with RAC, Data Guard or Oracle Restart set oci8.events = On "
        "so dead connections are dropped when the database goes down"))]
    rows.append(Finding("oci8.persistent_timeout", True, f"{timeout.shown()}: " + (
        "idle persistent connections are kept until the process ends" if _int(timeout.value, -1) < 0 else
        f"a connection idle {timeout.value}s is closed")))
    rows.append(_max_persistent("oci8.max_persistent", most))
    return rows


def _max_persistent(key: str, most: Setting) -> Finding:
    """max_persistent: the sessions each worker may hold, all reopened at once after a DB restart."""
    n = _int(most.value, -1)
    return Finding(key, True, f"{most.shown()}: " + (
        "no limit: each worker may hold any number of sessions, all reopened together after a DB restart; a "
        f"limit ({key} = 1 or 2) bounds the reconnection storm" if n < 0 else
        f"at most {n} per worker: the DB must accept workers x {n} sessions when they reconnect"))


def pgsql_findings(p: Php, workers: str) -> list[Finding]:
    """pgsql's persistent connections: is a dead one reset before a request uses it?"""
    allow, reset = setting(p, "pgsql.allow_persistent"), setting(p, "pgsql.auto_reset_persistent")
    if not _on(allow.value):
        return [Finding("pgsql.allow_persistent", True, f"{allow.shown()}: pg_pconnect opens a new connection per "
                        "request: a DB restart fails only the requests in flight")]
    rows = [Finding("pgsql.allow_persistent", True, f"{allow.shown()}: persistent connections are kept per worker")]
    if _on(reset.value):
        rows.append(Finding("pgsql.auto_reset_persistent", True, f"{reset.shown()}: a broken persistent connection is "
                            "detected (pg_ping) and reopened before use"))
    else:
        rows.append(Finding("pgsql.auto_reset_persistent", False, f"{reset.shown()}: a persistent connection broken by "
                            f"a DB restart is handed to the next request unchecked: {workers} fail until the chain "
                            "restarts Apache; fix: pgsql.auto_reset_persistent = On in the php.ini above"))
    rows.append(_max_persistent("pgsql.max_persistent", setting(p, "pgsql.max_persistent")))
    return rows


def workers_text(m: Mpm) -> str:
    """How many requests can fail after a DB restart: one per worker holding a dead connection."""
    now = f"{m.running} running now" if m.running is not None else "Apache is not running now"
    return f"up to {m.workers} requests (one per worker holding a dead connection; {now})"


# The rows that say a dead persistent connection reaches a request unchecked.
EXPOSED = ("oci8.ping_interval", "pgsql.auto_reset_persistent")


def mpm_finding(m: Mpm, exposed: bool) -> Finding:
    """Apache's MPM and its workers: how many requests a DB restart can fail before the chain's restart
    (one per worker, when PHP's settings let a dead persistent connection reach a request: ``exposed``)."""
    if m.name is None:
        return Finding("apache mpm", False, "cannot tell Apache's MPM (apache2 -V said none): check that Apache "
                       "is installed and its configuration passes apache2 -t")
    kind = "processes" if m.threads == 1 else f"processes x {m.threads} threads"
    head = (f"{m.name}: {m.workers} workers at most ({m.processes} {kind}; {m.why}); "
            f"{m.running if m.running is not None else 'no'} children running now: ")
    if exposed:
        return Finding("apache mpm", True, head + f"after a DB restart up to {m.workers} requests can fail (one per "
                       "worker holding a dead persistent connection) before the chain restarts Apache")
    return Finding("apache mpm", True, head + "no persistent connection reaches a request unchecked (see the PHP "
                   "rows), so a DB restart fails only the requests in flight")


_GRACEFUL = "graceful: each child finishes the request it is serving, then is replaced; the listening sockets stay " \
            "open, so no request in flight is cut and no connection refused"
_HUP = "a restart (SIGHUP): Apache kills its children at once, cutting every request in flight (the sockets stay " \
       "open, new connections wait)"
_STOP = "a stop and a start: every request in flight is cut and new connections are refused until Apache is up " \
        "again"


def restart_kind(command: str) -> tuple[str, str]:
    """What ``web.restart_command`` does to requests in flight: (graceful|hup|stop|unknown, in words)."""
    words = [w for w in _words(command) if w not in ("sudo", "-n", "/usr/bin/sudo", "-k")]
    prog = posixpath.basename(words[0]) if words else ""
    if prog in ("systemctl", "service"):
        args = words[2:] if prog == "service" else [w for w in words[1:] if not w.startswith("-")]
    else:
        args = words[1:]
    verb = args[0] if args else ""
    if prog in ("apachectl", "apache2ctl", "httpd", "apache2") and "/init.d/" not in words[0]:
        kinds = {"graceful": "graceful", "restart": "hup", "stop": "stop", "start": "stop"}
    elif prog in ("systemctl", "service") or "/init.d/" in (words[0] if words else ""):
        kinds = {"reload": "graceful", "graceful": "graceful", "force-reload": "graceful", "restart": "stop",
                 "try-restart": "stop", "reload-or-restart": "graceful", "try-reload-or-restart": "graceful"}
    else:
        kinds = {}
    kind = kinds.get(verb, "unknown")
    return kind, {"graceful": _GRACEFUL, "hup": _HUP, "stop": _STOP}.get(kind, "svrchain cannot tell what it does "
                                                                              "to requests in flight")


def restart_finding(command: str) -> Finding:
    """Is the chain's web restart graceful?"""
    kind, what = restart_kind(command)
    fix = ("; fix: web.restart_command: /usr/sbin/apachectl graceful (or systemctl reload apache2), then "
           "svrchain push-key")
    return Finding("restart command", kind == "graceful", f"{command}: {what}" + ("" if kind == "graceful" else fix))


def php_findings(p: Php, m: Mpm) -> list[Finding]:
    """The PHP rows: which files Apache's PHP loads (and any it could not read), then each driver's."""
    if p.module is None:
        return [Finding("php", True, "Apache loads no PHP module: no PHP persistent connection to go stale")]
    shown = f"{p.files[0]} + {len(p.files) - 1} scanned" if p.files else "no ini file"
    rows = [Finding("php ini", not p.problems, f"{p.module} (Apache's PHP, not the CLI's) loads {shown}" +
                    (f"; {'; '.join(p.problems)}" if p.problems else ""))]
    workers = workers_text(m)
    if "oci8" in p.extensions:
        rows += oci8_findings(p, workers)
    if "pgsql" in p.extensions:
        rows += pgsql_findings(p, workers)
    if not {"oci8", "pgsql"} & p.extensions:
        rows.append(Finding("php drivers", True, "neither oci8 nor pgsql is loaded in Apache's PHP (PDO's "
                            "persistent connections are set in code, not inspected)"))
    if p.per_request:
        rows.append(Finding("php per vhost", True, "also set for some requests only: " + "; ".join(p.per_request[:5])))
    return rows


def _cmd(reads: list[Read], name: str) -> Read | None:
    """The probe's answer of command ``name`` (None: it did not run)."""
    return next((r for r in reads if r.kind == "cmd" and r.name == name), None)


def apache_findings(reads: list[Read]) -> tuple[list[Finding], list[Directive], Mpm]:
    """Apache's rows (its configuration read, its MPM), its effective directives and its MPM."""
    ctl, version, includes = (_cmd(reads, n) for n in ("ctl", "version", "includes"))
    ps = _cmd(reads, "ps")
    running = children(processes(ps.text)) if ps else None
    rows: list[Finding] = []
    if ctl is None:
        rows.append(Finding("apache config", False, "no Apache server program of root's (/usr/sbin/apache2 with "
                            "/etc/apache2/envvars, or /usr/sbin/httpd; none others can write): its configuration "
                            "not read"))
    elif includes is None or includes.status != "0":
        said = (includes.text.strip().splitlines() or ["no output"])[-1][:200] if includes else "not run"
        if includes is not None and includes.status == "124":
            said = f"did not finish within 20s (its last line: {said.strip()}; an included file that blocks, a FIFO?)"
        rows.append(Finding("apache config", False, f"{ctl.text.strip()} -t -D DUMP_INCLUDES failed "
                            f"(exit {includes.status if includes else '?'}): {said}; fix the configuration"))
    confs = [r for r in reads if r.kind == "conf"]
    bad = [p for r in confs if (p := _file_problem(r))]
    if ctl is not None and includes is not None and includes.status == "0":
        detail = f"{len(confs)} files read" + (f"; {'; '.join(bad)}" if bad else "")
        rows.append(Finding("apache config", not bad, detail))
    raw = directives([r for r in confs if r.status == "ok"])
    name = mpm_name(version.text if version else "", raw)
    found = effective(raw, loaded_modules(raw, name))
    m = mpm(found, name, running)
    return rows, found, m


def diagnose(raw: bytes, restart_command: str) -> list[Finding]:
    """Every finding for one web server, from the output of :data:`PROBE` there."""
    reads, whole = frames(raw)
    rows, found, m = apache_findings(reads)
    maps, env = _cmd(reads, "maps"), _cmd(reads, "env")
    files = {r.name: r for r in reads if r.kind == "ini"}
    php_rows = php_findings(php(found, maps.text if maps else "", env.text if env else "", files), m)
    exposed = any(not f.ok and f.check in EXPOSED for f in php_rows)
    rows += [mpm_finding(m, exposed), *php_rows, restart_finding(restart_command)]
    if not whole:
        rows.append(Finding("probe", False, "the host's answer was cut short or garbled: what follows it was not read"))
    return rows
