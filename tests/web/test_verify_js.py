"""verify.js (the in-browser "verified" mark) run in headless Chromium against the vectors.

One page load runs tests/web/js/verify.test.js; the tests here read its results group by group and
compare what passed with the vector files, so a group that ran nothing or dropped a vector fails.
Ed25519 groups run three times: WebCrypto, the vendored library, and 'auto' in a browser whose
WebCrypto lacks Ed25519 (simulated), which must fall back to the library.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import rfc8785

from tests.dbutil import sqlite_database
from tests.ledger.fixtures import make_world
from tests.web.browser import REPO, PageErrors
from tests.web.bundles import (
    Case,
    ledger_bundle,
    signed_leaf_cases,
    synthetic_bundle,
    tampered_cases,
)
from tests.web.server import serve_static

if TYPE_CHECKING:
    from playwright.sync_api import Browser

VECTORS = REPO / "tests" / "verifier" / "vectors"
SIGNING = REPO / "docs" / "signing-vectors.json"
BACKENDS = {"webcrypto": "webcrypto", "library": "library", "auto-without-webcrypto": "library"}
# A 50-record page at a 1M-entry log (≈20 proof hashes each). Its speed is measured, against its
# target, in bench/bench_pages.py; here only that every record verifies.
BENCH_SIZE, BENCH_RECORDS = 1_000_000, 50
BENCH_RUNS = int(os.environ.get("KIROKU_WEB_BENCH_RUNS", "7"))


def load(name: str) -> dict[str, Any]:
    path = SIGNING if name == "signing" else VECTORS / name
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# Values canonicalised by Python's rfc8785 for verify.js to reproduce (RFC 8785 §3.2.2-3.2.3
# examples among them: ES6 number forms, escapes, UTF-16 member order).
JCS_VALUES: list[Any] = [
    {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001]},
    {"string": "€$\u000f\nA'B\"\\\\\"/", "literals": [None, True, False]},
    {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
     "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
     "\u00f6": "Latin Small Letter O With Diaeresis"},
    [0, -0.0, 1e21, 1e-7, 123456789012345680000.0, 5e-324, 1.7976931348623157e308, -1.5,
     9007199254740991, 0.1, 100, 1e20],
    {"b": {"d": [], "c": {}}, "a": "", "aa": [[{"z": 1, "y": [2, 3]}]]},
    {"affair": "2", "items": ["地方税関係情報", "住民票関係情報"], "tab\t": "\u2028\u2029\u007f"},
]


@pytest.fixture(scope="module")
def ledger_cases() -> Iterator[tuple[list[Case], str]]:
    with sqlite_database() as url:
        world = make_world(url)
        try:
            receipts = [world.ledger.append(world.statement()) for _ in range(3)]
            receipts += [world.ledger.append(world.statement(agency=world.requester))
                         for _ in range(2)]
            bundle, key = ledger_bundle(world.ledger, receipts)
        finally:
            world.ledger.close()
    erased = bundle["records"][4]
    erased.update(payload=None, salt=None)
    erased.pop("expected")
    yield tampered_cases(bundle, key, erased=erased["id"]) + signed_leaf_cases(), erased["id"]


@pytest.fixture(scope="module")
def bench_bundle() -> tuple[dict[str, Any], str]:
    return synthetic_bundle(BENCH_SIZE, BENCH_RECORDS)


class Results(dict[str, Any]):
    """The page's results; shown briefly in failure reports (the full object is very long)."""

    def __repr__(self) -> str:
        return f"<verify.js results: {sorted(self)}>"


@pytest.fixture(scope="module")
def results(browser: Browser, ledger_cases: tuple[list[Case], str],
            bench_bundle: tuple[dict[str, Any], str]) -> Iterator[dict[str, Any]]:
    cases, _ = ledger_cases
    bundle, key = bench_bundle
    payload = {
        "jcs": [{"json": json.dumps(v, ensure_ascii=False), "jcs": rfc8785.dumps(v).decode()}
                for v in JCS_VALUES],
        "records": [c.to_json() for c in cases],
        "bench": {"bundle": bundle, "vkey": key, "runs": BENCH_RUNS, "treeSize": BENCH_SIZE},
    }
    routes: dict[str, Path | bytes] = {
        "/static/js/": REPO / "api" / "web" / "static" / "js",
        "/tests/": REPO / "tests" / "web" / "js",
        "/vectors/": VECTORS,
        "/docs/signing-vectors.json": SIGNING,
        "/cases.json": json.dumps(payload, ensure_ascii=False).encode(),
    }
    errors = PageErrors()
    with serve_static(routes) as base:
        context = browser.new_context()
        page = context.new_page()
        errors.attach(page)
        page.goto(f"{base}/tests/runner.html")
        page.wait_for_function("() => window.__done !== undefined", timeout=30_000)
        data: dict[str, Any] = page.evaluate("() => window.__done")
        context.close()
    data["page_errors"] = errors.all
    yield Results(data)


def test_the_test_page_ran_to_the_end_without_errors(results: dict[str, Any]) -> None:
    assert results["errors"] == []
    assert results["page_errors"] == []


def test_each_backend_was_the_one_asked_for(results: dict[str, Any]) -> None:
    assert results["backends"] == BACKENDS


