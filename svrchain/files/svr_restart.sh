#!/bin/bash
#
# svrchain's trigger: after each run of the database becomes ready, every web server restarts its
# web server, over SSH with a key that can do nothing else.
#
# Written by svrchain (fab install-svr-restart). Edit the inventory, not this file.
#
# Installed verbatim as /usr/local/lib/svrchain/<name> (e.g. svr_restart); the init script
# /etc/init.d/<name> and the systemd units only run it. Its settings and the web servers are in
# /etc/svrchain/<name>.conf, rendered from the inventory: read as data (key=value lines), never run
# as shell code, and every value is checked here before anything is done with it.
#
#   start   wait until the database is ready, then restart every web server (each run once)
#   watch   notice every new run of the database and start the trigger for it (the watcher)
#   supervise  run the watcher, and run it again whenever it ends (SysV: its init script runs this)
#   retry   restart the web servers still owed a restart
#   run     print the database's current run ('none' when it does not run)
#   config  print the settings as this script reads them
#   status  print the last run's status
#   stop    nothing (SysV)

set -u
NAME=${0##*/}
# Tests only: the fixed paths below under another root, honoured only when this script does NOT run
# as root. Root's runs (init, systemd, the watcher, an admin's shell, sudo) always use the real
# paths, whatever their environment holds; a user who sets it gets only what that user could do
# anyway: the settings must then be that user's own file, and the key that user's to read.
ROOT=
if [ "$EUID" -ne 0 ]; then
    ROOT=${SVRCHAIN_TRIGGER_ROOT:-}
fi
# Tests only, with that root: SVRCHAIN_TRIGGER_MS=N (1-999) makes each second of the backoff between
# a web server's tries, of the supervisor's wait before it starts the watcher again, and of the
# restart and hook timeouts, last N ms (the log still says the seconds). Ignored without the root,
# so always as root.
MS_PER_SECOND=
if [ -n "$ROOT" ] && [[ ${SVRCHAIN_TRIGGER_MS:-} =~ ^[1-9][0-9]{0,2}$ ]]; then
    MS_PER_SECOND=$SVRCHAIN_TRIGGER_MS
fi
CONF=$ROOT/etc/svrchain/$NAME.conf
STATE_DIR=$ROOT/var/lib/svrchain
STATUS=$STATE_DIR/$NAME.status
# Every run of the database is followed once: the run it was last followed for, and the web
# servers still owed a restart (one file each: "<run> <ready time>"), retried until they answer.
HANDLED=$STATE_DIR/$NAME.run
OWED=$STATE_DIR/$NAME.owed
# The lock and the SSH connections opened while the database starts live in a directory only root
# can write: a local user must not be able to hold the lock (no web server would be restarted) or
# plant a file or socket there.
RUN_DIR=$ROOT/run/svrchain
LOCK=$RUN_DIR/$NAME.lock
CONTROL=$RUN_DIR/$NAME
WATCH_PIDFILE=$RUN_DIR/${NAME}_watch.pid
SUPERVISE_PIDFILE=$RUN_DIR/${NAME}_supervise.pid
# The watcher's tick: "<epoch> <run>" each time it looked at the database (verify reads it: a watcher
# that runs but no longer looks is a gap).
WATCH_TICK=$RUN_DIR/${NAME}_watch.tick
LOG=

# inert TEXT: set SHOWN to TEXT with every byte that is not printable ASCII (a line break, CR, ESC,
# any control character) written as \xNN: what a host or a client says can neither forge a log line
# nor hide one, nor drive the terminal of whoever reads the log.
inert() {
    local s=$1 c LC_ALL=C
    SHOWN=
    while [[ $s =~ ^([[:print:]]*)([^[:print:]])(.*)$ ]]; do
        printf -v c '\\x%02x' "'${BASH_REMATCH[2]}"
        SHOWN+=${BASH_REMATCH[1]}$c
        s=${BASH_REMATCH[3]}
    done
    SHOWN+=$s
}

log() {
    local SHOWN
    inert "$*"
    logger -t "$NAME" -p daemon.notice -- "$SHOWN" 2>/dev/null
    [ -z "$LOG" ] || printf '%(%Y-%m-%dT%H:%M:%S%z)T %s\n' -1 "$SHOWN" >>"$LOG"
}

# refuse WHY: the settings cannot be used; said on stderr and in syslog, nothing is restarted.
refuse() {
    log "REFUSED: $CONF: $*; web servers NOT restarted"
    echo "$NAME: REFUSED: $CONF: $*" >&2
    return 1
}

now() {
    if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s.%N; fi
}

# note HEAD [TAIL]: append "HEAD <the time now> TAIL" to the run's status (bash 5's clock: no process).
note() {
    local t=${EPOCHREALTIME:-}
    [ -n "$t" ] || t=$(date +%s.%N)
    printf '%s %s%s\n' "$1" "${t/,/.}" "${2:+ $2}" >>"$RUN_STATUS"
}

# finish RESULT: the run's last status line ("finished <time> RESULT"), and its status put in place
# (what restart-chain, verify and the bench read).
finish() {
    note finished "$1"
    mv -f "$RUN_STATUS" "$STATUS"
}

# --- The settings -------------------------------------------------------------------------------

# matches VALUE REGEX: VALUE is entirely REGEX, read byte by byte (C locale).
matches() {
    local LC_ALL=C
    [[ $1 =~ $2 ]]
}

# What each kind of value may be: as the inventory checks it (defence in depth).
is_path() { matches "$1" '^/[A-Za-z0-9_./@+-]*$' && [[ "$1/" != */../* ]]; }
is_count() { matches "$1" '^[1-9][0-9]{0,5}$'; }
is_seconds() { matches "$1" '^[0-9]{1,4}(\.[0-9]{1,9})?$' && matches "$1" '[1-9]'; }
# One shell command line (run by sh) or regex: not blank, no control character.
is_line() {
    local LC_ALL=C
    [[ $1 == *[![:space:]]* && $1 != *[[:cntrl:]]* ]]
}
# A web server: "name address port user".
is_web() {
    local name address port user extra
    read -r name address port user extra <<<"$1"
    [ "$1" = "$name $address $port $user" ] && [ -z "$extra" ] &&
        matches "$name" '^[A-Za-z0-9][A-Za-z0-9_.-]*$' &&
        matches "$address" '^[A-Za-z0-9:][A-Za-z0-9.:-]*$' &&
        matches "$port" '^[1-9][0-9]{0,4}$' && [ "$port" -le 65535 ] &&
        matches "$user" '^[a-z_][a-z0-9_-]{0,31}$'
}

# setting KEY VALUE: take one setting, checked; 1 when the key is unknown or the value invalid.
setting() {
    case $1 in
        key | known_hosts | log | run_executable | role_command) is_path "$2" ;;
        run_user) matches "$2" '^[a-z_][a-z0-9_-]{0,31}$' ;;
        ready_command | run_command | run_process | on_failure | on_success) is_line "$2" ;;
        ready_timeout | ready_successes | connect_timeout | retries | restart_timeout | bound | max_parallel | \
            hook_timeout)
            is_count "$2" ;;
        ready_interval | run_interval) is_seconds "$2" ;;
        web) is_web "$2" && [ -z "${WEB_NAMES[${2%% *}]:-}" ] || return 1
            WEB_NAMES[${2%% *}]=1
            WEB_SERVERS+=("$2")
            return 0 ;;
        *) return 1 ;;
    esac || return 1
    [ -z "${SETTINGS[$1]+set}" ] || return 1  # each setting once
    SETTINGS[$1]=$2
}

# The settings file must be root's own (the running user's, in tests), a regular file no one else
# can write, in a directory no one else can write.
config_file_ok() {
    local dir=${CONF%/*} f d
    f=$(stat -c '%u %a %F' -- "$CONF" 2>/dev/null) || { refuse "missing or unreadable"; return 1; }
    d=$(stat -L -c '%u %a' -- "$dir" 2>/dev/null)
    if [ -L "$CONF" ] || [ "${f#* * }" != "regular file" ] || { [ "${f%% *}" != 0 ] && [ "${f%% *}" != "$EUID" ]; }; then
        refuse "not a regular file of root's"
    elif [ "${f#* }" != "600 regular file" ] && [ "${f#* }" != "644 regular file" ]; then
        refuse "mode ${f#* }; want 600 or 644"
    elif [ -z "$d" ] || { [ "${d%% *}" != 0 ] && [ "${d%% *}" != "$EUID" ]; } || ((8#${d##* } & 8#022)); then
        refuse "$dir may be written by others"
    fi
}

declare -A SETTINGS WEB_NAMES
WEB_SERVERS=()  # "name address port user", one per web server

# read_config: every setting from CONF, checked; 1 (refused, logged) when anything is amiss.
read_config() {
    local line n=0 k
    config_file_ok || return 1
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case $line in '' | '#'*) continue ;; esac
        if [[ $line != *=* ]] || ! setting "${line%%=*}" "${line#*=}"; then
            refuse "line $n: $(printf '%q' "${line:0:200}") is not a valid setting"
            return 1
        fi
    done <"$CONF" || { refuse "cannot read it"; return 1; }
    for k in key known_hosts log ready_command ready_timeout ready_interval ready_successes connect_timeout \
        retries restart_timeout bound run_interval; do
        [ -n "${SETTINGS[$k]+set}" ] || { refuse "no $k"; return 1; }
    done
    [ "${SETTINGS[run_command]+1}${SETTINGS[run_process]+1}" = 1 ] || { refuse "not exactly one of run_command, run_process"; return 1; }
    run_owner || return 1
    [ "${#WEB_SERVERS[@]}" -gt 0 ] || { refuse "no web server"; return 1; }
    KEY=${SETTINGS[key]} KNOWN_HOSTS=${SETTINGS[known_hosts]} LOG=${SETTINGS[log]}
    READY_COMMAND=${SETTINGS[ready_command]} READY_TIMEOUT=${SETTINGS[ready_timeout]}
    READY_INTERVAL=${SETTINGS[ready_interval]} READY_SUCCESSES=${SETTINGS[ready_successes]}
    CONNECT_TIMEOUT=${SETTINGS[connect_timeout]} RETRIES=${SETTINGS[retries]}
    RESTART_TIMEOUT=${SETTINGS[restart_timeout]} BOUND=${SETTINGS[bound]} WATCH_INTERVAL=${SETTINGS[run_interval]}
    RUN_COMMAND=${SETTINGS[run_command]:-} RUN_PROCESS=${SETTINGS[run_process]:-}
    RUN_USER=${SETTINGS[run_user]:-} RUN_EXECUTABLE=${SETTINGS[run_executable]:-}
    # A primary/standby pair's DB server (optional): the role check, run before restarting anything.
    ROLE_COMMAND=${SETTINGS[role_command]:-}
    # At most this many web servers connected to, or restarted, at once (optional: 32).
    MAX_PARALLEL=${SETTINGS[max_parallel]:-32}
    # The on-call hooks (optional): run after a run that failed, or succeeded, within HOOK_TIMEOUT.
    ON_FAILURE=${SETTINGS[on_failure]:-} ON_SUCCESS=${SETTINGS[on_success]:-} HOOK_TIMEOUT=${SETTINGS[hook_timeout]:-30}
    # What timeout(1) is given: the same seconds (the tests' shorter ones, as the backoff's).
    local WAIT
    seconds "$RESTART_TIMEOUT"
    RESTART_LIMIT=$WAIT
    seconds "$HOOK_TIMEOUT"
    HOOK_LIMIT=$WAIT
}

# run_owner: with run_process, the database's owner (run_user) is required: a process of any other
# account is never a run of the database.
run_owner() {
    if [ -z "${SETTINGS[run_process]+set}" ]; then
        [ -z "${SETTINGS[run_user]+set}${SETTINGS[run_executable]+set}" ] ||
            { refuse "run_user and run_executable go with run_process only"; return 1; }
        return 0
    fi
    [ -n "${SETTINGS[run_user]+set}" ] || { refuse "no run_user (the account the database's main process runs as)"; return 1; }
}

# The settings as read, in the file's own form (the config verb).
show_config() {
    local k w
    for k in key known_hosts log ready_command ready_timeout ready_interval ready_successes connect_timeout \
        retries restart_timeout max_parallel bound run_interval run_command run_process run_user run_executable \
        role_command hook_timeout on_failure on_success; do
        [ -z "${SETTINGS[$k]+set}" ] || printf '%s=%s\n' "$k" "${SETTINGS[$k]}"
    done
    for w in "${WEB_SERVERS[@]}"; do
        printf 'web=%s\n' "$w"
    done
}

# --- The database: ready, and its run -----------------------------------------------------------

# The readiness check, run as restart-chain runs it: the inventory's command line read by sh on its
# stdin, never on a command line (it may hold a password: ps shows every command line to every account).
db_ready() {
    printf '%s\n' "$READY_COMMAND" | sh >/dev/null 2>&1
}

# Ready once the check succeeds READY_SUCCESSES times in a row, within READY_TIMEOUT (1 when not);
# with a role check, and the primary open read-write (3 as soon as the role check says it is a standby:
# asked once the database is ready, and at most once a second while it is not).
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT)) ok=0 asked=-1
    while :; do
        if db_ready; then ok=$((ok + 1)); else ok=0; fi
        if [ -n "$ROLE_COMMAND" ] && { [ "$ok" -ge "$READY_SUCCESSES" ] || [ "$SECONDS" -gt "$asked" ]; }; then
            asked=$SECONDS
            role
            case $? in
                1) return 3 ;;
                2) ok=0 ;;  # not open read-write yet (or it cannot tell): not ready
            esac
        fi
        [ "$ok" -lt "$READY_SUCCESSES" ] || return 0
        [ "$SECONDS" -lt "$deadline" ] || return 1
        nap "$READY_INTERVAL"
    done
}

# role: what the role check (db.role) says now: 0 the primary, open read-write (also when there is no
# role check: not a pair), 1 a standby, 2 it cannot tell. The check is svrchain's own script of root's
# (it asks the database as its owner); its output is ignored.
STANDBY_MARK='~standby'  # a run followed as a standby's: "<run>~standby" (its promotion is a new run)
role() {
    [ -n "$ROLE_COMMAND" ] || return 0
    timeout 60 "$ROLE_COMMAND" </dev/null >/dev/null 2>&1 9>&-
    case $? in
        0) return 0 ;;
        1) return 1 ;;
        *) return 2 ;;
    esac
}

# proc_start PID: set the caller's START to the process's start time (clock ticks since boot); fails
# if it is gone. (No process: the watcher runs it every interval.)
proc_start() {
    local st
    START=
    read -r st 2>/dev/null </proc/"$1"/stat || return 1
    st=${st##*) }
    # shellcheck disable=SC2086  # the fields of /proc/PID/stat after the command name, on purpose
    set -- $st
    START=${20}
}

# owner_uid: RUN_UID, the uid of the database's owner (looked up once); 1 (said once) when run_user is
# no account of this host: then no process at all is the database's run.
RUN_UID=
OWNER_SAID=
owner_uid() {
    [ -z "$RUN_UID" ] || return 0
    if ! RUN_UID=$(id -u -- "$RUN_USER" 2>/dev/null) || ! matches "$RUN_UID" '^[0-9]+$'; then
        RUN_UID=''
        [ -n "$OWNER_SAID" ] || log "run_user $RUN_USER is no account of this host: no process is the database's run; fix db.run.user"
        OWNER_SAID=1
        return 1
    fi
}

# owned PID: 0 when the process runs as the database's owner (its real and effective uid are RUN_UID).
owned() {
    local key real effective _
    while read -r key real effective _; do
        [ "$key" != Uid: ] || { [ "$real" = "$RUN_UID" ] && [ "$effective" = "$RUN_UID" ]; return; }
    done 2>/dev/null </proc/"$1"/status
    return 1
}

# the_executable PID: 0 when the process runs db.run.executable (when the inventory names one; a
# binary replaced on disk since it started shows as "<path> (deleted)").
the_executable() {
    local exe
    [ -n "$RUN_EXECUTABLE" ] || return 0
    exe=$(readlink -- "/proc/$1/exe" 2>/dev/null) || return 1
    [ "$exe" = "$RUN_EXECUTABLE" ] || [ "$exe" = "$RUN_EXECUTABLE (deleted)" ]
}

# run_id: set RUN to the identity of the database's current run ('' while it does not run). It
# changes only when the database really restarted, however that happened: what run_command prints,
# or the main process (run_process): the oldest process of the database's owner (run_user) whose
# command line matches and which runs run_executable, as "<uid>:<pid>.<start time>". A process of
# any other account is never even considered. (/proc is scanned only when the run's process is gone.)
RUN_PID=
RUN=
run_id() {
    local pid oldest='' START
    if [ -n "$RUN_COMMAND" ]; then
        RUN=$(printf '%s\n' "$RUN_COMMAND" | sh 2>/dev/null)  # (stdin: as db_ready)
        RUN=${RUN%%$'\n'*}
        return 0
    fi
    owner_uid || { RUN='' RUN_PID=''; return 0; }
    if [ -n "$RUN_PID" ] && proc_start "$RUN_PID" && [ "$RUN" = "$RUN_UID:$RUN_PID.$START" ] && owned "$RUN_PID"; then
        return 0
    fi
    RUN='' RUN_PID=''
    for pid in $(pgrep -u "$RUN_UID" -f -- "$RUN_PROCESS" 2>/dev/null); do
        { owned "$pid" && the_executable "$pid" && proc_start "$pid"; } || continue
        if [ -z "$oldest" ] || [ "$START" -lt "$oldest" ]; then
            oldest=$START RUN_PID=$pid
        fi
    done
    [ -z "$RUN_PID" ] || RUN="$RUN_UID:$RUN_PID.$oldest"
    return 0
}

handled_run() {
    local run _
    read -r run _ 2>/dev/null <"$HANDLED" || run=
    echo "$run"
}

# write_file FILE TEXT: replace FILE atomically (root's own state directory).
write_file() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX") && printf '%s\n' "$2" >"$tmp" && mv -f "$tmp" "$1"
}

# --- SSH to the web servers ---------------------------------------------------------------------

# ssh_setup: the options of every connection this key makes (also rotate-key's proof and verify
# --attacks; svrchain.render.ssh_options): -F /dev/null, so no ssh_config of root's or the system's
# can change what runs or where. The handshake's CPU matters when every web server is restarted at
# once: curve25519 is strong for this connection (it carries no secret, only the word "restart")
# and several times cheaper than OpenSSH 9's post-quantum default. Used where this OpenSSH has it.
ssh_setup() {
    SSH_OPTIONS=(-F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none
        -o GSSAPIAuthentication=no -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$KNOWN_HOSTS"
        -o GlobalKnownHostsFile=/dev/null -o "ConnectTimeout=$CONNECT_TIMEOUT")
    SSH_OPTIONS+=(-o ServerAliveInterval=5 -o ServerAliveCountMax=2 -o LogLevel=ERROR)
    if ssh -Q kex 2>/dev/null | grep -qx curve25519-sha256; then
        SSH_OPTIONS+=(-o "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org")
    fi
}

# ssh_to NAME ADDRESS PORT USER: set the caller's SSH (the command, with the restricted key, through
# the connection opened in advance when there is one, else directly) and DEST for one web server.
# (The caller declares both local: they are its own, not globals.)
ssh_to() {
    SSH=(ssh -n -T -i "$KEY" -p "$3" -S "$CONTROL/$1" "${SSH_OPTIONS[@]}")
    DEST="$4@$2"
}

# seconds N: set the caller's WAIT to N seconds (N of the tests' shorter seconds, SVRCHAIN_TRIGGER_MS).
seconds() {
    WAIT=$1
    [ -z "$MS_PER_SECOND" ] || printf -v WAIT '%d.%03d' $(($1 * MS_PER_SECOND / 1000)) $(($1 * MS_PER_SECOND % 1000))
}

# A sleep without a process: read from a pipe nobody writes to, with a timeout (the waits below
# run once per web server; a fork each would cost the DB server's CPU when it is busiest).
# Where /dev/fd is missing (process substitution needs it), a plain sleep: never a busy loop.
nap() {
    if [ -z "${NAP_FD:-}" ]; then
        exec {NAP_FD}<> <(:) || NAP_FD=none
    fi 2>/dev/null
    if [ "$NAP_FD" = none ]; then
        sleep "$1"
    else
        read -r -t "$1" -u "$NAP_FD" _ || :
    fi
}

# webs: every web server's entry, one a line, in inventory order (for bounded).
webs() {
    printf '%s\n' "${WEB_SERVERS[@]}"
}

# bounded LIMIT FUNC [ARG...]: run FUNC NAME ADDRESS PORT USER [ARG...] for each web server entry on
# stdin, in order, at most LIMIT at once; return when all are done. Run it in a subshell of its own
# (a pipe's end is one), so that the jobs it waits for are only its own.
bounded() {
    local limit=$1 fn=$2 w running=0 pids=()
    shift 2
    while IFS= read -r w; do
        [ -n "$w" ] || continue
        if [ "$running" -ge "$limit" ]; then
            if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 403)); then
                wait -n
            else
                wait "${pids[0]}"  # bash before 4.3: the oldest job frees the slot
                pids=("${pids[@]:1}")
            fi
            running=$((running - 1))
        fi
        # shellcheck disable=SC2086  # the entry is four words on purpose
        "$fn" $w "$@" </dev/null &
        pids+=($!)
        running=$((running + 1))
    done
    wait
}

# connect_one NAME ADDRESS PORT USER: open the connection to one web server (authenticated, no
# command yet) and leave a mark that it was tried, whatever came of it. (--foreground: in the
# connector's process group, so that ending the group ends it too.)
connect_one() {
    local SSH DEST
    ssh_to "$@"
    timeout --foreground $((CONNECT_TIMEOUT + 5)) "${SSH[@]}" -f -N -o ControlMaster=yes "$DEST" >/dev/null 2>&1
    : >"$CONTROL/$1.tried"
}

# While the database starts, open one connection per web server (at most MAX_PARALLEL handshakes at
# once), so that the restarts go out the moment it is ready. Failures here only cost that head start.
# The connector is this script's "connect" verb in a process group of its own, so that the end of
# the run ends it and every connection it is still opening. (9>&-: the connections, which outlive
# this run's lock, must not hold it.)
CONNECTOR=
connect_all() {
    [ -d "$CONTROL" ] || mkdir -m 700 "$CONTROL"
    rm -f "$CONTROL"/*.tried "$CONTROL"/*.why
    setsid "$0" connect "$RUN_STATUS" </dev/null >/dev/null 2>&1 9>&- &
    CONNECTOR=$!
}

# connector STATUS: the connect verb; when the last connection was tried goes to the run's status
# (the connect phase).
connector() {
    RUN_STATUS=$1
    ssh_setup  # the same pinned options as every connection of the key
    webs | bounded "$MAX_PARALLEL" connect_one
    [ ! -e "$RUN_STATUS" ] || note connected
}

# Wait for the connection to NAME to have been tried (the connections are opened in the order the
# restarts go out), rather than open a second one beside it.
await_connection() {
    [ -n "$CONNECTOR" ] || return 0
    while [ ! -e "$CONTROL/$1.tried" ] && kill -0 "$CONNECTOR" 2>/dev/null; do
        nap 0.01
    done
}

# disconnect_one NAME ADDRESS PORT USER: tell the connection opened to NAME, if any, to exit.
disconnect_one() {
    local SSH DEST
    [ -e "$CONTROL/$1" ] || return 0
    ssh_to "$@"
    "${SSH[@]}" -O exit "$DEST" >/dev/null 2>&1
    return 0
}

disconnect_all() {
    # First the connector and every connection it is still opening (its process group), then each
    # open connection told to exit, then any left: no process of this run outlives it.
    [ -z "$CONNECTOR" ] || kill -TERM -- "-$CONNECTOR" 2>/dev/null
    webs | bounded "$MAX_PARALLEL" disconnect_one 9>&-
    pkill -f -- "-S $CONTROL/" 2>/dev/null
    rm -f "$CONTROL"/*.tried "$CONTROL"/*.why
    return 0
}

# restart_one NAME ADDRESS PORT USER READY: one web server, with retries and backoff. Before a retry
# it asks the gate: a restart that succeeded after READY but whose answer was lost is not repeated.
restart_one() {
    local name=$1 address=$2 attempt=1 delay=1 out rc SSH DEST WAIT
    ssh_to "$@"
    await_connection "$name"
    while :; do
        out=$(timeout "$RESTART_LIMIT" "${SSH[@]}" -o ControlMaster=no "$DEST" restart 2>&1 >/dev/null 9>&-)
        rc=$?
        if [ "$rc" -ne 0 ] && fresh_since "$@"; then
            log "$name ($address): its answer was lost (exit $rc), but its gate restarted it after the database was ready"
            rc=0
        fi
        if [ "$rc" -eq 0 ]; then
            note "web $name ok"
            log "$name ($address): web server restarted"
            return 0
        fi
        case "$out" in
            *"Host key verification failed"* | *"HOST IDENTIFICATION HAS CHANGED"*)
                log "$name ($address): REFUSED: its host key is not the one pinned in $KNOWN_HOSTS; not retrying"
                note "web $name hostkey"
                why "$name" "its host key is not the one pinned in $KNOWN_HOSTS"
                return 1
                ;;
        esac
        if [ "$attempt" -ge "$RETRIES" ]; then
            log "$name ($address): FAILED after $attempt attempts (exit $rc): ${out//$'\n'/ }"
            note "web $name failed"
            why "$name" "no restart after $attempt attempts (exit $rc): ${out//$'\n'/ }"
            return 1
        fi
        log "$name ($address): attempt $attempt failed (exit $rc), retrying in ${delay}s"
        seconds "$delay"
        nap "$WAIT"
        attempt=$((attempt + 1))
        delay=$((delay * 2))
    done
}

# fresh_since NAME ADDRESS PORT USER READY: 0 when the web server's web server was restarted (with
# success), or the host booted, after READY (then nothing is owed), 1 when not, 2 when it does not
# answer: from the gate's "status".
fresh_since() {
    local out SSH DEST
    ssh_to "$1" "$2" "$3" "$4"
    out=$(timeout "$RESTART_LIMIT" "${SSH[@]}" -o ControlMaster=no "$DEST" status 2>/dev/null 9>&-) || return 2
    printf '%s\n' "$out" | awk -v r="$5" '
        /^last restart: [0-9.]+, exit 0$/ { sub(/,.*/, "", $3); if ($3 + 0 >= r + 0) fresh = 1 }
        /^booted: [0-9.]+$/ { if ($2 + 0 >= r + 0) fresh = 1 }
        END { exit !fresh }'
}

# --- The on-call hooks --------------------------------------------------------------------------

# why NAME TEXT: why NAME was not restarted in this run, for the on_failure hook (a file in the run's
# own directory; none outside a run).
why() {
    [ "$RUN_STATUS" = /dev/null ] || [ ! -d "$CONTROL" ] || printf '%s\n' "${2:0:300}" >"$CONTROL/$1.why" 2>/dev/null
    return 0
}

# restarted STATUS: the names of the web servers STATUS (a run's) says were restarted, one a line.
restarted() {
    awk '$1 == "web" && $3 == "ok" {print $2}' "$1"
}

# not_restarted STATUS: the web servers the run did not restart, by name, in inventory order, each
# with why ("name<TAB>why" lines).
not_restarted() {
    local w name reason ok
    ok=" $(restarted "$1" | tr '\n' ' ')"
    for w in "${WEB_SERVERS[@]}"; do
        name=${w%% *}
        [[ $ok != *" $name "* ]] || continue
        reason=
        read -r reason 2>/dev/null <"$CONTROL/$name.why"
        printf '%s\t%s\n' "$name" "${reason:-no result}"
    done
}

# hook EVENT RESULT FAILED REASONS: run the inventory's on_failure (EVENT failure) or on_success
# (success) command line on this host, as root, with the run in SVRCHAIN_* environment variables,
# at most HOOK_TIMEOUT seconds (then stopped, its whole process group, and killed 5 s later). The
# line reaches sh in the environment, not in its arguments (ps shows no webhook address of the
# line itself). Its output's start and its exit are logged; it never changes the run's result.
hook() {
    local event=$1 cmd=$ON_SUCCESS out rc text
    [ "$event" = success ] || cmd=$ON_FAILURE
    [ -n "$cmd" ] || return 0
    out=$(mktemp "$STATE_DIR/$NAME.hook.XXXXXX" 2>/dev/null) || out=/dev/null
    (
        export SVRCHAIN_LINE=$cmd SVRCHAIN_EVENT=$event SVRCHAIN_RESULT=$2 SVRCHAIN_FAILED=$3 SVRCHAIN_REASONS=$4 \
            SVRCHAIN_RUN=${RUN:-unknown} SVRCHAIN_TRIGGER=$NAME SVRCHAIN_HOST=${HOSTNAME:-} \
            SVRCHAIN_WEB_COUNT=${#WEB_SERVERS[@]}
        # shellcheck disable=SC2016  # expanded by that sh, from its environment
        exec timeout -k 5 "$HOOK_LIMIT" sh -c 'c=$SVRCHAIN_LINE; unset SVRCHAIN_LINE; eval "$c"'
    ) </dev/null >"$out" 2>&1 9>&-
    rc=$?
    text=$(head -c 300 "$out" 2>/dev/null | LC_ALL=C tr -c '[:print:]' ' ')
    [ "$out" = /dev/null ] || rm -f "$out"
    case $rc in
        0) log "on_$event: done (exit 0)" ;;
        124 | 137) log "on_$event: FAILED: stopped after ${HOOK_TIMEOUT}s (hook_timeout)${text:+; its output: $text}" ;;
        *) log "on_$event: FAILED (exit $rc)${text:+; its output: $text}" ;;
    esac
    return 0
}

