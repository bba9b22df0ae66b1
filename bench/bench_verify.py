"""Benchmark of ``python -m verifier`` on a large export (a script, not a test).

    python bench/bench_verify.py --entries 1000000 [--cache DIR] [--workers N] [--repeat 3]

Builds (once, cached) an export of exportgen-style entries with its checkpoint, then measures in
fresh subprocesses, side by side in the same run:

* this machine's single-core Ed25519 verify rate (the baseline for the signature target);
* entries/s with signatures on all cores        — target >= 0.8 x single-core rate x cores;
* entries/s without signatures (--no-signatures) — target >= 200,000 entries/s;
* peak RSS (main process + workers) at 100k entries and at N — target < 200 MB, and flat.

Rates are medians over ``--repeat`` runs (each in a fresh process); peak memory is the largest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.verifier import exportgen as g

SMALL = 100_000


class _Root:
    """Tiny compact range for the generator (the bench does not trust verifier.merkle)."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, bytes]] = []

    def add(self, h: bytes) -> None:
        height = 0
        while self.stack and self.stack[-1][0] == height:
            h = hashlib.sha256(b"\x01" + self.stack.pop()[1] + h).digest()
            height += 1
        self.stack.append((height, h))

    def root(self) -> bytes:
        if not self.stack:
            return hashlib.sha256(b"").digest()
        result = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            result = hashlib.sha256(b"\x01" + left + result).digest()
        return result


