# shellcheck shell=bash
# The lab's Oracle stand-ins (lab/files/oracle, never installed by svrchain): what sqlplus, lsnrctl,
# dbstart, dbshut and the instance share. Sourced, as the Oracle software owner (or root).
#
# State of each instance: /dev/shm/oracle-lab/<SID>/ (gone at boot, as an SGA is):
#   instance  the PID of the instance's supervisor (the instance runs while it lives)
#   state     STATUS|OPEN_MODE|since   (v$instance.status, v$database.open_mode)
#   pdb       NAME|OPEN_MODE|since     (v$pdbs, the instance that has a PDB)
#   procs     "name pid" of each background process (ora_pmon_<SID>, ...)
#   reg       what the instance registered with the listener: the listener's incarnation, then
#             "service status" lines (BLOCKED or READY)
#   closing   a shutdown is going on (the services are deregistered)
# The phase log /u01/app/oracle/lab/phases.log: "<epoch seconds> <SID> <EVENT> [detail]" per phase.
ORACLE_BASE=/u01/app/oracle
LAB=$ORACLE_BASE/lab
SHM=/dev/shm/oracle-lab
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=$LAB/pgdata
PHASES_LOG=$LAB/phases.log
LSNR_PORT=1521
# The phase timings (seconds) and the databases of this host: written by lab/hosts.py (ORACLE_PHASES).
MOUNT=3 OPEN=3 PDB=2 REGISTER=3 CLOSE=1 PG_SID=ORCL PDB_NAME=APPPDB SERVICE=app
# shellcheck source=/dev/null
. "$LAB/lab.conf"

# Now, in microseconds since the epoch; a number of seconds in microseconds.
us() { echo "${EPOCHREALTIME/./}"; }
to_us() { awk -v s="$1" 'BEGIN { printf "%d", s * 1000000 }'; }

# detached COMMAND...: a process that outlives its caller, with none of the caller's open files (a
# console's or a trigger's pipe, a lock) beyond stdin, stdout and stderr (sent to LOG).
detached() {
    setsid "$@" </dev/null >>"$LAB/${DETACHED_LOG:-instance.log}" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
}

# phase SID EVENT [DETAIL]: one line of the phase log.
phase() { printf '%s %s\n' "$EPOCHREALTIME" "$*" >>"$PHASES_LOG"; }

# put FILE TEXT: replace FILE atomically.
put() { printf '%s\n' "$2" >"$1.$$" && mv -f "$1.$$" "$1"; }

# database_role: v$database.database_role, kept in $LAB/database_role (the control file's: it outlives
# a restart); PRIMARY unless a switchover made the database a standby. (No Data Guard: no redo goes
# anywhere; the role is all there is of it.)
database_role() { cat "$LAB/database_role" 2>/dev/null || echo PRIMARY; }

# set_role ROLE: a role transition, in the phase log (ROLE <role>).
set_role() {
    put "$LAB/database_role" "$1"
    phase "$ORACLE_SID" ROLE "$1"
}

# no_stale_postmaster: after a power cut, PostgreSQL's postmaster.pid still names the last boot's
# postmaster, and PostgreSQL refuses to start while any process has that PID (after a boot, often
# another one: the host's PIDs start again at 1). Oracle keeps no such file: remove it unless its PID
# is a postgres whose directory is this data directory (as Debian's pg_ctlcluster removes a stale one).
no_stale_postmaster() {
    local pid
    [ -f "$PGDATA/postmaster.pid" ] || return 0
    read -r pid <"$PGDATA/postmaster.pid" || pid=
    if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$PGBIN/postgres" ] &&
        [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$PGDATA" ]; then
        return 0
    fi
    rm -f -- "$PGDATA/postmaster.pid"
}

# alive SID: the instance runs (its supervisor lives).
alive() {
    local p
    p=$(cat "$SHM/$1/instance" 2>/dev/null) && [ -n "$p" ] && [ -d "/proc/$p" ]
}

# read_state SID: STATUS OPEN_MODE SINCE of the instance (SHUTDOWN when it does not run).
read_state() {
    STATUS=SHUTDOWN OPEN_MODE= SINCE=0
    alive "$1" || return 0
    IFS='|' read -r STATUS OPEN_MODE SINCE 2>/dev/null <"$SHM/$1/state" || STATUS=STARTED
}

# read_pdb SID: PDB_MODE PDB_SINCE of the instance's PDB ('' when it has none or is not mounted).
read_pdb() {
    local name
    PDB_MODE= PDB_SINCE=0
    IFS='|' read -r name PDB_MODE PDB_SINCE 2>/dev/null <"$SHM/$1/pdb" || PDB_MODE=
}

# The listener's incarnation ("pid start"), '' when it does not run.
listener() {
    local inc pid
    inc=$(cat "$SHM/listener" 2>/dev/null) || return 0
    pid=${inc%% *}
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && echo "$inc"
}
