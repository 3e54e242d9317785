<?php
// The lab's web application: it reads the database through a persistent connection, as the seed's
// PHP application held its Oracle connections.
//
// PostgreSQL's PHP driver quietly reopens a dead persistent connection after one failed request per
// Apache worker; Oracle's client in the seed did not, and every request failed with ORA-03113 until
// Apache was restarted. To reproduce that, this web server remembers (in APCu, whose memory lives
// exactly as long as Apache does) which start of the database its connections were made to, and
// fails while the database it talks to has been restarted since.
header('Content-Type: text/plain');
$db = @pg_pconnect('host=198.18.0.10 dbname=app user=app password=app connect_timeout=3');
if ($db === false) {
    http_response_code(503);
    echo "FAIL cannot connect to the database\n";
    exit;
}
$r = @pg_query($db, 'SELECT pg_postmaster_start_time()');
if ($r === false) {
    http_response_code(500);
    echo 'FAIL ' . trim((string) pg_last_error($db)) . "\n";
    exit;
}
$started = pg_fetch_result($r, 0, 0);
apcu_add('db_started', $started);
$known = apcu_fetch('db_started');
if ($known !== $started) {
    http_response_code(500);
    echo "FAIL end-of-file on communication channel (like ORA-03113): the database restarted at "
        . "$started, after this web server connected to it at $known; restart the web server\n";
    exit;
}
echo "OK db-started=$started worker=" . getmypid() . "\n";
