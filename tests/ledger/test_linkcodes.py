"""Per-agency link codes (符号): issuing, version-2 payloads, refusals, and what agencies see.

On SQLite and PostgreSQL. Codes are recomputed here from the documented derivation
(docs/log-format.md, "Provision payload, version 2") with hmac and base64, not ledger code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ledger import errors
from ledger.encoding import format_time
from ledger.linkcodes import key_path
from ledger.signing import sign_statement
from projections.anomalies import resident_ref
from projections.report import AgencyReport
from projections.resident import ResidentRecords
from projections.runner import runner_for
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import REGISTERED, World, make_world

SUBJECT = "subj-LINKLINKLINKLINKLINK"
OTHER = "subj-OTHEROTHEROTHEROTHE"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url, version=2)
        yield w
        from projections.runner import _runners

        runner = _runners.pop(w.ledger, None)
        if runner is not None:
            runner.close()
        w.ledger.close()


def _documented_code(world: World, agency: str, subject: str) -> str:
    secret = bytes.fromhex(key_path(world.ledger.settings.key_dir).read_text())
    mac = hmac.new(secret, b"kiroku/link-code/v1\n" + agency.encode() + b"\n" + subject.encode(),
                   hashlib.sha256).digest()
    return base64.b32encode(mac).decode()[:26]


def _refused(world: World, submission: Any, error: type[errors.LedgerError]) -> str:
    before = world.ledger.tree_size()
    with pytest.raises(error) as caught:
        world.ledger.append(submission)
    assert type(caught.value) is error
    assert world.ledger.tree_size() == before, "a refused statement appends nothing"
    return str(caught.value)


def test_one_residents_codes_differ_per_agency_and_department(world: World) -> None:
    world.ledger.register_agency("131121-boe", name_ja="世田谷区教育委員会",
                                 name_en="Setagaya Board of Education", kind="municipality",
                                 roles=[world.basis.provider], registered_at=REGISTERED)
    agencies = [world.requester, world.provider, "131121-boe"]
    codes = {a: world.ledger.issue_link_codes(a, [SUBJECT])[SUBJECT] for a in agencies}

    assert len(set(codes.values())) == 3  # a department is a sector of its own
    for agency, code in codes.items():
        assert code == _documented_code(world, agency, SUBJECT)
        assert len(code) == 26 and set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert SUBJECT.lower() not in code.lower()
    # Issuing is idempotent, and two residents never share a code at one agency.
    assert world.ledger.issue_link_codes(world.provider, [SUBJECT])[SUBJECT] == codes[world.provider]
    assert world.ledger.issue_link_codes(world.provider, [OTHER])[OTHER] != codes[world.provider]
    # K_link sits beside the operator key, readable by its owner only.
    mode = key_path(world.ledger.settings.key_dir).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_issuing_refuses_unknown_agencies_and_my_numbers(world: World) -> None:
    with pytest.raises(errors.UnknownAgency):
        world.ledger.issue_link_codes("999999", [SUBJECT])
    with pytest.raises(errors.InvalidRequest, match="My Number"):
        world.ledger.issue_link_codes(world.provider, ["123456789012"])


def test_version_2_is_signed_as_v2_and_appended(world: World) -> None:
    submission = world.statement(subject=SUBJECT)

    receipt = world.ledger.append(submission)

    assert submission["statement"]["v"] == 2 and receipt.entry["v"] == 2
    assert "subject" not in submission["payload"]
    assert submission["payload"]["requester_code"] == world.code(world.requester, SUBJECT)
    assert world.ledger.append(submission) == receipt  # idempotent as version 1


def test_a_code_of_another_agency_is_refused(world: World) -> None:
    provider_code = world.code(world.provider, SUBJECT)
    # The requester's field holds the provider's code for the same resident.
    message = _refused(world, world.statement(subject=SUBJECT, requester_code=provider_code,
                                              provider_code=provider_code),
                       errors.LinkCodeOfAnotherAgency)
    assert "requester_code" in message
    # The refusal names neither the resident nor which agency the code belongs to.
    assert SUBJECT not in message and provider_code not in message
    assert world.provider not in message
    # ... and a code of the stranger agency in the provider's field.
    stranger_code = world.code(world.stranger, SUBJECT)
    _refused(world, world.statement(subject=SUBJECT, provider_code=stranger_code),
             errors.LinkCodeOfAnotherAgency)


def test_unknown_codes_codes_of_two_residents_and_subject_are_refused(world: World) -> None:
    world.code(world.provider, SUBJECT)  # the registry's key exists once a code was issued
    never_issued = _documented_code(world, world.provider, "subj-NEVERISSUED")
    _refused(world, world.statement(subject=SUBJECT, provider_code=never_issued),
             errors.UnknownLinkCode)
    _refused(world, world.statement(subject=SUBJECT,
                                    provider_code=world.code(world.provider, OTHER)),
             errors.LinkCodesOfDifferentResidents)
    with_subject = world.payload(subject=SUBJECT)
    with_subject["subject"] = SUBJECT
    _refused(world, sign_statement(with_subject, kind="provision", agency=world.provider,
                                   key=world.keys[world.provider]),
             errors.SubjectInVersion2)
    _refused(world, world.statement(subject=SUBJECT, requester_code="not-a-code"),
             errors.MalformedStatement)
    _refused(world, world.statement(subject=SUBJECT, disclose_after="tomorrow"),
             errors.MalformedStatement)


def test_a_batch_with_one_bad_code_appends_nothing(world: World) -> None:
    good = [world.statement(subject=SUBJECT) for _ in range(3)]
    bad = world.statement(subject=SUBJECT, requester_code=world.code(world.provider, SUBJECT))
    before = world.ledger.tree_size()

    with pytest.raises(errors.BatchRejected) as caught:
        world.ledger.append_batch([*good, bad])

    assert [(i, e.code) for i, e in caught.value.errors] == [(3, "link-code-of-another-agency")]
    assert world.ledger.tree_size() == before


def test_disclose_after_is_kept_in_the_payload(world: World) -> None:
    later = format_time(datetime.now(UTC).replace(microsecond=0) + timedelta(days=30))
    receipt = world.ledger.append(world.statement(subject=SUBJECT, disclose_after=later))
    line = next(iter(world.ledger.export(receipt.index, receipt.index + 1)))
    assert line["payload"]["disclose_after"] == later


def test_a_resident_sees_v1_and_v2_records_in_one_view(world: World) -> None:
    world.version = 1
    old = world.ledger.append(world.statement(subject=SUBJECT))
    world.version = 2
    new = world.ledger.append(world.statement(subject=SUBJECT))
    world.ledger.append(world.statement(subject=OTHER))
    runner = runner_for(world.ledger)
    runner.catch_up()

    page = ResidentRecords.for_ledger(world.ledger).list(SUBJECT)

    assert sorted(r.index for r in page.items) == [old.index, new.index]
    assert ResidentRecords.for_ledger(world.ledger).get(SUBJECT, new.id) is not None
    assert ResidentRecords.for_ledger(world.ledger).get(OTHER, new.id) is None
    # The completeness index lists both records under the one resident.
    world.ledger.checkpoint()
    proof = world.ledger.completeness.prove(SUBJECT)
    assert [r["index"] for r in proof["records"]] == [old.index, new.index]
    # A rebuild from index 0 resolves the codes again to identical views.
    result = runner.rebuild()
    assert result.identical, result.mismatched()


def _burst(world: World, subject: str, n: int = 5) -> list[dict[str, Any]]:
    """n requests about one resident within an hour, on a Wednesday morning (JST)."""
    start = datetime(2026, 3, 4, 1, 0, tzinfo=UTC)  # 10:00 JST
    return [world.statement(subject=subject, requested_at=format_time(start + timedelta(minutes=i)),
                            provided_at=format_time(start + timedelta(minutes=i, seconds=30)))
            for i in range(n)]


def test_what_agencies_see_never_links_them(world: World) -> None:
    # Two requesters ask about the same resident; each is flagged for a burst in its report.
    second = "KYOKAI-2"
    world.ledger.register_agency(second, name_ja="全国健康保険協会 東京支部",
                                 name_en="Kyokai Kenpo Tokyo", kind="insurer",
                                 roles=[world.basis.requester], registered_at=REGISTERED)
    from ledger.keys import SigningKey

    world.keys[second] = SigningKey.generate()
    world.ledger.add_agency_key(second, world.keys[second].public_bytes, valid_from=REGISTERED)
    receipts = world.ledger.append_batch(_burst(world, SUBJECT))
    world.requester, kyokai = second, world.requester
    receipts += world.ledger.append_batch(_burst(world, SUBJECT))
    world.requester = kyokai
    runner_for(world.ledger).catch_up()
    reports = AgencyReport.for_ledger(world.ledger)
    codes = {a: world.code(a, SUBJECT) for a in (kyokai, second, world.provider)}
    assert len(set(codes.values())) == 3

    seen: dict[str, str] = {}
    for agency in (kyokai, second):
        report = reports.get(agency)
        bursts = report["anomalies"]["bursts"]
        # named by a digest of its own code: no pseudonym, no other agency's code
        assert [b["resident"] for b in bursts] == [resident_ref(codes[agency])]
        seen[agency] = json.dumps(report, ensure_ascii=False)
    for agency, text in seen.items():
        assert SUBJECT not in text
        for other, code in codes.items():
            if other != agency:
                assert code not in text, f"{agency} sees {other}'s code"
    # Receipts hold the leaf only: no code, no pseudonym.
    for receipt in receipts:
        dumped = json.dumps(receipt.to_json())
        assert SUBJECT not in dumped and not any(c in dumped for c in codes.values())
    # The export (auditors only) holds each exchange's two codes, never the pseudonym, and no
    # value common to the two requesters' records.
    lines = list(world.ledger.export())
    assert SUBJECT not in json.dumps(lines)
    by_requester: dict[str, set[str]] = {kyokai: set(), second: set()}
    for line in lines:
        payload = line["payload"] or {}
        if payload.get("requester") in by_requester:
            by_requester[payload["requester"]].add(payload["requester_code"])
    assert by_requester == {kyokai: {codes[kyokai]}, second: {codes[second]}}


def test_operator_and_agency_commands(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """kiroku init makes K_link; 'resident link-code' issues codes; 'kiroku sign' signs
    version 2 by default, still signs a version-1 payload, and refuses a forced mismatch."""
    from click.testing import CliRunner

    from kiroku.cli import main

    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)

    def kiroku(*args: str, input: str | None = None) -> Any:
        return CliRunner().invoke(main, list(args), input=input)

    assert "link-code key" in kiroku("init").output
    assert stat.S_IMODE((tmp_path / "var" / "keys" / "link-code.key").stat().st_mode) == 0o600
    for code, role in (("JHIA", "全国健康保険協会"), ("131121", "市町村長")):
        assert kiroku("agency", "register", code, "--name-ja", code, "--name-en", code, "--kind",
                      "insurer", "--role", role, "--registered-at",
                      "2025-01-01T00:00:00Z").exit_code == 0
    key = tmp_path / "setagaya.pem"
    assert kiroku("agency", "add-key", "131121", "--generate", str(key), "--valid-from",
                  "2025-01-01T00:00:00Z").exit_code == 0

    issued = kiroku("resident", "link-code", "131121", "--subject", SUBJECT)
    assert issued.exit_code == 0 and len(issued.output.strip()) == 26
    assert kiroku("resident", "link-code", "131121", "--subject", SUBJECT).output == issued.output
    both = kiroku("resident", "link-code", "JHIA", "--subject", SUBJECT, "--subject", OTHER)
    lines = [json.loads(line) for line in both.output.splitlines()]
    assert [line["subject"] for line in lines] == [SUBJECT, OTHER]
    assert kiroku("resident", "link-code", "NOPE", "--subject", SUBJECT).exit_code == 1

    payload = {"request_id": "cli-1", "requester": "JHIA", "provider": "131121", "basis": "2-4",
               "affair": "2", "items": ["住民票関係情報"], "requested_at": "2026-01-05T01:00:00Z",
               "provided_at": "2026-01-05T01:01:00Z", "outcome": "provided", "reason": None,
               "non_disclosure": False, "operator": "op-JHIA-1",
               "requester_code": lines[0]["code"], "provider_code": issued.output.strip()}
    signed = kiroku("sign", "--key", str(key), "-", input=json.dumps(payload))
    assert signed.exit_code == 0 and json.loads(signed.output)["statement"]["v"] == 2
    receipt = kiroku("append", "-", input=signed.output)
    assert receipt.exit_code == 0, receipt.output
    assert json.loads(receipt.output)["entry"]["v"] == 2

    old = {k: v for k, v in payload.items() if not k.endswith("_code")}
    old.update(request_id="cli-2", subject=SUBJECT)
    assert json.loads(kiroku("sign", "--key", str(key), "-",
                             input=json.dumps(old)).output)["statement"]["v"] == 1
    forced = kiroku("sign", "--key", str(key), "--payload-version", "2", "-",
                    input=json.dumps(old))
    assert forced.exit_code == 2 and "--payload-version 1" in forced.output
    # A code issued to the requester, presented as the provider's: refused, exit 1.
    swapped = dict(payload, request_id="cli-3", provider_code=lines[0]["code"])
    refused = kiroku("append", "-", input=kiroku("sign", "--key", str(key), "-",
                                                 input=json.dumps(swapped)).output)
    assert refused.exit_code == 1 and "link-code-of-another-agency" in refused.output
