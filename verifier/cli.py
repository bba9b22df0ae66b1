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
from verifier.cosignature import CosignatureVerifier, require_quorum
from verifier.errors import (
    CheckpointSignatureError,
    InclusionProofError,
    UnusableInput,
    VerificationError,
)
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
from verifier.tlogproof import verify_tlog_proof

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2
COMMANDS = ("export", "inclusion", "consistency", "monitor", "proof", "tiles", "completeness",
            "shards")
Witnesses = tuple[list[CosignatureVerifier], int]


def _read(path: str, what: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UnusableInput(f"cannot read {what} {path!r}: {exc.strerror or exc}") from None


def _vkey_lines(value: str) -> list[str]:
    """The vkeys of one ``--vkey`` value: the text itself or a file's, one per line (so that
    ``--vkey "$(kiroku log key)"`` also works while a rotation window shows two keys)."""
    if os.path.isfile(value):
        value = _read(value, "vkey file").decode("utf-8", "replace")
    return [line.strip() for line in value.splitlines() if line.strip()] or [value.strip()]


def load_vkey(value: str) -> NoteVerifier:
    """``--vkey``: the vkey itself, or a file that contains it (the first line: the current key
    when it comes from 'kiroku log key')."""
    return NoteVerifier.from_vkey(_vkey_lines(value)[0])


def load_vkeys(values: str | Sequence[str]) -> list[NoteVerifier]:
    """``--vkey`` (repeatable): the operator's keys, e.g. the old and the new one during a key
    rotation (docs/key-rotation.md). All must be named after the same origin."""
    keys = [NoteVerifier.from_vkey(line)
            for v in ([values] if isinstance(values, str) else values) for line in _vkey_lines(v)]
    if not keys:
        raise UnusableInput("give the operator's vkey (--vkey)")
    names = {k.name for k in keys}
    if len(names) > 1:
        raise UnusableInput(f"--vkey keys name several logs {sorted(names)}; give one log's keys")
    return keys


def _first(values: str | Sequence[str]) -> str:
    return values if isinstance(values, str) else values[0]


def load_witnesses(values: Sequence[str] | None, quorum: int | None) -> Witnesses:
    """``--witness`` vkeys (or files holding one) and ``--quorum K`` (default: all of them)."""
    witnesses = []
    for value in values or ():
        if os.path.isfile(value):
            value = _read(value, "witness vkey file").decode("utf-8", "replace").strip()
        witnesses.append(CosignatureVerifier.from_vkey(value))
    k = len(witnesses) if quorum is None else quorum
    if k and not witnesses:
        raise UnusableInput("--quorum needs the witnesses' keys: give --witness VKEY")
    if not 0 <= k <= len({w.vkey for w in witnesses}):
        raise UnusableInput(f"--quorum {k} needs 0 <= K <= {len(witnesses)} (the --witness keys)")
    return witnesses, k


def check_quorum(note: bytes | str, witnessing: Witnesses | None) -> None:
    """Refuse a checkpoint without K valid cosignatures from the given witness keys."""
    if witnessing is not None and witnessing[1]:
        require_quorum(note, witnessing[0], witnessing[1])


def _load_checkpoint(path: str, vkey: NoteVerifier | list[NoteVerifier],
                     witnessing: Witnesses | None = None) -> Checkpoint:
    text = _read(path, "checkpoint")
    keys = [vkey] if isinstance(vkey, NoteVerifier) else vkey
    checkpoint = open_checkpoint(text, keys, origin=keys[0].name)
    check_quorum(text, witnessing)
    return checkpoint


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
    export: str, checkpoint: str, vkey: str | Sequence[str], *, as_json: bool = False, signatures: bool = True,
    workers: int | None = None, witnesses: Sequence[str] | None = None, quorum: int | None = None,
) -> int:
    """Verify a whole JSON Lines export against a signed checkpoint (cosigned by K witnesses
    when ``witnesses`` are given)."""
    base: dict[str, Any] = {"export": export, "signatures_checked": signatures}
    try:
        verifier = load_vkeys(vkey)
        checkpoint_text = _read(checkpoint, "checkpoint")
        cp, _ = read_checkpoint(checkpoint_text, verifier)
        check_quorum(checkpoint_text, load_witnesses(witnesses, quorum))
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
    # Erased entries were verified like the others (leaf, chain, signature over the commitment);
    # only their payloads are gone, at the end of retention (docs/log-format.md "Export").
    erased = report.erased
    gone = (f"; {erased.count} erased by retention (indices {erased.describe()})"
            if erased.count else "; none erased by retention")
    _human(f"OK {report.entries} entries verified against checkpoint {cp.origin} size {cp.size} ({what}){gone}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "entries": report.entries, "checkpoint": {
            "origin": cp.origin, "size": cp.size, "root": cp.root.hex()},
            "erased_by_retention": {"count": erased.count,
                                    "ranges": [list(r) for r in erased.ranges]},
            "failure": None})
    return EXIT_OK


