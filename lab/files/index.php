<?php
// The lab's web application: it reads the database through a persistent connection, as the seed's
// PHP application held its Oracle connections.
//
// PostgreSQL's PHP driver quietly reopens a dead persistent connection after one failed request per
// Apache worker; Oracle's client in the seed did not, and every request failed with ORA-03113 until
// Apache was restarted. To reproduce that, a worker process that was started before the database
// (and so held a session to the database's previous run) fails every request. A restart of Apache,
// full or graceful, replaces every worker, and the new workers connect afresh.
//
// On the Oracle-shaped lab host (the line below is rewritten by the lab), the page connects through
// the stand-in listener on port 1521, which refuses a new connection with Oracle's error for the
// database's phase (ORA-12514, ORA-12528, ORA-01033): the page shows it.
//
// A primary/standby pair (lab/dbpair.py): 'host' names both and the page connects to the one that
// accepts writes (target_session_attrs=read-write); the database's run is then the later of the
// postmaster's start and its promotion (lab_run_started()), so a worker started before a switchover
// holds a session to the old primary and fails until the web server restarts.
$lab = ['host' => '198.18.0.10', 'port' => 5432, 'oracle' => false, 'pair' => false];
header('Content-Type: text/plain');
$db = @pg_pconnect("host={$lab['host']} port={$lab['port']} dbname=app user=app password=app connect_timeout=3"
    . ($lab['pair'] ? ' target_session_attrs=read-write' : ''));
if ($db === false) {
    http_response_code(503);
    $why = (string) (error_get_last()['message'] ?? '');
    if (!$lab['oracle']) {
        echo "FAIL cannot connect to the database\n";
    } elseif (preg_match('/(ORA-\d{5}: [^\n]*)/', $why, $m)) {
        echo "FAIL {$m[1]}\n";
    } elseif (str_contains($why, 'refused')) {
        echo "FAIL ORA-12541: TNS:no listener\n";
    } else {
        echo "FAIL ORA-12170: TNS:Connect timeout occurred\n";
    }
    exit;
}
$r = @pg_query($db, $lab['pair'] ? 'SELECT lab_run_started()' : 'SELECT extract(epoch from pg_postmaster_start_time())');
if ($r === false) {
    http_response_code(500);
    echo $lab['oracle'] ? "FAIL ORA-03113: end-of-file on communication channel\n"
        : 'FAIL ' . trim((string) pg_last_error($db)) . "\n";
    exit;
}
$db_started = (float) pg_fetch_result($r, 0, 0);
// This worker's start: the boot time (now - uptime, to 10 ms) + its start in clock ticks since boot
// (USER_HZ is 100 on Linux). /proc/stat's btime would be whole seconds: too coarse here.
$self = (string) file_get_contents('/proc/self/stat');
$fields = explode(' ', substr($self, strrpos($self, ')') + 2)); // fields 3.. of proc(5); 22 is starttime
$booted = microtime(true) - (float) explode(' ', (string) file_get_contents('/proc/uptime'))[0];
$worker_started = $booted + ((int) $fields[19]) / 100;
if ($worker_started < $db_started - 0.05) {
    http_response_code(500);
    printf("FAIL %s: this web server worker "
        . "(started %s) holds a session to the database's previous run; the database restarted at %s. "
        . "Restart the web server.\n", $lab['oracle'] ? 'ORA-03113: end-of-file on communication channel'
        : 'end-of-file on communication channel (like ORA-03113)',
        date('H:i:s', (int) $worker_started), date('H:i:s', (int) $db_started));
    exit;
}
printf("OK db-started=%s worker=%d\n", date('H:i:s', (int) $db_started), getmypid());
