<?php
// The light lab hosts' page: the database run this server was started against (PostgreSQL's start
// time, asked by lab-web when it started) and when it started. 503 when it could not ask.
header('Content-Type: text/plain');
$line = trim((string) @file_get_contents('/var/lib/lab-web/run'));
$parts = explode(' ', $line);
if (count($parts) !== 2 || $parts[0] === 'none') {
    http_response_code(503);
    echo "FAIL started without the database\n";
    exit;
}
printf("OK run=%s started=%s\n", $parts[0], $parts[1]);
