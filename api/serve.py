"""Running the service: ``kiroku serve`` and ``kiroku demo`` (uvicorn)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from api.background import exit_with_parent, housekeeping_main
from api.settings import ApiSettings


def check_settings() -> ApiSettings:
    """Settings from the environment, so a bad configuration fails once, before any worker."""
    return ApiSettings()


def run(host: str, port: int, workers: int, *, log_level: str = "info") -> None:
    import uvicorn

    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers write their counters here so that /metrics on any worker shows the sum.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kiroku-metrics-")
    if hasattr(socket, "SO_REUSEPORT"):
        _run_reuseport(host, port, max(1, workers), log_level)
        return
    if workers <= 1:
        _serve(_config(log_level, host=host, port=port))
        return
    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, proxy_headers=False, server_header=False, access_log=False)


def _config(log_level: str, **options: Any) -> Any:
    import uvicorn

    # No access log: request lines name record ids and query filters, which are about residents.
    return uvicorn.Config("api.app:app_from_env", factory=True, log_level=log_level,
                          proxy_headers=False, server_header=False, access_log=False, **options)


def _serve(config: Any, sockets: list[socket.socket] | None = None) -> None:
    """Load the app, then freeze what it built out of the garbage collector's sight.

    The app's ~125k long-lived objects (routes, models, the ledger's state) made each full
    collection pause the worker for ~90 ms, which was the resident list's p99. Frozen, they are
    never traversed again; later garbage is collected as usual.
    """
    import gc

    import uvicorn

    config.load()
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run(sockets=sockets)


def _run_reuseport(host: str, port: int, workers: int, log_level: str) -> None:
    """One listening socket per worker, bound with SO_REUSEPORT, and one housekeeping process.

    With uvicorn's shared socket, whichever worker wakes first accepts a burst of new keep-alive
    connections and keeps them: measured, one worker ran at 96% CPU and the other at 17%. With a
    socket each, the kernel spreads connections evenly over the workers.

    Checkpoints and projection catch-up run in their own process (``housekeeping_main``): as a
    thread in each worker, catching the views up after a burst of appends competed with requests
    for the interpreter lock and doubled the resident list's p99. It is restarted if it dies.
    """
    probe = _socket(host)
    try:
        probe.bind((host, port))  # fail here, once and clearly, if the address is taken
    except OSError as exc:
        print(f"kiroku: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        probe.close()
    background = ApiSettings().background
    os.environ["KIROKU_BACKGROUND"] = "false"  # the request workers leave it to the process below
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_worker, args=(host, port, log_level), daemon=False)
                for _ in range(workers)]
    for child in children:
        child.start()
    stopping = threading.Event()

    def keeper() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=housekeeping_main, daemon=False)
        process.start()
        return process

    housekeeper = keeper() if background else None

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()
        for child in [*children, *([housekeeper] if housekeeper is not None else [])]:
            if child.is_alive():
                child.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.wait(1.0):
        if all(not child.is_alive() for child in children):
            break
        if housekeeper is not None and not housekeeper.is_alive() and not stopping.is_set():
            print(f"kiroku: the housekeeping process exited ({housekeeper.exitcode}); restarting",
                  file=sys.stderr)
            housekeeper = keeper()
    stop(signal.SIGTERM, None)
    for child in children:
        child.join()
    if housekeeper is not None:
        housekeeper.join()
    if any(child.exitcode not in (0, -signal.SIGTERM) for child in children):
        raise SystemExit(1)


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    exit_with_parent()
    sock = _socket(host)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    _serve(_config(log_level), [sock])


def _cmd() -> str:
    argv0 = sys.argv[0] if sys.argv else "kiroku"
    return argv0 if Path(argv0).name == "kiroku" else "kiroku"


def demo_banner(url: str, creds: Any, agency_keys: list[tuple[str, Path]], vkey: str) -> str:
    kiroku = _cmd()
    lines = [
        "",
        f"kiroku web  {url}/login",
        "  open it in a browser: one click logs in as a demo resident (records verified in the",
        "  browser), the auditor (audit console: checkpoints, charts, entries) or an agency",
        "",
        f"kiroku API  {url}    (OpenAPI: {url}/docs, problems: RFC 9457)",
        f"  anyone:    curl {url}/v1/log/checkpoint",
        f"  operator vkey: {vkey}",
        "",
        f"residents (JPKI-like TEST certificates from the demo CA {creds.ca}):",
    ]
    for number, resident in enumerate(creds.residents, 1):
        lines += [
            f"  {number}. pseudonym {resident.subject}: {resident.records} visible record(s)",
            f"     certificate {resident.certificate}",
            f"     private key {resident.key}",
            (f"     {kiroku} client --url {url} resident --cert {resident.certificate} "
            f"--key {resident.key} list"),
        ]
    lines += [
        "",
        f"auditor '{creds.auditor_name}', Ed25519 key {creds.auditor_key}:",
        (f"  {kiroku} client --url {url} auditor --name {creds.auditor_name} --key "
        f"{creds.auditor_key} '/v1/log/entries?start=0&end=3'"),
    ]
    for code, path in agency_keys[:2]:
        lines += [f"agency {code}, statement key {path}:",
                  (f"  {kiroku} client --url {url} agency --name {code} --key {path} "
                  f"/v1/agencies/{code}/report")]
    lines += ["", "Ctrl-C stops the service; the data stays in $KIROKU_HOME.", ""]
    return "\n".join(lines)


def prepare_demo(ledger: Any, population: list[str], residents: int = 3) -> tuple[Any, list[tuple[str, Path]]]:
    """Demo credentials (test CA, residents, auditor) and the views brought up to date."""
    from api.demo import ensure_demo_credentials
    from ledger.demo import agency_key_path

    os.environ["KIROKU_DEMO"] = "1"
    settings = ApiSettings()
    try:
        from projections.runner import catch_up

        catch_up(ledger)
    except ImportError:
        pass
    creds = ensure_demo_credentials(settings, ledger, population, residents)
    codes = sorted(ledger.registry.agencies)
    keys = [(c, agency_key_path(ledger.settings.key_dir, c)) for c in codes]
    return creds, [(c, p) for c, p in keys if p.exists()]
