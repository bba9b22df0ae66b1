"""Load soak: mixed load at a fraction of the measured capacity, sampled every 10 s.

    python bench/soak.py [--minutes 10] [--load 0.7] [--entries 100000] [--cache DIR]

Starts ``kiroku serve --workers 2`` (with its housekeeping process) on 127.0.0.1 only, over
SQLite under a temporary $KIROKU_HOME (or a copy of ``--cache``, e.g. the 1M-entry home of
bench_api.py), then:

1. **capacity**: the mix below, closed-loop from ``--connections`` keep-alive connections for
   ``--calibrate`` seconds: the operations per second the service sustains on this machine;
2. **soak**: the same mix, open-loop at ``--load`` x that rate for ``--minutes`` (each request has
   a scheduled send time; its latency counts from that time, so a stall shows as latency and is
   not hidden by the load generator waiting), sampling every ``--sample`` seconds: the server's
   resident memory and open file descriptors (the ``kiroku serve`` process and its children,
   from /proc), per-operation latency percentiles and errors in that window.

The mix, by share of operations: single appends 35 %, batches of 10 appends 5 %, a resident's
list (JSON, 50 records) 30 %, inclusion proofs 20 %, consistency proofs 5 %, an auditor's export
of 100 entries 5 %.

Verdict (exit status 1 if any fails): no error at all; no growth trend, judged after a warm-up
minute by the median of the last third of the samples against the first third: memory grows by
at most 5 % (or 10 MB), open descriptors by at most 4, and the p99 of the last third is at most
twice that of the first. Bounded: it stops after ``--minutes`` whatever happens, and gives up
early if the backlog of scheduled requests exceeds 30 s of load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from bench_api import HOST, _pct, _prepare, _statements

#: (operation, share of operations)
MIX = (("append", 0.35), ("batch", 0.05), ("list", 0.30), ("inclusion", 0.20),
       ("consistency", 0.05), ("export", 0.05))
BATCH = 10


@dataclass
class Window:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))


class Load:
    """Builds each operation's request. Statements are signed as they are sent, each a fresh
    request id on one of a pool of demo provisions (signing costs the load generator ~0.1 ms)."""

    def __init__(self, templates: list[dict[str, Any]], keys: dict[str, Any], tokens: list[str],
                 size: int, auditor: tuple[Any, str]) -> None:
        self.templates, self.keys, self.tokens = templates, keys, tokens
        self.size, self.auditor = size, auditor
        self.rng = random.Random(7)
        self.ops = [name for name, _ in MIX]
        self.weights = [share for _, share in MIX]
        self.made = 0

    def pick(self) -> str:
        return self.rng.choices(self.ops, self.weights)[0]

    def statement(self) -> dict[str, Any]:
        from ledger.encoding import parse_time
        from ledger.signing import sign_statement

        template = self.templates[self.made % len(self.templates)]
        self.made += 1
        payload = dict(template["payload"],
                       request_id=f"{template['payload']['request_id']}-soak-{self.made}")
        agency = template["statement"]["agency"]
        return sign_statement(payload, kind="provision", agency=agency, key=self.keys[agency],
                              time=parse_time(template["statement"]["time"], field="time"))

    def request(self, op: str) -> tuple[str, str, bytes, dict[str, str]]:
        from api.request_signing import sign_request

        rng = self.rng
        if op == "append":
            return "POST", "/v1/provisions", json.dumps(self.statement()).encode(), {}
        if op == "batch":
            batch = [self.statement() for _ in range(BATCH)]
            return "POST", "/v1/provisions/batch", json.dumps(batch).encode(), {}
        if op == "list":
            token = self.tokens[rng.randrange(len(self.tokens))]
            return "GET", "/v1/me/provisions?limit=50", b"", {"Authorization": f"Bearer {token}"}
        if op == "inclusion":
            return "GET", f"/v1/log/proof/inclusion?index={rng.randrange(self.size)}", b"", {}
        if op == "consistency":
            old = rng.randrange(1, self.size)
            return "GET", f"/v1/log/proof/consistency?old={old}", b"", {}
        start = rng.randrange(max(1, self.size - 100))
        target = f"/v1/log/entries?start={start}&end={start + 100}"
        key, principal = self.auditor
        return "GET", target, b"", {"Authorization": sign_request(key, principal, "GET", target)}


async def _send(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                request: tuple[str, str, bytes, dict[str, str]]) -> int:
    method, target, body, headers = request
    head = [f"{method} {target} HTTP/1.1", f"Host: {HOST}", f"Content-Length: {len(body)}",
            "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
        elif lower.startswith(b"transfer-encoding:") and b"chunked" in lower:
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def _closed_loop(port: int, load: Load, connections: int, seconds: float
                       ) -> tuple[float, Window]:
    window = Window()

    async def worker(deadline: float) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.monotonic() < deadline:
                op = load.pick()
                t = time.monotonic()
                status = await _send(reader, writer, load.request(op))
                window.latencies[op].append(time.monotonic() - t)
                window.statuses[status] += 1
                if not 200 <= status < 300:
                    window.errors[op] += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(started + seconds) for _ in range(connections)))
    done = sum(len(v) for v in window.latencies.values())
    return done / (time.monotonic() - started), window


async def _open_loop(port: int, load: Load, connections: int, rate: float, seconds: float,
                     sample: float, sampler: Any) -> tuple[list[dict[str, Any]], str]:
    queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue()
    window = Window()
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    deadline = started + seconds
    stop = asyncio.Event()
    outcome = "completed"

    async def scheduler() -> None:
        nonlocal outcome
        k = 0
        while not stop.is_set():
            at = started + k / rate
            if at >= deadline:
                break
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if queue.qsize() > rate * 30:
                outcome = "gave up: more than 30 s of requests waiting"
                break
            queue.put_nowait((at, load.pick()))
            k += 1
        stop.set()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while not (stop.is_set() and queue.empty()):
                try:
                    at, op = await asyncio.wait_for(queue.get(), 0.5)
                except TimeoutError:
                    continue
                try:
                    status = await _send(reader, writer, load.request(op))
                except (ConnectionError, asyncio.IncompleteReadError, ValueError):
                    status = 0
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                window.latencies[op].append(time.monotonic() - at)
                window.statuses[status] += 1
                if not 200 <= status < 300:
                    window.errors[op] += 1
        finally:
            writer.close()

    async def sampling() -> None:
        nonlocal window
        next_at = started + sample
        while not stop.is_set() or not queue.empty():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            current, window = window, Window()
            samples.append(_summarise(current, next_at - started, sampler()))
            print(_line(samples[-1]), flush=True)
            next_at += sample

    tasks = [asyncio.create_task(worker()) for _ in range(connections)]
    sampler_task = asyncio.create_task(sampling())
    await scheduler()
    await asyncio.gather(*tasks)
    sampler_task.cancel()
    return samples, outcome


def _summarise(window: Window, at: float, process: dict[str, float]) -> dict[str, Any]:
    every = [x for values in window.latencies.values() for x in values]
    return {
        "t": round(at), "requests": len(every), "errors": sum(window.errors.values()),
        "statuses": dict(window.statuses),
        "p50_ms": _pct(every, 50) * 1000, "p99_ms": _pct(every, 99) * 1000,
        "per_op_p99_ms": {op: _pct(v, 99) * 1000 for op, v in window.latencies.items()},
        **process,
    }


def _line(s: dict[str, Any]) -> str:
    return (f"  t={s['t']:4d}s  {s['requests']:5d} req  err {s['errors']}  p50 {s['p50_ms']:6.1f} ms"
            f"  p99 {s['p99_ms']:7.1f} ms  rss {s['rss_mb']:7.1f} MB  fds {s['fds']:4d}"
            f"  procs {s['processes']}")


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return out


def _process_sampler(pid: int) -> Any:
    def sample() -> dict[str, float]:
        rss = fds = 0
        pids = _tree(pid)
        for p in pids:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                fds += len(os.listdir(f"/proc/{p}/fd"))
            except OSError:
                pass
        return {"rss_mb": rss / 1024, "fds": fds, "processes": len(pids)}
    return sample


def _verdict(samples: list[dict[str, Any]], warmup: float) -> list[tuple[str, bool, str]]:
    steady = [s for s in samples if s["t"] > warmup] or samples
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    rss0 = statistics.median(s["rss_mb"] for s in first)
    rss1 = statistics.median(s["rss_mb"] for s in last)
    fd0 = statistics.median(s["fds"] for s in first)
    fd1 = statistics.median(s["fds"] for s in last)
    p0 = statistics.median(s["p99_ms"] for s in first)
    p1 = statistics.median(s["p99_ms"] for s in last)
    errors = sum(s["errors"] for s in samples)
    allowed = max(rss0 * 0.05, 10.0)
    return [
        ("errors", errors == 0, f"{errors} non-2xx or failed of {sum(s['requests'] for s in samples)}"),
        ("memory", rss1 - rss0 <= allowed,
         f"{rss0:.1f} MB -> {rss1:.1f} MB ({rss1 - rss0:+.1f} MB, allowed +{allowed:.1f})"),
        ("descriptors", fd1 - fd0 <= 4, f"{fd0:.0f} -> {fd1:.0f}"),
        ("latency", p1 <= 2 * p0 or p1 <= 50,
         f"p99 (median of windows) {p0:.1f} ms -> {p1:.1f} ms"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity")
    parser.add_argument("--calibrate", type=float, default=20.0, help="capacity phase, seconds")
    parser.add_argument("--sample", type=float, default=10.0, help="sampling period, seconds")
    parser.add_argument("--warmup", type=float, default=60.0,
                        help="seconds of samples left out of the trend")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, help="start from a copy of this KIROKU_HOME")
    parser.add_argument("--port", type=int, default=8795)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the samples here")
    args = parser.parse_args()
    if not 0 < args.load <= 1 or args.minutes <= 0:
        parser.error("--load must be in (0, 1] and --minutes positive")

    home = Path(tempfile.mkdtemp(prefix="kiroku-soak-"))
    server = None
    try:
        if args.cache is not None:
            if not (args.cache / "kiroku.sqlite3").exists():
                raise SystemExit(f"{args.cache} holds no kiroku.sqlite3")
            shutil.copytree(args.cache, home, dirs_exist_ok=True)
        print(f"preparing {args.entries} entries in {home}", file=sys.stderr)
        ledger, keys, _population, creds = _prepare(home, args.entries)
        ledger.checkpoint()
        templates = _statements(ledger, keys, 2000, "soak")
        size = ledger.tree_size()
        ledger.close()

        env = dict(os.environ, KIROKU_HOME=str(home), KIROKU_DEMO="1",
                   KIROKU_SESSION_TTL=str(int(3600 + args.minutes * 60)))
        server = subprocess.Popen(
            [sys.executable, "-m", "kiroku", "serve", "--host", HOST, "--port", str(args.port),
             "--workers", str(args.workers)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        url = f"http://{HOST}:{args.port}"
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit("the server did not come up")

        from kiroku.client import ResidentClient
        from ledger.keys import load_or_create

        tokens = []
        for resident in creds.residents:
            client = ResidentClient(url)
            client.login_files(resident.certificate, resident.key)
            tokens.append(client.token)
        auditor_key, _ = load_or_create(creds.auditor_key)
        load = Load(templates, keys, tokens, size,
                    (auditor_key, f"auditor:{creds.auditor_name}"))

        capacity, measured = asyncio.run(
            _closed_loop(args.port, load, args.connections, args.calibrate))
        rate = capacity * args.load
        print("  capacity phase, per operation: " + ", ".join(
            f"{op} p50 {_pct(v, 50) * 1000:.1f} ms" for op, v in sorted(measured.latencies.items()))
            + f"; errors {sum(measured.errors.values())}", flush=True)
        print(f"capacity (closed loop, {args.connections} connections, {args.calibrate:.0f} s): "
              f"{capacity:.0f} operations/s; soak at {args.load:.0%} = {rate:.0f}/s for "
              f"{args.minutes:g} min, a sample every {args.sample:g} s", flush=True)
        samples, outcome = asyncio.run(_open_loop(
            args.port, load, args.connections, rate, args.minutes * 60, args.sample,
            _process_sampler(server.pid)))
        if args.json:
            args.json.write_text(json.dumps({"capacity": capacity, "rate": rate,
                                             "samples": samples}, indent=1))
        total = sum(s["requests"] for s in samples)
        every_p99 = [s["p99_ms"] for s in samples]
        print(f"soak {outcome}: {total} requests in {len(samples)} samples; window p99 "
              f"median {statistics.median(every_p99):.1f} ms, max {max(every_p99):.1f} ms")
        ok = outcome == "completed"
        for name, passed, detail in _verdict(samples, args.warmup):
            print(f"  {name:12s} {'ok  ' if passed else 'FAIL'} {detail}")
            ok = ok and passed
        print("soak: no error, no growth trend" if ok else "soak: FAILED")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
