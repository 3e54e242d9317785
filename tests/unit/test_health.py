"""restart-chain's health checks against real HTTP servers on loopback: they go straight to the web
server, never through the proxy the environment names (http_proxy), which would see them, or answer
for a web server that is down."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from svrchain.steps.chain import healthy


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers ``status`` to every GET and records the path asked for."""

    status = 200
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args: object) -> None:
        pass


def serve(status: int) -> tuple[http.server.HTTPServer, list[str]]:
    seen: list[str] = []
    handler = type("Handler", (Recorder,), {"status": status, "seen": seen})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    # (shutdown waits for serve_forever's next look: every 0.05 s here, not its default 0.5 s)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, seen


@pytest.fixture
def servers() -> Iterator[tuple]:
    web, web_seen = serve(200)
    proxy, proxy_seen = serve(502)  # a proxy that would say the web server is down
    yield web, web_seen, proxy, proxy_seen
    for s in (web, proxy):
        s.shutdown()
        s.server_close()


def test_a_health_check_never_goes_through_http_proxy(servers, monkeypatch):
    web, web_seen, proxy, proxy_seen = servers
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{proxy.server_port}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    ok, said = healthy(f"http://127.0.0.1:{web.server_port}/health", timeout=2)
    assert ok and said == "200"
    assert web_seen == ["/health"] and proxy_seen == []
