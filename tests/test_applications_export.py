"""An export holding a whole application thread (notice, application.submitted, provisions
naming the application, received, decided, forwarded) is accepted by the independent verifier
and by ``kiroku verify``; a changed application payload is caught at its index; ``kiroku log
import`` rebuilds the same log from it (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kiroku.cli import main as cli_main
from ledger import applications as la
from ledger.encoding import format_time
from ledger.errors import DuplicateConflict
from ledger.keys import SigningKey
from ledger.notices import KIND as NOTICE_KIND
from ledger.notices import append_notice
from ledger.signing import sign_statement
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import REGISTERED, World, make_world
from tests.test_restore import ORIGIN, _copy_link_codes, _target, _write_export
from verifier.errors import EntryError
from verifier.export import verify_export_file
from verifier.note import NoteVerifier

SUBJECT = "subj-APPLICANT0000000000"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]


def _address_notice(world: World, notice_id: str) -> Any:
    """An individual notice to SUBJECT from the requester inviting the address-change form."""
    y = world.requester
    now = datetime.now(UTC).replace(microsecond=0)
    return append_notice(world.ledger, sign_statement({
        "notice_id": notice_id, "category": "other",
        "title": {"ja": "住所変更の届出"}, "body": {"ja": "転居された方へ"},
        "valid_from": format_time(now - timedelta(days=1)),
        "valid_until": format_time(now + timedelta(days=30)),
        "target": {"type": "individual", "code": world.code(y, SUBJECT)},
        "form": {"id": "address-change"}}, kind=NOTICE_KIND, agency=y, key=world.keys[y]))


def _thread(world: World) -> dict[str, Any]:
    ledger = world.ledger
    ledger.register_agency("TOKYOGAS", name_ja="東京ガス", name_en="Tokyo Gas",
                           kind=la.PARTNER_KIND, roles=[], registered_at=REGISTERED)
    partner = SigningKey.generate()
    ledger.add_agency_key("TOKYOGAS", partner.public_bytes, valid_from=REGISTERED)
    world.keys["TOKYOGAS"] = partner
    y = world.requester
    notice = _address_notice(world, "address-1")
    request = {"notice": str(notice.id), "form": "address-change",
               "answers": {"new_address": "東京都世田谷区北沢1-2-3", "moved_on": "2026-06-01"},
               "forward": [{"partner": "TOKYOGAS", "consent": True,
                            "customer_number": "1234-5678"}],
               "challenge": "one-time"}
    card = SigningKey.generate()  # the API checks the card's certificate; the ledger does not
    ident, submitted = la.submit(ledger, SUBJECT, request, "-----BEGIN CERTIFICATE-----",
                                 base64.b64encode(card.sign(la.signing_message(
                                     ORIGIN, request))).decode())
    app = str(ident)

    def step(agency: str, kind: str, **extra: Any) -> Any:
        return la.append_step(ledger, sign_statement({"application": app, **extra}, kind=kind,
                                                     agency=agency, key=world.keys[agency]))

    step(y, la.RECEIVED)
    caused = ledger.append(world.statement(agency=y, subject=SUBJECT, application=app))
    world.version = 2
    caused_v2 = ledger.append(world.statement(agency=y, subject=SUBJECT, application=app))
    world.version = 1
    step(y, la.DECIDED, outcome="approved", reason=None)
    step("TOKYOGAS", la.FORWARDED)
    return {"submitted": submitted.index, "provisions": [caused.index, caused_v2.index]}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def built(backend: str, tmp_path: Path) -> Iterator[tuple[World, dict[str, Any], Path, str]]:
    with (sqlite_database() if backend == "sqlite" else postgres_database()) as url:
        world = make_world(url, tmp_path / "src")
        facts = _thread(world)
        export = tmp_path / "export.jsonl"
        _write_export(world.ledger, export)
        note = world.ledger.checkpoint().note
        (tmp_path / "checkpoint.txt").write_text(note, encoding="utf-8")
        yield world, facts, export, note
        world.ledger.close()


def test_verifier_and_cli_accept_the_thread(built: tuple[World, dict[str, Any], Path, str],
                                            tmp_path: Path) -> None:
    world, facts, export, note = built
    kinds = [json.loads(base64.b64decode(json.loads(line)["leaf"]))["kind"]
             for line in export.read_text().splitlines()]
    assert [k for k in kinds if k.startswith(("application.", "notice."))] == [
        "notice.issued", la.SUBMITTED, la.RECEIVED, la.DECIDED, la.FORWARDED]
    verifier = NoteVerifier.from_vkey(world.ledger.vkey)
    report = verify_export_file(str(export), note, verifier, workers=0)
    assert report.entries == world.ledger.tree_size()
    result = CliRunner().invoke(cli_main, ["verify", str(export), "--checkpoint",
                                           str(tmp_path / "checkpoint.txt"), "--vkey",
                                           world.ledger.vkey])
    assert result.exit_code == 0, result.output
    # The provisions name the application in their committed payloads; the leaves do not.
    lines = export.read_text().splitlines()
    for index in facts["provisions"]:
        line = json.loads(lines[index])
        assert line["payload"]["application"]
        assert "application" not in json.loads(base64.b64decode(line["leaf"]))
    # Changing the resident's answers in the export is caught at the application's entry.
    tampered = tmp_path / "tampered.jsonl"
    edited = json.loads(lines[facts["submitted"]])
    edited["payload"]["request"]["answers"]["new_address"] = "大阪府大阪市"
    lines[facts["submitted"]] = json.dumps(edited, ensure_ascii=False)
    tampered.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(EntryError) as caught:
        verify_export_file(str(tampered), note, verifier, workers=0)
    assert caught.value.index == facts["submitted"]


def test_log_import_rebuilds_the_thread(built: tuple[World, dict[str, Any], Path, str],
                                        backend: str, tmp_path: Path) -> None:
    world, _, export, _ = built
    key_file = tmp_path / "operator.pem"
    world.ledger.operator_key.save(key_file)
    with (sqlite_database() if backend == "sqlite" else postgres_database()) as url:
        target = _target(url, tmp_path / "dst", key_file)
        _copy_link_codes(world.ledger.settings.database_url, url)  # not logged: from a backup
        result = CliRunner().invoke(cli_main, [
            "log", "import", str(export), "--vkey", world.ledger.vkey, "--checkpoint",
            str(tmp_path / "checkpoint.txt"), "--workers", "0"], env=target.env)
        assert result.exit_code == 0, result.output
        restored = target.open()
        try:
            size = world.ledger.tree_size()
            assert restored.tree_size() == size
            assert restored.get_root(size) == world.ledger.get_root(size)
            submitted = next(
                json.loads(line) for line in export.read_text().splitlines()
                if '"application.submitted"' in base64.b64decode(json.loads(line)["leaf"]).decode())
            # The application's four entries are one aggregate again, in order.
            restored_app: la.Application = restored.repository.get(uuid.UUID(submitted["payload"]["application"]))
            assert restored_app.version == 4
        finally:
            restored.close()


def test_retention_erases_the_answers_and_the_log_still_verifies_and_imports(
        backend: str, tmp_path: Path) -> None:
    from ledger.encoding import now_utc
    from ledger.retention import erase
    from projections.applications import ApplicationThreads
    from projections.runner import Runner

    with (sqlite_database() if backend == "sqlite" else postgres_database()) as url:
        world = make_world(url, tmp_path / "src")
        try:
            facts = _thread(world)
            ledger = world.ledger
            report = erase(ledger, now_utc() + timedelta(seconds=1))
            assert report.kinds.get(la.SUBMITTED) == 1
            Runner(ledger).catch_up()
            app = la.list_rows(ledger, subject=SUBJECT)[0].id
            thread = ApplicationThreads.for_ledger(ledger).thread(SUBJECT, app)
            assert thread is not None and thread["answers"] is None
            assert [s["step"] for s in thread["steps"]] == ["submitted", "received", "decided",
                                                            "forwarded"]
            assert la.partner_forwards(ledger, "TOKYOGAS") == []  # nothing left to forward
            export = tmp_path / "erased.jsonl"
            _write_export(ledger, export)
            line = json.loads(export.read_text().splitlines()[facts["submitted"]])
            assert line["erased"] and line["payload"] is None
            note = ledger.checkpoint().note
            (tmp_path / "checkpoint.txt").write_text(note, encoding="utf-8")
            verified = verify_export_file(str(export), note,
                                          NoteVerifier.from_vkey(ledger.vkey), workers=0)
            assert facts["submitted"] in {i for a, b in verified.erased.ranges
                                          for i in range(a, b + 1)}
            key_file = tmp_path / "operator.pem"
            ledger.operator_key.save(key_file)
            with (sqlite_database() if backend == "sqlite" else postgres_database()) as dst:
                target = _target(dst, tmp_path / "dst", key_file)
                _copy_link_codes(url, dst)
                result = CliRunner().invoke(cli_main, [
                    "log", "import", str(export), "--vkey", ledger.vkey, "--checkpoint",
                    str(tmp_path / "checkpoint.txt"), "--workers", "0"], env=target.env)
                assert result.exit_code == 0, result.output
                restored = target.open()
                try:
                    size = ledger.tree_size()
                    assert restored.get_root(size) == ledger.get_root(size)
                finally:
                    restored.close()
        finally:
            world.ledger.close()


def test_kiroku_sign_makes_an_application_step_the_log_takes(tmp_path: Path) -> None:
    with sqlite_database() as url:
        world = make_world(url, tmp_path / "src")
        try:
            ledger, y = world.ledger, world.requester
            facts = _thread(world)  # decided "approved" already
            app = la.list_rows(ledger, subject=SUBJECT)[0].id
            key = tmp_path / "agency.pem"
            world.keys[y].save(key)
            result = CliRunner().invoke(cli_main, [
                "sign", "--key", str(key), "--agency", y, "--kind", la.DECIDED, "-"],
                input=json.dumps({"application": app, "outcome": "rejected",
                                  "reason": "withdrawn"}))
            assert result.exit_code == 0, result.output
            statement = json.loads(result.output)
            assert statement["statement"]["kind"] == la.DECIDED
            assert statement["statement"]["v"] == 1
            # Signed right; refused only because this application was decided already.
            with pytest.raises(DuplicateConflict):
                la.append_step(ledger, statement)
            assert ledger.tree_size() > facts["submitted"]
        finally:
            world.ledger.close()


def test_the_verifier_checks_the_residents_own_signature(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """``--resident-ca``: an application the resident signed passes; one the registrar appended
    with a signature the resident's key did not make is named by its index."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

    from api.demo import ensure_ca, issue_resident
    from verifier.cli import main as verify_main

    with sqlite_database() as url:
        world = make_world(url, tmp_path / "src")
        ledger = world.ledger
        try:
            notice = _address_notice(world, "address-2")
            ca_key, ca, ca_path = ensure_ca(tmp_path / "ca")
            cert, _, key_path = issue_resident(ca_key, ca, tmp_path / "residents", "R")
            card = load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(card, rsa.RSAPrivateKey)
            pem = cert.public_bytes(Encoding.PEM).decode()

            def request(moved_on: str) -> dict[str, Any]:
                return {"notice": str(notice.id), "form": "address-change",
                        "answers": {"new_address": "東京都世田谷区北沢1-2-3",
                                    "moved_on": moved_on},
                        "forward": [], "challenge": f"c-{moved_on}"}

            def signed(body: dict[str, Any]) -> str:
                return base64.b64encode(card.sign(la.signing_message(ORIGIN, body),
                                                  padding.PKCS1v15(), hashes.SHA256())).decode()

            genuine = request("2026-06-01")
            la.submit(ledger, SUBJECT, genuine, pem, signed(genuine))

            def verify(name: str) -> int:
                export = tmp_path / f"{name}.jsonl"
                _write_export(ledger, export)
                (tmp_path / f"{name}.txt").write_text(ledger.checkpoint().note)
                return verify_main([str(export), "--checkpoint", str(tmp_path / f"{name}.txt"),
                                    "--vkey", ledger.vkey, "--workers", "0",
                                    "--resident-ca", str(ca_path)])

            assert verify("genuine") == 0
            assert "OK 1 application(s)" in capsys.readouterr().out
            # A registrar that appends an application the resident never signed: the signature
            # it carries is the resident's over another request.
            forged = request("2026-07-01")
            receipt = la.submit(ledger, SUBJECT, forged, pem, signed(request("2026-08-01")))[1]
            assert verify("forged") == 1
            out = capsys.readouterr().out
            assert f"FAILED at index {receipt.index}: application-signature" in out
            # Another CA's certificate is refused as such.
            _, _, other_path = ensure_ca(tmp_path / "other-ca")
            export = tmp_path / "forged.jsonl"
            assert verify_main([str(export), "--checkpoint", str(tmp_path / "forged.txt"),
                                "--vkey", ledger.vkey, "--workers", "0",
                                "--resident-ca", str(other_path)]) == 1
            assert "not issued by the given resident CA" in capsys.readouterr().out
        finally:
            ledger.close()