def inclusion_command(proof: str, checkpoint: str, vkey: str | Sequence[str], *, leaf: str | None = None,
                      as_json: bool = False, witnesses: Sequence[str] | None = None,
                      quorum: int | None = None) -> int:
    """Verify an inclusion proof against a signed checkpoint (and optionally the leaf bytes)."""
    base: dict[str, Any] = {"proof": proof}
    try:
        verifier = load_vkeys(vkey)
        cp = _load_checkpoint(checkpoint, verifier, load_witnesses(witnesses, quorum))
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


def consistency_command(proof: str, old: str, new: str, vkey: str | Sequence[str], *, as_json: bool = False,
                        witnesses: Sequence[str] | None = None, quorum: int | None = None) -> int:
    """Verify that the new signed checkpoint extends the old one."""
    base: dict[str, Any] = {"proof": proof}
    try:
        verifier = load_vkeys(vkey)
        witnessing = load_witnesses(witnesses, quorum)
        old_cp = _load_checkpoint(old, verifier, witnessing)
        new_cp = _load_checkpoint(new, verifier, witnessing)
        parsed = ConsistencyProof.from_json(_read(proof, "proof"))
        verify_extends(old_cp, new_cp, parsed)
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    _human(f"OK size {new_cp.size} extends size {old_cp.size} of {new_cp.origin}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "old_size": old_cp.size, "new_size": new_cp.size})
    return EXIT_OK


def proof_command(path: str, vkey: str | Sequence[str], *, leaf: str | None = None,
                  as_json: bool = False, witnesses: Sequence[str] | None = None,
                  quorum: int | None = None, origin: str | None = None) -> int:
    """Verify a C2SP tlog-proof file offline (kiroku's carry the entry; others need --leaf)."""
    base: dict[str, Any] = {"proof": path}
    try:
        verifiers = load_vkeys(vkey)
        trusted, k = load_witnesses(witnesses, quorum)
        leaf_bytes = _read(leaf, "leaf file") if leaf is not None else None
        data = _read(path, "proof")
        # Any of the operator's keys may have signed the proof's checkpoint (a key rotation).
        for position, verifier in enumerate(verifiers):
            try:
                result = verify_tlog_proof(data, verifier, leaf=leaf_bytes, witnesses=trusted,
                                           quorum=k, origin=origin)
                break
            except CheckpointSignatureError:
                if position == len(verifiers) - 1:
                    raise
    except VerificationError as exc:
        return _report_error(exc, as_json, base)
    cp = result.checkpoint
    cosigners = result.cosigned.witnesses if result.cosigned else []
    witnessed = f", cosigned by {', '.join(cosigners)}" if cosigners else ""
    _human(f"OK entry {result.index} is in {cp.origin} at size {cp.size}{witnessed}", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "index": result.index, "tree_size": cp.size,
                    "witnesses": cosigners, "entry": result.entry, "payload": result.payload})
    return EXIT_OK


def _witness_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--witness", action="append", metavar="VKEY",
                        help="a trusted witness's vkey (cosignature/v1, type 0x04), or a file "
                        "holding it; repeatable")
    parser.add_argument("--quorum", type=int, metavar="K",
                        help="refuse a checkpoint without K valid cosignatures from the "
                        "--witness keys (default: all of them)")