def _expected_labels() -> dict[str, set[str]]:
    hashes = load("rfc6962_hashes.json")
    tree = hashes["reference_tree"]
    notes = load("signed_note_vectors.json")["vectors"]
    checkpoints = load("checkpoint_vectors.json")["vectors"]
    signing = load("signing")["vectors"]
    ed = [v for v in notes if v["alg"].startswith("ed25519")]
    note_labels = (
        {f"valid:{v['id']}" for v in ed if v["expect"] == "valid"}
        | {f"edited-text:{v['id']}" for v in ed if v["expect"] == "valid"}
        | {f"bad-vkey:{v['id']}:{i}" for v in ed if v["expect"] == "reject_key"
           for i in range(len(v["bad_vkeys"]))}
        | {f"refuses-key:{v['id']}" for v in notes if v not in ed}
        | {f"statement-signature:{v['name']}" for v in signing}
        | {"two-signers-either-key", "wrong-key", "known-key-bad-signature"}
    )
    checkpoint_labels = (
        {v["id"] for v in checkpoints if v["id"] == "gomod-formattree" or v.get("expect") == "parse_only"}
        | {f"refuses-key:{v['id']}" for v in checkpoints if v.get("expect") == "cosignature_valid"}
        | {f"tlog-proof:{v['id']}" for v in load("tlog_proof_vectors.json")["vectors"]}
    )
    labels = {
        "base64": {"roundtrip"},
        "rfc6962_hashes": (
            {v["desc"] for v in hashes["hasher_vectors"]}
            | {f"node[{lv}][{i}]" for lv, row in enumerate(tree["node_hashes_hex"]) for i in range(len(row))}
            | {f"root[{n}]" for n in range(len(tree["root_hashes_by_size_hex"]))}
        ),
        "rfc6962_inclusion": {v["file"] for v in load("rfc6962_inclusion_proofs.json")["vectors"]},
        "rfc6962_consistency": {v["file"] for v in load("rfc6962_consistency_proofs.json")["vectors"]},
        "jcs_commitment": (
            {f"{v['name']}:{part}" for v in signing for part in ("payload", "statement", "commitment")}
            | {f"rfc8785-py:{i}" for i in range(len(JCS_VALUES))}
        ),
    }
    for backend in BACKENDS:
        labels[f"signed_note[{backend}]"] = note_labels
        labels[f"checkpoint[{backend}]"] = checkpoint_labels
    return labels


EXPECTED = _expected_labels()
# Vectors that are not Ed25519 (or are witness cosignatures) are skipped with a reason.
SKIPPED = {
    "signed_note": {v["id"] for v in load("signed_note_vectors.json")["vectors"]
                    if not v["alg"].startswith("ed25519")},
    "checkpoint": {v["id"] for v in load("checkpoint_vectors.json")["vectors"]
                   if v["id"] != "gomod-formattree" and v.get("expect") != "parse_only"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_group(results: dict[str, Any], name: str) -> None:
    group = results["groups"].get(name)
    assert group is not None, f"group {name} did not run"
    assert group["failed"] == []
    missing = EXPECTED[name] - set(group["passed"])
    assert not missing, f"{len(missing)} vectors did not pass: {sorted(missing)[:10]}"
    skipped_ids = {reason.split(":", 1)[0] for reason in group["skipped"]}
    assert skipped_ids == SKIPPED.get(name.split("[")[0], set())
    assert all(reason.split(":", 1)[1].strip() for reason in group["skipped"])


def test_must_fail_probes_are_among_those_that_ran(results: dict[str, Any]) -> None:
    # The vector files are mostly must-fail mutations; each of them was rejected, not skipped.
    for name, file in (("rfc6962_inclusion", "rfc6962_inclusion_proofs.json"),
                       ("rfc6962_consistency", "rfc6962_consistency_proofs.json")):
        must_fail = {v["file"] for v in load(file)["vectors"] if v["wantErr"]}
        assert len(must_fail) == 92
        assert must_fail <= set(results["groups"][name]["passed"])


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_verify_records_on_ledger_bundles(results: dict[str, Any], backend: str,
                                          ledger_cases: tuple[list[Case], str]) -> None:
    cases, erased = ledger_cases
    outcomes = results["records"][backend]
    for case in cases:
        got = outcomes[case.name]
        assert "error" not in got, f"{case.name}: verifyRecords rejected: {got}"
        codes = {rid: "ok" if r["ok"] else r["code"] for rid, r in got.items()}
        assert codes == case.expect, f"{case.name}: {[got[i] for i in got if codes[i] != case.expect[i]]}"
        checkpoint_lines = case.bundle["checkpoint"].split("\n")
        for record in case.bundle["records"]:
            result = got[record["id"]]
            if result["ok"]:
                assert result["index"] == record["index"]
                assert result["treeSize"] == int(checkpoint_lines[1])
                assert result["origin"] == checkpoint_lines[0]
                assert result["erased"] is (record["id"] == erased)
            else:
                assert result["message"], f"{case.name}: failure without a message"


def test_fifty_records_at_a_million_entries_verify(
        results: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    bench = results["bench"]
    assert bench["records"] == BENCH_RECORDS
    assert bench["ok"] == BENCH_RECORDS
    assert bench["proofLength"] >= 19
    median = statistics.median(bench["times"])
    with capsys.disabled():
        print(f"\nverifyRecords: {BENCH_RECORDS} records at tree size {BENCH_SIZE:,} "
              f"({bench['proofLength']} proof hashes, Ed25519 {bench['backend']}): "
              f"median {median:.1f} ms, min {min(bench['times']):.1f} ms, "
              f"max {max(bench['times']):.1f} ms over {len(bench['times'])} runs "
              "(information only: bench/bench_pages.py measures it against its target)")
