"""Command line: ``python -m verifier`` (argparse only, so it runs with the verifier's own deps).

Every command is a plain function returning an exit code, so a click group (``kiroku verify``)
can mount them unchanged:

* 0 — everything verified;
* 1 — verification failed: one line ``FAIL [index N: ]<kind>: <why>`` on stdout (and a JSON
  report with ``--json``);
* 2 — unusable input (unreadable file, malformed vkey, checkpoint or proof).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from verifier.checkpoint import Checkpoint, open_checkpoint
from verifier.errors import InclusionProofError, UnusableInput, VerificationError
from verifier.export import (
    default_workers,
    export_lines,
    read_checkpoint,
    verify_export,
    verify_export_file,
)
from verifier.merkle import leaf_hash, verify_inclusion
from verifier.note import NoteVerifier
from verifier.prefix import verify_extends
from verifier.progress import Progress
from verifier.proofs import ConsistencyProof, InclusionProof

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
COMMANDS = ("export", "inclusion", "consistency", "monitor")


def _read(path: str, what: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UnusableInput(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def load_vkey(value: str) -> NoteVerifier:
    """``--vkey``: the vkey itself, or a file that contains it."""
    if os.path.isfile(value):
        value = _read(value, "vkey file").decode("utf-8", "replace").strip()
    return NoteVerifier.from_vkey(value)


def _load_checkpoint(path: str, vkey: NoteVerifier) -> Checkpoint:
    return open_checkpoint(_read(path, "checkpoint"), vkey, origin=vkey.name)


def _fail_line(exc: VerificationError) -> str:
    where = f"index {exc.index}: " if exc.index is not None else ""
    return f"FAIL {where}{exc.kind}: {exc}"


def _emit_json(report: dict[str, Any]) -> None:
    print(json.dumps(report, ensure_ascii=False, indent=2))


def _human(line: str, as_json: bool) -> None:
    """The one human-readable line; with --json, stdout carries only the JSON report."""
    print(line, file=sys.stderr if as_json else sys.stdout)


def _report_error(exc: VerificationError, as_json: bool, base: dict[str, Any]) -> int:
    if isinstance(exc, UnusableInput):
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            _emit_json({**base, "ok": False, "error": {"kind": exc.kind, "message": str(exc)}})
        return EXIT_UNUSABLE
    _human(_fail_line(exc), as_json)
    if as_json:
        _emit_json({**base, "ok": False,
                    "failure": {"index": exc.index, "kind": exc.kind, "message": str(exc)}})
    return EXIT_FAILED


def export_command(
    export: str, checkpoint: str, vkey: str, *, as_json: bool = False, signatures: bool = True,
    workers: int | None = None,
) -> int:
    """Verify a whole JSON Lines export against a signed checkpoint."""
    base: dict[str, Any] = {"export": export, "signatures_checked": signatures}
    try:
        verifier = load_vkey(vkey)
        checkpoint_text = _read(checkpoint, "checkpoint")
        cp, _ = read_checkpoint(checkpoint_text, verifier)
        progress = Progress(cp.size)
        options: dict[str, Any] = {"check_signatures": signatures, "workers": workers,
                                   "progress": progress}
        try:
            if export != "-" and os.path.isfile(export):
                # A regular file: the workers read their chunks from it themselves.
                report = verify_export_file(export, checkpoint_text, verifier, **options)
            else:
                try:
                    stream = sys.stdin.buffer if export == "-" else open(export, "rb")  # noqa: SIM115 -- closed by "with stream" below
                except OSError as exc:
                    raise UnusableInput(
                        f"cannot read export {export!r}: {exc.strerror or exc}") from None
                with stream:
                    report = verify_export(export_lines(stream), checkpoint_text, verifier,
                                           **options)
        except OSError as exc:
            raise UnusableInput(f"cannot read export {export!r}: {exc.strerror or exc}") from None
        finally:
            progress.close()
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    what = "signatures checked" if signatures else "signatures NOT checked"
    _human(f"OK {report.entries} entries verified against checkpoint {cp.origin} size {cp.size} ({what})", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "entries": report.entries, "checkpoint": {
            "origin": cp.origin, "size": cp.size, "root": cp.root.hex()}, "failure": None})
    return EXIT_OK


def inclusion_command(proof: str, checkpoint: str, vkey: str, *, leaf: str | None = None,
                      as_json: bool = False) -> int:
    """Verify an inclusion proof against a signed checkpoint (and optionally the leaf bytes)."""
    base: dict[str, Any] = {"proof": proof}
    try:
        verifier = load_vkey(vkey)
        cp = _load_checkpoint(checkpoint, verifier)
        parsed = InclusionProof.from_json(_read(proof, "proof"))
        if leaf is not None:
            got = leaf_hash(_read(leaf, "leaf file"))
            if got != parsed.leaf_hash:
                raise InclusionProofError(
                    f"leaf file hashes to {got.hex()}, expected {parsed.leaf_hash.hex()} (proof)"
                )
        if (parsed.tree_size, parsed.root_hash) != (cp.size, cp.root):
            raise InclusionProofError(
                f"proof is for tree size {parsed.tree_size}, root {parsed.root_hash.hex()}; "
                f"expected the checkpoint's size {cp.size}, root {cp.root.hex()}"
            )
        verify_inclusion(parsed.leaf_hash, parsed.leaf_index, cp.size, parsed.proof, cp.root)
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    _human(f"OK leaf {parsed.leaf_index} is in {cp.origin} at size {cp.size}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "leaf_index": parsed.leaf_index, "tree_size": cp.size})
    return EXIT_OK


def consistency_command(proof: str, old: str, new: str, vkey: str, *, as_json: bool = False) -> int:
    """Verify that the new signed checkpoint extends the old one."""
    base: dict[str, Any] = {"proof": proof}
    try:
        verifier = load_vkey(vkey)
        old_cp = _load_checkpoint(old, verifier)
        new_cp = _load_checkpoint(new, verifier)
        parsed = ConsistencyProof.from_json(_read(proof, "proof"))
        verify_extends(old_cp, new_cp, parsed)
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    _human(f"OK size {new_cp.size} extends size {old_cp.size} of {new_cp.origin}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "old_size": old_cp.size, "new_size": new_cp.size})
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verifier",
        description="Independently verify a kiroku log: a whole export, an inclusion proof, a "
        "consistency proof, or keep watching a log (monitor). Exit 0 = verified, 1 = "
        "verification failed (first bad index and kind printed), 2 = unusable input.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="verify a JSON Lines export (the default command)")
    ex.add_argument("export", help="export file (JSON Lines), or - for stdin")
    ex.add_argument("--checkpoint", required=True, help="signed checkpoint file")
    ex.add_argument("--vkey", required=True, help="operator verifier key, or a file holding it")
    ex.add_argument("--json", action="store_true", help="also print a JSON report on stdout")
    ex.add_argument("--no-signatures", action="store_true",
                    help="skip Ed25519 checks of entries (hashes, chain, keys and root only)")
    ex.add_argument("--workers", type=int, default=None,
                    help=f"worker processes (default: all {default_workers()} cores; 0 = none)")
    inc = sub.add_parser("inclusion", help="verify an inclusion proof (JSON)")
    inc.add_argument("proof")
    inc.add_argument("--checkpoint", required=True)
    inc.add_argument("--vkey", required=True)
    inc.add_argument("--leaf", help="file with the exact leaf bytes, checked against the proof")
    inc.add_argument("--json", action="store_true")
    con = sub.add_parser("consistency", help="verify a consistency proof (JSON) between checkpoints")
    con.add_argument("proof")
    con.add_argument("--old", required=True, help="older signed checkpoint")
    con.add_argument("--new", required=True, help="newer signed checkpoint")
    con.add_argument("--vkey", required=True)
    con.add_argument("--json", action="store_true")
    mon = sub.add_parser("monitor", help="watch a log's checkpoints for rollback, forks and staleness")
    mon.add_argument("source", help="http(s) URL of the log, or a directory (see docs/verifier.md)")
    mon.add_argument("--vkey", required=True)
    mon.add_argument("--state", required=True, help="directory keeping the last verified checkpoint")
    mon.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    mon.add_argument("--once", action="store_true", help="check once and exit")
    mon.add_argument("--max-age", type=float, default=None,
                     help="fail as stale if the log's checkpoint has not changed for this many seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] not in COMMANDS and args_in[0] not in ("-h", "--help"):
        args_in.insert(0, "export")
    try:
        args = _parser().parse_args(args_in)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.command == "export":
        return export_command(args.export, args.checkpoint, args.vkey, as_json=args.json,
                              signatures=not args.no_signatures, workers=args.workers)
    if args.command == "inclusion":
        return inclusion_command(args.proof, args.checkpoint, args.vkey, leaf=args.leaf,
                                 as_json=args.json)
    if args.command == "consistency":
        return consistency_command(args.proof, args.old, args.new, args.vkey, as_json=args.json)
    from verifier.monitor import monitor_command

    return monitor_command(args.source, args.vkey, args.state, interval=args.interval,
                           once=args.once, max_age=args.max_age)
