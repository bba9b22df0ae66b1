"""Whole-export verification: a valid log passes, and each tampering is named at the right index."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from tests.verifier import exportgen as g
from verifier.chunks import ChunkJob, fast_chunk, general_chunk
from verifier.cli import main
from verifier.entry import canonical_json
from verifier.errors import CheckpointSignatureError, RootMismatch, VerificationError
from verifier.export import verify_export, verify_export_file
from verifier.keys import KeyRegistry
from verifier.note import NoteVerifier


def run(log: g.Log, lines: list[bytes], checkpoint: str | None = None, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("workers", 0)
    return verify_export(lines, checkpoint or log.checkpoint(), NoteVerifier.from_vkey(log.vkey), **kw)  # type: ignore[arg-type]


def run_file(log: g.Log, lines: list[bytes], checkpoint: str | None = None, *,
             data: bytes | None = None, **kw: object):  # type: ignore[no-untyped-def]
    """The same check through ``verify_export_file`` (workers read chunks from the file)."""
    import tempfile

    kw.setdefault("workers", 0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.jsonl"
        path.write_bytes(log.export(lines) if data is None else data)
        return verify_export_file(str(path), checkpoint or log.checkpoint(),
                                  NoteVerifier.from_vkey(log.vkey), **kw)  # type: ignore[arg-type]


def failure(log: g.Log, lines: list[bytes], checkpoint: str | None = None, *, file: bool = False,
            **kw: object) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        (run_file if file else run)(log, lines, checkpoint, **kw)
    return info.value


def test_valid_log_passes(small_log: g.Log) -> None:
    report = run(small_log, small_log.lines)
    assert report.entries == len(small_log.lines) == report.checkpoint.size


def test_valid_log_passes_with_any_json_spelling_of_the_lines(small_log: g.Log) -> None:
    assert run(small_log, g.respell_lines(small_log.lines)).entries == len(small_log.lines)


def test_empty_log() -> None:
    log = g.Log(operator=g.key_from_seed(7))
    assert run(log, []).entries == 0


# (name, tamper, expected index, expected kind). Log layout (build_log): 0 catalog, 1-2 agency A,
# 3-4 agency B, 5-16 provisions (8 erased), 17 revoke A's key, 18 add A's new key, 19-30 provisions.
CASES: list[tuple[str, Callable[[list[bytes]], list[bytes]], int | None, str]] = [
    ("payload", lambda ls: g.tamper_payload(ls, 9), 9, "payload-altered"),
    ("payload of registration", lambda ls: g.tamper_payload_key(ls, 2), 2, "payload-altered"),
    ("signature", lambda ls: g.tamper_signature(ls, 12), 12, "bad-signature"),
    ("time edited", lambda ls: g.tamper_time(ls, 20), 20, "bad-signature"),
    ("prev", lambda ls: g.tamper_prev(ls, 14), 14, "chain-broken"),
    ("prev of first", lambda ls: g.tamper_prev(ls, 0), 0, "chain-broken"),
    ("delete", lambda ls: g.tamper_delete(ls, 11), 11, "entry-missing"),
    ("delete first", lambda ls: g.tamper_delete(ls, 0), 0, "entry-missing"),
    # index and prev are the log's, not the agency's, to sign: an attacker who deletes an entry and
    # re-links all later ones leaves every entry valid; only the signed checkpoint catches it.
    ("delete and rechain", lambda ls: _delete_rechain(ls, 11), 30, "export-too-short"),
    ("delete and relink without renumbering", lambda ls: _delete_relink(ls, 11), 11, "entry-missing"),
    ("insert forged past the end", lambda ls: g.tamper_replay(ls, 7, 13, index=500), 13, "entry-inserted"),
    ("insert copy of a later entry", lambda ls: g.tamper_duplicate(ls, 25, 13), 13, "entry-inserted"),
    ("swap", lambda ls: g.tamper_swap(ls, 10), 10, "entries-reordered"),
    ("move back", lambda ls: g.tamper_move(ls, 22, 6), 6, "entries-reordered"),
    ("move forward", lambda ls: g.tamper_move(ls, 6, 22), 6, "entries-reordered"),
    ("duplicate previous", lambda ls: g.tamper_duplicate(ls, 9, 10), 10, "entry-inserted"),
    ("duplicate old", lambda ls: g.tamper_duplicate(ls, 5, 13), 13, "entry-inserted"),
    ("replay linked", lambda ls: g.tamper_replay(ls, 7, 13), 13, "entry-inserted"),
    ("replay linked, renumbered", lambda ls: g.tamper_replay(ls, 7, 13, renumber=True), 13, "entry-inserted"),
    ("revoked key", lambda ls: g.tamper_sign_with(ls, 21, g.key_from_seed(1)), 21, "key-not-valid"),
    ("unregistered key", lambda ls: g.tamper_sign_with(ls, 21, g.key_from_seed(77)), 21, "key-not-valid"),
    ("non-canonical leaf", lambda ls: g.tamper_noncanonical_leaf(ls, 15), 15, "malformed-entry"),
    ("garbage line", lambda ls: ls[:4] + [b"{not json"] + ls[5:], 4, "malformed-entry"),
    ("blank line", lambda ls: ls[:4] + [b""] + ls[4:], 4, "malformed-entry"),
    ("leaf_hash field", lambda ls: g.tamper_leaf_hash_field(ls, 16), 16, "malformed-entry"),
    ("truncated", lambda ls: ls[:-1], 30, "export-too-short"),
    ("truncated more", lambda ls: ls[:20], 20, "export-too-short"),
    ("rebuilt chain", lambda ls: _swap_rechain(ls, 24), None, "root-mismatch"),
]


def _delete_rechain(lines: list[bytes], i: int) -> list[bytes]:
    lines = g.tamper_delete(lines, i)
    g.rechain(lines, i)
    return lines


def _delete_relink(lines: list[bytes], i: int) -> list[bytes]:
    lines = g.tamper_delete(lines, i)
    g.rechain(lines, i, renumber=False)
    return lines


def _swap_rechain(lines: list[bytes], i: int) -> list[bytes]:
    lines = g.tamper_swap(lines, i)
    g.rechain(lines, i)
    return lines


@pytest.mark.parametrize("name,tamper,index,kind", CASES, ids=[c[0] for c in CASES])
def test_tampering_is_named(small_log: g.Log, name: str, tamper: Callable, index: int | None, kind: str) -> None:
    err = failure(small_log, tamper(list(small_log.lines)))
    assert (err.index, err.kind) == (index, kind), str(err)


@pytest.mark.parametrize("name,tamper,index,kind", CASES[::3], ids=[c[0] for c in CASES[::3]])
def test_parallel_chunks_report_the_same(small_log: g.Log, name: str, tamper: Callable, index: int | None, kind: str) -> None:
    err = failure(small_log, tamper(list(small_log.lines)), workers=2, chunk_size=4)
    assert (err.index, err.kind) == (index, kind), str(err)


@pytest.mark.parametrize("name,tamper,index,kind", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("workers,chunk_size", [(0, 4096), (0, 1), (2, 4)])
def test_export_file_reports_the_same(small_log: g.Log, name: str, tamper: Callable, index: int | None,
                                      kind: str, workers: int, chunk_size: int) -> None:
    err = failure(small_log, tamper(list(small_log.lines)), file=True, workers=workers,
                  chunk_size=chunk_size)
    assert (err.index, err.kind) == (index, kind), str(err)


def test_parallel_chunks_pass_a_valid_log_across_key_changes(small_log: g.Log) -> None:
    # chunk_size 2 puts registrations and revocations in chunks that were sent before the
    # chunks that change keys were folded in: the stale-registry path must re-check, not fail.
    for chunk in (1, 2, 4, 8, 64):
        assert run(small_log, small_log.lines, workers=2, chunk_size=chunk).entries == 31
        assert run_file(small_log, small_log.lines, workers=2, chunk_size=chunk).entries == 31


def test_export_file_line_ends(small_log: g.Log) -> None:
    export = small_log.export()
    assert run_file(small_log, [], data=export.rstrip(b"\n")).entries == 31  # no final newline
    err = failure(small_log, [], file=True, data=export + b"\n")  # a blank line after the last
    assert (err.index, err.kind) == (31, "export-too-long")
    empty = g.Log(operator=g.key_from_seed(7))
    assert run_file(empty, [], data=b"").entries == 0
    err = failure(small_log, [], file=True, data=b"")
    assert (err.index, err.kind) == (0, "export-too-short")


def _jobs(log: g.Log, lines: list[bytes], size: int, signatures: bool) -> list[tuple[ChunkJob, list[bytes]]]:
    """Chunk jobs as the main process would send them, with the exact registry at each start."""
    from verifier.sequence import LogState, Lookahead, check_run

    state = LogState(KeyRegistry(NoteVerifier.from_vkey(log.vkey).public_key))
    jobs = []
    for start in range(0, len(lines), size):
        chunk = lines[start:start + size]
        jobs.append((ChunkJob(start, b"\n".join(chunk), len(chunk), dict(state.registry.keys),
                              state.registry.operator_public_key, signatures), chunk))
        try:
            check_run(state, Lookahead(iter(chunk)), check_signatures=signatures)
        except VerificationError:
            break
    return jobs


@pytest.mark.parametrize("name,tamper,index,kind", CASES, ids=[c[0] for c in CASES])
def test_fast_chunk_accepts_only_what_the_general_check_accepts(
        small_log: g.Log, name: str, tamper: Callable, index: int | None, kind: str) -> None:
    lines = tamper(list(small_log.lines))
    for size in (1, 2, 4, 8):
        for signatures in (True, False):
            for job, chunk in _jobs(small_log, lines, size, signatures):
                fast = fast_chunk(job, chunk)
                if fast is not None:
                    assert fast == general_chunk(job, chunk), (job.start, size)


def test_fast_chunk_takes_plain_provisions_and_leaves_the_rest(small_log: g.Log) -> None:
    jobs = _jobs(small_log, small_log.lines, 4, True)
    fast = {job.start for job, chunk in jobs if fast_chunk(job, chunk) is not None}
    # 0-4 are the catalog and registrations, 17-18 a key change, 5-16 and 19-30 provisions
    # (some erased): every chunk of provisions only goes the fast way.
    assert fast == {8, 12, 20, 24, 28}


def test_too_long(small_log: g.Log) -> None:
    err = failure(small_log, small_log.lines, small_log.checkpoint(size=29))
    assert (err.index, err.kind) == (29, "export-too-long")
    assert "match its root" in str(err)


def test_root_mismatch_with_a_wrong_signed_root(small_log: g.Log) -> None:
    err = failure(small_log, small_log.lines, small_log.checkpoint(root=bytes(32)))
    assert isinstance(err, RootMismatch) and err.index is None


@pytest.mark.parametrize("how", ["other key", "edited body"])
def test_checkpoint_signature_invalid(small_log: g.Log, how: str) -> None:
    if how == "other key":
        cp = small_log.checkpoint(key=g.key_from_seed(4242))
    else:
        body, sig = small_log.checkpoint().split("\n\n")
        cp = body.replace("\n31\n", "\n30\n") + "\n\n" + sig
    err = failure(small_log, small_log.lines, cp)
    assert isinstance(err, CheckpointSignatureError) and err.kind == "checkpoint-signature-invalid"


def test_bad_entry_is_reported_before_a_bad_checkpoint(small_log: g.Log) -> None:
    cp = small_log.checkpoint(key=g.key_from_seed(4242))
    err = failure(small_log, g.tamper_payload(small_log.lines, 9), cp)
    assert (err.index, err.kind) == (9, "payload-altered")


def test_no_signatures_mode_skips_only_signatures(small_log: g.Log) -> None:
    lines = g.tamper_signature(small_log.lines, 12)
    err = failure(small_log, lines, check_signatures=False)
    assert (err.index, err.kind) == (13, "chain-broken")  # the edit still breaks the chain
    err = failure(small_log, g.tamper_payload(small_log.lines, 9), check_signatures=False)
    assert err.kind == "payload-altered"


def test_floats_in_a_payload_fall_back_to_rfc8785() -> None:
    log = g.Log(operator=g.key_from_seed(8))
    log.append("catalog.loaded", "operator", log.operator, {"version": "1", "ratio": 1e16, "x": 0.1})
    assert run(log, log.lines).entries == 1
    assert run(log, g.respell_lines(log.lines)).entries == 1


def test_canonical_json_equals_rfc8785() -> None:
    samples = [{"b": [1, "é", None, True], "a": {"z": "\u2028\x00\n\"\\", "y": -5}},
               {"\U0001f600": 1, "\ufb33": 2}, {"f": 1.5}, {"big": 2**60 - 1, "n": -(2**53) + 1}]
    for obj in samples[:2] + samples[3:]:
        if obj.get("big"):
            with pytest.raises(rfc8785.CanonicalizationError):
                rfc8785.dumps(obj)
            continue
        assert canonical_json(obj) == rfc8785.dumps(obj)
    assert canonical_json(samples[2]) == rfc8785.dumps(samples[2])


# --- the command line: exit codes 0 / 1 / 2 --------------------------------------------------

@pytest.fixture()
def files(tmp_path: Path, small_log: g.Log) -> dict[str, str]:
    (tmp_path / "export.jsonl").write_bytes(small_log.export())
    (tmp_path / "bad.jsonl").write_bytes(small_log.export(g.tamper_swap(small_log.lines, 10)))
    (tmp_path / "checkpoint").write_text(small_log.checkpoint())
    (tmp_path / "vkey").write_text(small_log.vkey + "\n")
    (tmp_path / "junk").write_text("not a checkpoint\n")
    return {p.name: str(p) for p in tmp_path.iterdir()} | {"vkey_text": small_log.vkey}


def test_cli_ok(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([files["export.jsonl"], "--checkpoint", files["checkpoint"], "--vkey", files["vkey"]]) == 0
    assert capsys.readouterr().out.startswith("OK 31 entries")
    assert main(["export", files["export.jsonl"], "--checkpoint", files["checkpoint"],
                 "--vkey", files["vkey_text"], "--workers", "2", "--no-signatures"]) == 0


def test_cli_failure_names_index_and_kind(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main([files["bad.jsonl"], "--checkpoint", files["checkpoint"], "--vkey", files["vkey"], "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("FAIL index 10: entries-reordered:")
    report = json.loads(captured.out)  # with --json, stdout is only the JSON report
    assert report["failure"]["index"] == 10 and report["failure"]["kind"] == "entries-reordered"


@pytest.mark.parametrize("args", [
    ["missing.jsonl", "--checkpoint", "checkpoint", "--vkey", "vkey"],
    ["export.jsonl", "--checkpoint", "missing", "--vkey", "vkey"],
    ["export.jsonl", "--checkpoint", "junk", "--vkey", "vkey"],
    ["export.jsonl", "--checkpoint", "checkpoint", "--vkey", "junk"],
    ["export.jsonl", "--checkpoint", "checkpoint"],
])
def test_cli_unusable_input_exits_2(files: dict[str, str], args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = [files.get(a, a) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


@given(data=st.lists(st.sampled_from([b"a", b"bb", b"\n", b"ccc\n", b"\n\n", b"x" * 40]), max_size=30)
       .map(b"".join),
       size=st.integers(1, 9), window=st.sampled_from([1, 2, 7, 64]), average=st.sampled_from([0.5, 3.0, 50.0]))
def test_file_chunks_cut_the_lines_export_lines_reads(data: bytes, size: int, window: int, average: float) -> None:
    import io
    import tempfile

    from verifier.export import _FileChunks, export_lines

    expected = list(export_lines(io.BytesIO(data)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.jsonl"
        path.write_bytes(data)
        chunks = _FileChunks(str(path), None)
        chunks.WINDOW, chunks._average = window, average  # type: ignore[misc]
        template = ChunkJob(0, None, 0, {}, b"", False)
        got: list[bytes] = []
        try:
            while (taken := chunks.take(len(got), size, {}, template)) is not None:
                job, item = taken
                assert job.span is not None and 1 <= job.count <= size
                _, offset, length = job.span
                lines = data[offset:offset + length].split(b"\n")
                assert len(lines) == job.count and lines == chunks.lines_of(item)
                got += lines
        finally:
            chunks.close()
    assert got == expected


def test_cli_reads_the_export_from_stdin(files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import io

    for name, code in (("export.jsonl", 0), ("bad.jsonl", 1)):
        data = Path(files[name]).read_bytes()
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        assert main(["-", "--checkpoint", files["checkpoint"], "--vkey", files["vkey"]]) == code
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL index 10: entries-reordered")