def tiles_command(source: str, vkey: str | Sequence[str], *, as_json: bool = False, signatures: bool = True
                  ) -> int:
    """Verify a log published as C2SP tlog-tiles (a directory or an http(s) URL prefix)."""
    from verifier.tiles import open_tiles, verify_tiles

    base: dict[str, Any] = {"tiles": source, "signatures_checked": signatures}
    try:
        verifier = load_vkey(_first(vkey))
        progress = Progress(None)
        try:
            report = verify_tiles(open_tiles(source), verifier, check_signatures=signatures,
                                  progress=progress)
        finally:
            progress.close()
    except VerificationError as exc:
        if getattr(exc, "path", None):
            base["path"] = exc.path  # type: ignore[attr-defined]
        return _report_error(exc, as_json, base)
    cp = report.checkpoint
    unchecked = (f"; {report.agency_entries} agency signatures not checkable from tiles "
                 "(their keys are registered in payloads)") if report.agency_entries else ""
    _human(f"OK {report.entries} entries and {report.tiles} tiles verified against checkpoint "
           f"{cp.origin} size {cp.size} ({report.operator_signatures} operator signatures "
           f"checked{unchecked})", as_json)
    if as_json:
        _emit_json({**base, "ok": True, "entries": report.entries, "tiles": report.tiles,
                    "operator_signatures": report.operator_signatures,
                    "agency_signatures_unchecked": report.agency_entries,
                    "checkpoint": {"origin": cp.origin, "size": cp.size, "root": cp.root.hex()},
                    "failure": None})
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verifier",
        description="Independently verify a kiroku log: a whole export, an inclusion proof, a "
        "consistency proof, or keep watching a log (monitor). Exit 0 = verified, 1 = "
        "verification failed (first bad index and kind printed), 2 = unusable input. With "
        "--witness VKEY (repeatable) and --quorum K, a checkpoint also needs K valid witness "
        "cosignatures (C2SP tlog-cosignature/v1).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="verify a JSON Lines export (the default command)")
    ex.add_argument("export", help="export file (JSON Lines), or - for stdin")
    ex.add_argument("--checkpoint", required=True, help="signed checkpoint file")
    ex.add_argument("--vkey", required=True, action="append", help="operator verifier key, or a file holding it; repeatable (the old and the new key during a key rotation, docs/key-rotation.md)")
    ex.add_argument("--json", action="store_true", help="also print a JSON report on stdout")
    ex.add_argument("--no-signatures", action="store_true",
                    help="skip Ed25519 checks of entries (hashes, chain, keys and root only)")
    ex.add_argument("--workers", type=int, default=None,
                    help=f"worker processes (default: all {default_workers()} cores; 0 = none)")
    ex.add_argument("--completeness-key", metavar="FILE",
                    help="the operator's completeness index secret (hex): after the export "
                    "verifies, recompute the index and compare it with --index-note/--index-dump")
    ex.add_argument("--index-note", action="append", default=[], metavar="FILE",
                    help="a signed completeness index note to check (repeatable)")
    ex.add_argument("--index-dump", metavar="FILE",
                    help="the operator's index dump (kiroku log completeness-dump): names the "
                    "index keys and log indices that differ")
    ex.add_argument("--link-codes", metavar="FILE",
                    help="the operator's link-code dump (kiroku log link-code-dump): resolves "
                    "version-2 provisions for the completeness recomputation")
    ex.add_argument("--resident-ca", metavar="FILE",
                    help="the resident CA's certificate (PEM): after the export verifies, check "
                    "each application.submitted entry's resident signature with it "
                    "(docs/applications.md), not only the registrar's")
    _witness_options(ex)
    inc = sub.add_parser("inclusion", help="verify an inclusion proof (JSON)")
    inc.add_argument("proof")
    inc.add_argument("--checkpoint", required=True)
    inc.add_argument("--vkey", required=True, action="append", help="operator verifier key, or a file holding it; repeatable (the old and the new key during a key rotation, docs/key-rotation.md)")
    inc.add_argument("--leaf", help="file with the exact leaf bytes, checked against the proof")
    inc.add_argument("--json", action="store_true")
    _witness_options(inc)
    con = sub.add_parser("consistency", help="verify a consistency proof (JSON) between checkpoints")
    con.add_argument("proof")
    con.add_argument("--old", required=True, help="older signed checkpoint")
    con.add_argument("--new", required=True, help="newer signed checkpoint")
    con.add_argument("--vkey", required=True, action="append", help="operator verifier key, or a file holding it; repeatable (the old and the new key during a key rotation, docs/key-rotation.md)")
    con.add_argument("--json", action="store_true")
    _witness_options(con)
    til = sub.add_parser("tiles", help="verify a log published as C2SP tlog-tiles "
                         "(also: --tiles SOURCE)")
    til.add_argument("source", help="tile directory ('kiroku log tiles --out') or http(s) URL "
                     "prefix serving <prefix>/checkpoint and <prefix>/tile/…")
    til.add_argument("--vkey", required=True, help="operator verifier key, or a file holding it")
    til.add_argument("--json", action="store_true", help="also print a JSON report on stdout")
    til.add_argument("--no-signatures", action="store_true",
                     help="skip Ed25519 checks of operator-signed entries")
    com = sub.add_parser("completeness", help="verify a resident's completeness proof (JSON) "
                         "offline (docs/completeness.md)")
    com.add_argument("proof", help="proof file from GET /v1/me/completeness")
    com.add_argument("--vkey", required=True, help="operator verifier key, or a file holding it")
    com.add_argument("--subject", help="your pseudonym, checked against the signed key note")
    com.add_argument("--held", metavar="FILE", help="JSON list of {index, leaf_hash} of the "
                     "records you were shown: the index must list exactly these")
    com.add_argument("--checkpoint", help="a checkpoint you trust (e.g. witnessed) of the same size")
    mon = sub.add_parser("monitor", help="watch a log's checkpoints for rollback, forks and staleness")
    mon.add_argument("source", help="http(s) URL of the log, or a directory (see docs/verifier.md)")
    mon.add_argument("--vkey", required=True, action="append", help="operator verifier key, or a file holding it; repeatable (the old and the new key during a key rotation, docs/key-rotation.md)")
    mon.add_argument("--state", required=True, help="directory keeping the last verified checkpoint")
    mon.add_argument("--interval", type=float, default=60.0, help="seconds between polls")
    mon.add_argument("--once", action="store_true", help="check once and exit")
    mon.add_argument("--max-age", type=float, default=None,
                     help="fail as stale if the log's checkpoint has not changed for this many seconds")
    _witness_options(mon)
    prf = sub.add_parser("proof", help="verify a C2SP tlog-proof file offline (kiroku log prove)")
    prf.add_argument("proof", help="the .tlog-proof file, or - for stdin")
    prf.add_argument("--vkey", required=True, action="append",
                     help="the log's vkey (its name is the origin); repeatable during a key "
                     "rotation")
    prf.add_argument("--leaf", help="file with the entry's exact bytes, for proofs that do not "
                     "carry them (kiroku's do, in their extra line)")
    prf.add_argument("--origin", help="the checkpoint origin to accept (default: the vkey's name)")
    prf.add_argument("--json", action="store_true")
    _witness_options(prf)
    shd = sub.add_parser("shards", help="verify a sharded log: each shard's export against its "
                         "own checkpoint and vkey, and the link between shards (docs/shards.md)")
    shd.add_argument("--shard", nargs=3, action="append", required=True,
                     metavar=("EXPORT", "CHECKPOINT", "VKEY"),
                     help="one shard, oldest first; repeat for each shard")
    shd.add_argument("--json", action="store_true", help="also print a JSON report on stdout")
    shd.add_argument("--no-signatures", action="store_true",
                     help="skip Ed25519 checks of entries (hashes, chain, keys and root only)")
    shd.add_argument("--workers", type=int, default=None,
                     help="worker processes per export (default: all cores; 0 = none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "--tiles":  # kiroku verify --tiles DIR|URL --vkey …
        args_in[0] = "tiles"
    if args_in and args_in[0] not in COMMANDS and args_in[0] not in ("-h", "--help"):
        args_in.insert(0, "export")
    try:
        args = _parser().parse_args(args_in)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.command == "export":
        code = export_command(args.export, args.checkpoint, args.vkey, as_json=args.json,
                              signatures=not args.no_signatures, workers=args.workers,
                              witnesses=args.witness, quorum=args.quorum)
        if code == EXIT_OK and args.resident_ca:
            from verifier import applications

            origin = load_vkey(_first(args.vkey)).name
            code = applications.audit_command(args.export, origin, args.resident_ca)
        if code == EXIT_OK and (args.completeness_key or args.index_note or args.index_dump
                                or args.link_codes):
            from verifier.completeness import audit_command

            return audit_command(args.export, args.vkey[0], args.completeness_key,
                                 args.index_note, args.index_dump, args.link_codes)
        return code
    if args.command == "completeness":
        from verifier import completeness

        return completeness.proof_command(args.proof, args.vkey, subject=args.subject,
                                          held_file=args.held, checkpoint=args.checkpoint)
    if args.command == "inclusion":
        return inclusion_command(args.proof, args.checkpoint, args.vkey, leaf=args.leaf,
                                 as_json=args.json, witnesses=args.witness, quorum=args.quorum)
    if args.command == "consistency":
        return consistency_command(args.proof, args.old, args.new, args.vkey, as_json=args.json,
                                   witnesses=args.witness, quorum=args.quorum)
    if args.command == "proof":
        return proof_command(args.proof, args.vkey, leaf=args.leaf, as_json=args.json,
                             witnesses=args.witness, quorum=args.quorum, origin=args.origin)
    if args.command == "shards":
        from verifier.shards import shards_command

        return shards_command(args.shard, as_json=args.json, signatures=not args.no_signatures,
                              workers=args.workers)
    if args.command == "tiles":
        return tiles_command(args.source, args.vkey, as_json=args.json,
                             signatures=not args.no_signatures)
    from verifier.monitor import monitor_command

    return monitor_command(args.source, args.vkey, args.state, interval=args.interval,
                           once=args.once, max_age=args.max_age, witnesses=args.witness,
                           quorum=args.quorum)