# not_ready_hook: on_failure when the database never became ready (no web server was restarted).
not_ready_hook() {
    local w names=
    for w in "${WEB_SERVERS[@]}"; do
        names+="${names:+ }${w%% *}"
    done
    hook failure notready "$names" "the database was not ready after ${READY_TIMEOUT}s: no web server restarted"
}

# --- A run --------------------------------------------------------------------------------------

# RUN_DIR must be a real directory of root's (the running user's, in tests) that no one else can
# write; made here when missing.
run_dir_ok() {
    local perm
    [ -e "$RUN_DIR" ] || [ -L "$RUN_DIR" ] || mkdir -m 700 "$RUN_DIR" 2>/dev/null
    perm=$(stat -c '%u %a' "$RUN_DIR" 2>/dev/null)
    if [ -L "$RUN_DIR" ] || [ ! -d "$RUN_DIR" ] || [ "${perm%% *}" != "$EUID" ] || ((8#${perm##* } & 8#022)); then
        log "REFUSED: $RUN_DIR is not a directory of root's that only root can write; web servers NOT restarted"
        return 1
    fi
}

# lock FLOCK-OPTION...: hold the run lock (fd 9): 0 when held, 1 when another run holds it, 2 when
# it cannot be opened.
lock() {
    if ! exec 9>"$LOCK"; then
        log "cannot open the lock $LOCK; web servers NOT restarted"
        return 2
    fi
    flock "$@" 9 || return 1
}

# restart_all READY: every web server (each writes its result to RUN_STATUS); 0 when each was
# restarted. Those whose connection is open already (no handshake to make) all at once, up to
# 8 x MAX_PARALLEL; the others (their connection still being opened, or none), at most MAX_PARALLEL
# at once. Every web server not restarted is owed a restart (for this run): the watcher restarts it
# as soon as it answers.
restart_all() {
    local left name why failed='' reasons='' n=0 w open=() later=()
    for w in "${WEB_SERVERS[@]}"; do
        if [ -e "$CONTROL/${w%% *}" ]; then open+=("$w"); else later+=("$w"); fi
    done
    (
        [ "${#open[@]}" -eq 0 ] || printf '%s\n' "${open[@]}" | bounded $((8 * MAX_PARALLEL)) restart_one "$1" &
        [ "${#later[@]}" -eq 0 ] || printf '%s\n' "${later[@]}" | bounded "$MAX_PARALLEL" restart_one "$1" &
        wait
    ) 9>&-
    left=$(not_restarted "$RUN_STATUS")
    rm -f "$OWED"/* "$CONTROL"/*.wait  # this run tried every web server: owed marks and backoffs start over
    while IFS=$'\t' read -r name why; do
        [ -n "$name" ] || continue
        write_file "$OWED/$name" "${RUN:-unknown} $1"
        n=$((n + 1)) failed+="${failed:+ }$name" reasons+="${reasons:+; }$name: $why"
    done <<<"$left"
    write_file "$HANDLED" "${RUN:-unknown} $1"
    if [ -z "$failed" ]; then
        log "all ${#WEB_SERVERS[@]} web server(s) restarted"
        finish ok
        hook success ok "" ""
        return 0
    fi
    log "$n of ${#WEB_SERVERS[@]} web server(s) NOT restarted: owed a restart, retried as soon as they answer"
    finish failed
    hook failure failed "$failed" "$reasons"
    return 1
}

# revive_watcher: each start of the database (the service's) also starts a SysV host's watcher when
# it does not run (its supervisor ended too); systemd restarts it by itself.
revive_watcher() {
    local init=/etc/init.d/${NAME}_watch
    if [ "$EUID" -ne 0 ] || [ -d /run/systemd/system ] || [ ! -x "$init" ] || "$init" status >/dev/null 2>&1; then
        return 0
    fi
    log "the watcher was not running: starting it ($init start)"
    "$init" start </dev/null >/dev/null 2>&1 9>&-
}

# start: follow the database's current run (the status file: svrchain.trigger_status reads it).
start() {
    mkdir -p "$STATE_DIR" "$OWED"
    revive_watcher
    run_dir_ok || return 1
    # At most one run at a time: another one ends within the bound.
    lock -w "$BOUND"
    case $? in
        1) log "another run is still going; giving up"; return 1 ;;
        2) return 1 ;;
    esac
    rm -f "$STATUS".??????  # the status of a run that died (a power cut) before it finished
    RUN_STATUS=$(mktemp "$STATUS.XXXXXX")
    note started
    log "database (re)started: waiting up to ${READY_TIMEOUT}s for it to be ready"
    ssh_setup
    trap disconnect_all EXIT
    connect_all
    wait_ready
    case $? in
        1)
            log "database not ready after ${READY_TIMEOUT}s: web servers NOT restarted"
            finish notready
            not_ready_hook
            return 1 ;;
        3) followed_as_standby; return 0 ;;
    esac
    local ready_at
    ready_at=$(now)
    run_id
    if [ -n "$RUN" ] && [ "$RUN" = "$(handled_run)" ]; then
        # The service's own start and the watcher both notice a restart: one of them follows it.
        log "database ready: its run $RUN was already followed; nothing to do"
        rm -f "$RUN_STATUS"
        return 0
    fi
    [ -n "$RUN" ] || log "cannot tell the database's run (db.run matches no process): restarting anyway"
    echo "ready $ready_at" >>"$RUN_STATUS"
    echo "run ${RUN:-unknown}" >>"$RUN_STATUS"
    log "database ready (run ${RUN:-unknown}): restarting ${#WEB_SERVERS[@]} web server(s)"
    restart_all "$ready_at"
}

# followed_as_standby: the database's run is a standby's (the role check said so): nothing to restart.
# It is noted as followed, as a standby's ("<run>~standby"): the watcher then follows its promotion.
# Its status says "finished ... standby" (restart-chain reports it; the same run seen again writes none).
followed_as_standby() {
    run_id
    if [ -n "$RUN" ] && [ "$(handled_run)" = "$RUN$STANDBY_MARK" ]; then
        rm -f "$RUN_STATUS"
        return 0
    fi
    log "database up as a standby (run ${RUN:-unknown}; role check $ROLE_COMMAND): web servers NOT restarted; its promotion will be followed"
    [ -z "$RUN" ] || write_file "$HANDLED" "$RUN$STANDBY_MARK $(now)"
    echo "run ${RUN:-unknown}" >>"$RUN_STATUS"
    finish standby
}

# answers ADDRESS PORT: 0 when the port accepts a TCP connection within CONNECT_TIMEOUT (bash's own
# /dev/tcp: no SSH handshake, nothing sent; closed at once).
answers() {
    # shellcheck disable=SC2016  # expanded by that bash, from its arguments
    timeout "$CONNECT_TIMEOUT" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" </dev/null >/dev/null 2>&1 9>&-
}

# probe_owed NAME ADDRESS PORT USER: for an owed web server, leave the mark $CONTROL/NAME.up when its
# port answers and the backoff of its SSH failures ($CONTROL/NAME.wait: "<not before> <next wait>")
# allows a try now. A port that does not answer clears that backoff: the first answer is tried at once.
probe_owed() {
    local wait=$CONTROL/$1.wait not_before=0 _
    [ -f "$OWED/$1" ] || return 0
    if ! answers "$2" "$3"; then
        [ ! -e "$wait" ] || rm -f "$wait"
        return 0
    fi
    read -r not_before _ 2>/dev/null <"$wait"
    [[ $not_before =~ ^[0-9]+$ ]] || not_before=0
    [ "${EPOCHSECONDS:-$(date +%s)}" -lt "$not_before" ] || : >"$CONTROL/$1.up"
}

# retry_owed NAME ADDRESS PORT USER: restart one owed web server whose port answers, over one
# connection (its gate's status first: one restarted or booted since is owed nothing). On failure,
# its next SSH try waits, doubling from 5 s to 5 minutes while its port answers.
retry_owed() {
    local name=$1 run ready done=
    [ -e "$CONTROL/$name.up" ] || return 0
    rm -f "$CONTROL/$name.up"
    read -r run ready <"$OWED/$name" 2>/dev/null || return 0
    log "$name: answers again (port $3): retrying the restart owed since the database's run $run"
    connect_one "$@"
    fresh_since "$@" "$ready"
    case $? in
        0) done="restarted or booted after the database's run $run was ready: no restart owed" ;;
        1) ! restart_one "$@" "$ready" || done="the restart owed since the database's run $run is done" ;;
        *) log "$name: its port answers, but not its gate" ;;
    esac
    disconnect_one "$@"
    if [ -n "$done" ]; then
        log "$name: $done"
        rm -f "$OWED/$name" "$CONTROL/$name.wait"
    else
        back_off "$name"
    fi
}

# back_off NAME: NAME's port answers but its restart failed: the next SSH try waits ("<not before>
# <next wait>" in $CONTROL/NAME.wait), 5 s, then twice as long each time, up to 5 minutes.
back_off() {
    local wait=5 _
    read -r _ wait 2>/dev/null <"$CONTROL/$1.wait"
    [[ $wait =~ ^[0-9]+$ ]] || wait=5
    log "$1: next try in ${wait}s, or as soon as it answers again after not answering"
    printf '%s %s\n' "$((${EPOCHSECONDS:-$(date +%s)} + wait))" "$((wait < 150 ? wait * 2 : 300))" >"$CONTROL/$1.wait"
}

# retry: restart the web servers still owed one whose port answers (a new run of the database covers
# them too). The probes take no lock: only what answers waits for a run that is going.
retry() {
    local f
    run_dir_ok || return 1
    [ -d "$CONTROL" ] || mkdir -m 700 "$CONTROL"
    for f in "$OWED"/*; do  # owed by a web server that is no longer one of this chain: nothing
        [ ! -f "$f" ] || [ -n "${WEB_NAMES[${f##*/}]:-}" ] || rm -f "$f" "$CONTROL/${f##*/}.wait"
    done
    webs | bounded "$MAX_PARALLEL" probe_owed 9>&-
    for f in "$CONTROL"/*.up; do
        [ -e "$f" ] || return 0
        break
    done
    lock -n
    case $? in
        1) rm -f "$CONTROL"/*.up; return 0 ;;  # a run is going: it restarts every web server anyway
        2) return 1 ;;
    esac
    RUN_STATUS=/dev/null
    ssh_setup
    webs | bounded "$MAX_PARALLEL" retry_owed 9>&-
}

# --- The watcher --------------------------------------------------------------------------------

owed_any() {
    local f
    for f in "$OWED"/*; do
        [ -f "$f" ] && return 0
    done
    return 1
}

busy() {
    ! flock -n "$LOCK" true 2>/dev/null
}

# tick: the watcher looked at the database now, and saw RUN. Without a process (it runs every
# interval): one write over the line before, in place, padded with spaces to the longest line
# written yet (verify reads it whole: a shorter line leaves no tail of the last). The first one
# truncates the file a watcher before it left.
TICK_WIDTH=0
tick() {
    local line
    printf -v line '%(%s)T %s' -1 "${RUN:-none}"
    if [ "$TICK_WIDTH" -eq 0 ]; then
        TICK_WIDTH=$((${#line} + 40))
        printf '%-*s\n' "$TICK_WIDTH" "$line" >"$WATCH_TICK"
    else
        [ "${#line}" -le "$TICK_WIDTH" ] || TICK_WIDTH=${#line}
        printf '%-*s\n' "$TICK_WIDTH" "$line" 1<>"$WATCH_TICK"
    fi
}

# upgrade_handled: a run followed by an earlier trigger is "<pid>.<start>", without its uid; when it
# is the current run's own process (the same PID and start time: the same process, so the same
# owner), it is followed already. Any other (nobody's look-alike, say) is not the database's run.
upgrade_handled() {
    local run ready
    read -r run ready 2>/dev/null <"$HANDLED" || return 0
    if [ -n "$RUN_PROCESS" ] && [[ $run != *:* ]] && run_id && [ -n "$RUN" ] && [ "${RUN#*:}" = "$run" ]; then
        write_file "$HANDLED" "$RUN ${ready:-0}"
        log "the run $run followed by an earlier svrchain is the database's own ($RUN)"
    fi
}

# adopt_run: just installed: the run going now is not a new one (installing restarts no web server);
# a standby's (the role check says so) is followed as a standby's, so that its promotion is a new run.
adopt_run() {
    run_id
    [ -n "$RUN" ] || return 0
    role
    case $? in
        1) write_file "$HANDLED" "$RUN$STANDBY_MARK 0" ;;
        2) log "cannot tell the database's role now ($ROLE_COMMAND): its run $RUN is taken as the primary's"
           write_file "$HANDLED" "$RUN 0" ;;
        *) write_file "$HANDLED" "$RUN 0" ;;
    esac
}

# fire WHAT WHY: start the trigger for WHAT (the database's new run RUN, or its promotion), unless it
# is followed or a run is going; again for the same (one that never became ready) only after FIRE_WAIT,
# doubling to 5 minutes. WHY is logged the first time.
FIRED='' NEXT_FIRE=0 FIRE_WAIT=5
fire() {
    waiting "$1" || return 0
    ! busy || return 0
    if [ "$1" = "$FIRED" ]; then
        FIRE_WAIT=$((FIRE_WAIT < 150 ? FIRE_WAIT * 2 : 300))
    else
        FIRE_WAIT=5
        log "$2: starting the trigger"
    fi
    setsid "$0" start </dev/null >/dev/null 2>&1 &
    FIRED=$1 NEXT_FIRE=$((SECONDS + FIRE_WAIT))
}

# waiting WHAT: 1 while the trigger started for WHAT is given its time (no process).
waiting() {
    [ "$1" != "$FIRED" ] || [ "$SECONDS" -ge "$NEXT_FIRE" ]
}

# follow: start the trigger when the database's run RUN is not the one followed (HANDLED's, read into
# HANDLED_RUN), or when a standby's run (followed as "<run>~standby") has been promoted: the role
# check, one process, runs each look only on a standby (a primary's look forks nothing).
follow() {
    [ -n "$RUN" ] && [ "$RUN" != "$HANDLED_RUN" ] || return 0
    if [ "$HANDLED_RUN" != "$RUN$STANDBY_MARK" ]; then
        fire "$RUN" "new run of the database ($RUN)"
    elif waiting "$RUN~promoted" && role; then
        fire "$RUN~promoted" "the database's run $RUN is the primary now, open read-write (promoted)"
    fi
}

# retry_owed_soon: while web servers are owed a restart, every interval (one retry at a time): each
# one's port is probed (a TCP connect, no handshake), and one that answers is restarted.
RETRY_PID=
retry_owed_soon() {
    owed_any || return 0
    [ -z "$RETRY_PID" ] || ! kill -0 "$RETRY_PID" 2>/dev/null || return 0
    setsid "$0" retry </dev/null >/dev/null 2>&1 &
    RETRY_PID=$!
}

# watch: notice each new run of the database within WATCH_INTERVAL, whatever started it (a DBA's own
# restart, a crash and a manual start, srvctl, the service), and start the trigger for it once;
# restart the web servers still owed one as soon as they answer. A look forks no process when the
# database's run is told by its process (run_process) and nothing is owed.
watch() {
    local _
    mkdir -p "$OWED"
    run_dir_ok || exit 1
    echo "$$" >"$WATCH_PIDFILE"
    trap 'rm -f "$WATCH_PIDFILE"; exit 0' TERM INT
    log "watching the database's runs every ${WATCH_INTERVAL}s"
    tick
    [ -f "$HANDLED" ] || adopt_run
    upgrade_handled
    while :; do
        run_id
        tick
        HANDLED_RUN=
        read -r HANDLED_RUN _ 2>/dev/null <"$HANDLED"
        follow
        retry_owed_soon
        nap "$WATCH_INTERVAL"
    done
}

stop_supervising() {
    local job
    for job in $(jobs -p); do
        kill -TERM "$job" 2>/dev/null
    done
    wait
    rm -f "$SUPERVISE_PIDFILE"
    exit 0
}

# supervise: the watcher, started again whenever it ends (a kill -9, a crash): SysV hosts have no
# respawn of their own for it (systemd restarts it: Restart=always). TERM ends the watcher, then this.
supervise() {
    local child began delay=1 WAIT
    run_dir_ok || exit 1
    echo "$$" >"$SUPERVISE_PIDFILE"
    trap stop_supervising TERM INT
    while :; do
        began=$SECONDS
        "$0" watch </dev/null >/dev/null 2>&1 &
        child=$!
        wait "$child"
        log "the watcher (pid $child) ended (exit $?): starting it again in ${delay}s"
        # One that keeps ending at once (settings refused) is started again less and less often.
        if [ $((SECONDS - began)) -ge 30 ]; then delay=1; else delay=$((delay < 30 ? delay * 2 : 60)); fi
        seconds "$delay"
        sleep "$WAIT" & wait $!
    done
}

# --- Main ---------------------------------------------------------------------------------------

case "${1:-}" in
    status)
        cat "$STATUS" 2>/dev/null
        exit
        ;;
    stop)
        exit 0
        ;;
    start | watch | supervise | retry | run | config | connect) ;;
    *)
        echo "Usage: $0 {start|stop|status|watch|supervise|retry|run|config}" >&2
        exit 2
        ;;
esac
if ! matches "$NAME" '^[A-Za-z0-9][A-Za-z0-9_.@-]*$'; then
    echo "$0: not a trigger's name: $(printf '%q' "$NAME")" >&2
    exit 2
fi
read_config || exit 1
case "$1" in
    start) start ;;
    watch) watch ;;
    supervise) supervise ;;
    retry) retry ;;
    run)
        run_id
        echo "${RUN:-none}"
        ;;
    config) show_config ;;
    connect) connector "${2:-/dev/null}" ;;  # (start's own: the run's connections)
esac
