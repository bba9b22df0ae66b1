"""HTTP servers for browser tests: any ASGI app under uvicorn, or a small static file server.

Both listen on 127.0.0.1 on a free port, in a background thread, and stop when their ``with``
block ends. 127.0.0.1 is a secure context for the browser, so pages served here get
``crypto.subtle`` as they would over HTTPS.
"""

from __future__ import annotations

import mimetypes
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

HOST = "127.0.0.1"
START_TIMEOUT = 30.0

# Module scripts are refused unless served with a JavaScript MIME type (HTML spec, "fetch a
# single module script"), so the types are set here rather than left to the platform's table.
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


@contextmanager
def serve_app(app: Any, *, lifespan: Literal["auto", "on", "off"] = "on") -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread; yields its base URL (no trailing slash).

    The socket is bound before uvicorn starts, so the port is known and never raced for. The
    app's lifespan runs (startup before the first request, shutdown on exit); a startup failure
    raises here instead of leaving tests to time out.
    """
    import uvicorn

    sock = _bound_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    def run() -> None:
        try:
            server.run(sockets=[sock])
        except SystemExit:
            pass  # uvicorn exits this way when the app's startup fails; reported below

    thread = threading.Thread(target=run, daemon=True, name=f"uvicorn:{port}")
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the ASGI app did not start (see its log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            sock.close()
            raise RuntimeError(f"the ASGI app did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


Route = Path | bytes


@contextmanager
def serve_static(routes: Mapping[str, Route], *,
                 headers: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve files over HTTP; yields the base URL.

    ``routes`` maps a URL path to what is served there: a path ending in ``/`` to a directory
    (files under it, never outside it), any other path to one file or to bytes held in memory.
    ``headers`` are added to every response (for example a Content-Security-Policy). GET and
    HEAD only; anything else is 405, anything unknown 404.
    """
    extra = dict(headers or {})
    table = dict(routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, *, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            found = _lookup(table, path)
            if found is None:
                self.send_error(404)
                return
            content, suffix = found
            self.send_response(200)
            self.send_header("Content-Type", _TYPES.get(suffix) or _guess(suffix))
            self.send_header("Content-Length", str(len(content)))
            self.send_header("Cache-Control", "no-store")
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet; failures show in the browser's console instead

    httpd = ThreadingHTTPServer((HOST, 0), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name=f"static:{port}")
    thread.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _guess(suffix: str) -> str:
    return mimetypes.types_map.get(suffix, "application/octet-stream")


def _lookup(table: Mapping[str, Route], path: str) -> tuple[bytes, str] | None:
    route = table.get(path)
    if route is not None:
        if isinstance(route, bytes):
            return route, Path(path).suffix
        return (route.read_bytes(), route.suffix) if route.is_file() else None
    for prefix, target in table.items():
        if not prefix.endswith("/") or not path.startswith(prefix) or isinstance(target, bytes):
            continue
        root = target.resolve()
        wanted = (root / path[len(prefix):]).resolve()
        # No escaping the directory with '..' or symlinks.
        if wanted.is_relative_to(root) and wanted.is_file():
            return wanted.read_bytes(), wanted.suffix
    return None