def build(entries: int, directory: Path) -> None:
    """Write export.jsonl, checkpoint, vkey, and the 100k-prefix export with its checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    random.seed(1)
    jcs = g.fast_jcs
    operator = g.key_from_seed(2000)
    origin = g.ORIGIN
    keys = {g.A: g.key_from_seed(11), g.B: g.key_from_seed(12)}
    clock = [float(g.T0)]
    tree = _Root()
    prev = bytes(32)
    count = 0
    out = open(directory / "export.jsonl.tmp", "wb")  # noqa: SIM115 -- closed at the end
    small_out = open(directory / "small.jsonl", "wb")  # noqa: SIM115 -- closed at the end

    def append(kind: str, agency: str, key, payload: dict) -> None:  # type: ignore[no-untyped-def]
        nonlocal prev, count
        clock[0] += 0.5
        salt = random.randbytes(32)
        commitment = g.b64(hashlib.sha256(b"kiroku/commitment/v1\n" + salt + jcs(payload)).digest())
        statement = {"v": 1, "kind": kind, "agency": agency, "key_id": g.statement_key_id(key),
                     "time": g.ts(int(clock[0])), "commitment": commitment}
        leaf_obj = dict(statement, index=count, prev=g.b64(prev), logged_at=g.ts(int(clock[0]) + 1),
                        signature=g.b64(key.sign(jcs(statement))))
        leaf = jcs(leaf_obj)
        h = g.leaf_hash(leaf)
        line = jcs({"index": count, "leaf": g.b64(leaf), "leaf_hash": g.b64(h), "payload": payload,
                    "salt": g.b64(salt), "erased": False}) + b"\n"
        out.write(line)
        if count < SMALL:
            small_out.write(line)
        tree.add(h)
        prev = h
        count += 1
        if count == SMALL:
            (directory / "small.checkpoint").write_text(
                g.sign_note(f"{origin}\n{count}\n{g.b64(tree.root())}\n", origin, operator))

    def add_key(code: str, key) -> None:  # type: ignore[no-untyped-def]
        append("agency.key_added", "operator", operator, {
            "agency": code, "key_id": g.statement_key_id(key),
            "public_key": g.b64(g.raw_public(key)), "valid_from": g.ts(int(clock[0]))})

    append("catalog.loaded", "operator", operator, {"version": "bench", "source": "bench", "bases": [],
                                                    "items": {}, "roles": {}})
    for code in (g.A, g.B):
        append("agency.registered", "operator", operator, {"code": code, "name_ja": code, "name_en": code,
                                                           "kind": "municipality", "roles": ["requester"]})
        add_key(code, keys[code])
    started = time.monotonic()
    n = 0
    while count < entries:
        if count == entries // 2:  # one key rotation mid-log
            append("agency.key_revoked", "operator", operator, {
                "agency": g.A, "key_id": g.statement_key_id(keys[g.A]), "revoked_at": g.ts(int(clock[0]) + 1)})
            clock[0] += 2
            keys[g.A] = g.key_from_seed(13)
            add_key(g.A, keys[g.A])
            continue
        requester, provider = (g.A, g.B) if n % 2 else (g.B, g.A)
        append("provision", requester, keys[requester], {
            "request_id": f"REQ-{n:08d}", "subject": f"pseud-{n * 7919 % 1000003:07d}",
            "requester": requester, "provider": provider, "basis": "2-3", "affair": "2",
            "items": ["地方税関係情報"], "requested_at": g.ts(int(clock[0])),
            "provided_at": g.ts(int(clock[0]) + 1), "outcome": "provided", "reason": None,
            "non_disclosure": False, "operator": f"op-{n % 97}"})
        n += 1
        if count % 100_000 == 0:
            print(f"  built {count:,} entries ({count / (time.monotonic() - started):,.0f}/s)", file=sys.stderr)
    out.close()
    small_out.close()
    (directory / "checkpoint").write_text(g.sign_note(f"{origin}\n{count}\n{g.b64(tree.root())}\n", origin, operator))
    (directory / "vkey").write_text(g.vkey_of(origin, operator) + "\n")
    os.replace(directory / "export.jsonl.tmp", directory / "export.jsonl")


def measure(export: str, checkpoint: str, vkey: str, signatures: bool, workers: int) -> None:
    """Run in a fresh process: verify, then print elapsed seconds and peak RSS as JSON.

    Calls what ``kiroku verify EXPORT`` calls for an export in a regular file.
    """
    from verifier.export import verify_export_file
    from verifier.note import NoteVerifier

    started = time.perf_counter()
    report = verify_export_file(export, Path(checkpoint).read_bytes(),
                                NoteVerifier.from_vkey(Path(vkey).read_text().strip()),
                                check_signatures=signatures, workers=workers)
    elapsed = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"entries": report.entries, "seconds": elapsed, "main_mb": own, "worker_mb": children}))


def _run_measure(export: Path, checkpoint: Path, vkey: Path, signatures: bool, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--measure", str(export), str(checkpoint), str(vkey),
           "1" if signatures else "0", str(workers)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def single_core_verify_rate(seconds: float = 2.0) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    messages = [os.urandom(200) for _ in range(256)]
    signatures = [key.sign(m) for m in messages]
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for m, s in zip(messages, signatures):
            public.verify(s, m)
        done += len(messages)
    return done / (time.perf_counter() - started)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        export, checkpoint, vkey, signatures, workers = sys.argv[2:7]
        measure(export, checkpoint, vkey, signatures == "1", int(workers))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--cache", default=None, help="directory for the generated export (reused)")
    parser.add_argument("--workers", type=int, default=None, help="default: all cores")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    from verifier.export import default_workers

    workers = args.workers if args.workers is not None else default_workers()
    cache = Path(args.cache or ROOT / "var" / "bench" / f"export-{args.entries}")
    if not (cache / "export.jsonl").exists():
        print(f"building a {args.entries:,}-entry export in {cache} (cached for later runs)", file=sys.stderr)
        build(args.entries, cache)
    files = (cache / "export.jsonl", cache / "checkpoint", cache / "vkey")

    rates, signed_runs, hashed_runs = [], [], []
    for _ in range(max(1, args.repeat)):  # interleaved, so a noisy spell hits all three alike
        rates.append(single_core_verify_rate())
        signed_runs.append(_run_measure(*files, True, workers))
        hashed_runs.append(_run_measure(*files, False, workers))
    small = _run_measure(cache / "small.jsonl", cache / "small.checkpoint", cache / "vkey", False, workers) \
        if args.entries > SMALL else hashed_runs[0]

    rate = statistics.median(rates)
    signed_rate = statistics.median(m["entries"] / m["seconds"] for m in signed_runs)
    hash_rate = statistics.median(m["entries"] / m["seconds"] for m in hashed_runs)
    hashed = max(hashed_runs, key=lambda m: m["main_mb"])
    target_signed = 0.8 * rate * workers
    peak = max(m["main_mb"] + m["worker_mb"] * workers for m in signed_runs + hashed_runs)

    def row(name: str, got: float, target: float, unit: str, higher: bool = True) -> None:
        ok = got >= target if higher else got < target
        print(f"{name:<34} {got:>12,.0f} {unit:<10} target {'>=' if higher else '<'} {target:>10,.0f}"
              f"   ratio {got / target:5.2f}  {'OK' if ok else 'MISS'}")

    print(f"entries: {args.entries:,}   workers: {workers}   cpu cores: {os.cpu_count()}")
    print(f"single-core Ed25519 verify rate: {rate:,.0f}/s (measured in this run; runs "
          f"{' / '.join(f'{r:,.0f}' for r in rates)})")
    print("runs with signatures: " + " / ".join(f"{m['entries'] / m['seconds']:,.0f}" for m in signed_runs)
          + "; hash-only: " + " / ".join(f"{m['entries'] / m['seconds']:,.0f}" for m in hashed_runs))
    row("with signatures (entries/s)", signed_rate, target_signed, "/s")
    row("hash-only --no-signatures (entries/s)", hash_rate, 200_000, "/s")
    row("peak RSS, main + workers (MB)", peak, 200, "MB", higher=False)
    print(f"peak RSS main process: {min(SMALL, args.entries):,} entries {small['main_mb']:.0f} MB, "
          f"{args.entries:,} entries {hashed['main_mb']:.0f} MB (per worker {hashed['worker_mb']:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
