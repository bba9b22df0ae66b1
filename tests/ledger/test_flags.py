"""Flags as log entries (provision.flagged) and proxies as registrar entries, on SQLite and
PostgreSQL: who may flag, what is refused, replays, and what an offline verifier accepts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner

from kiroku.cli import main as cli_main
from ledger.application import Receipt
from ledger.errors import BadSignature, MalformedStatement
from ledger.flags import (
    KIND,
    FlagNotSet,
    FlagSubmitterNotAllowed,
    UnknownFlag,
    UnknownProvision,
    UnknownReason,
    flag_payload,
)
from ledger.keys import SigningKey
from ledger.proxies import InvalidProxy, ProxyAlreadyRegistered, UnknownProxy, list_for_principal
from ledger.signing import sign_statement
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.ledger.fixtures import REGISTERED, World, make_world
from verifier.export import verify_export_file
from verifier.note import NoteVerifier

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]
AUTHORITY = "PPC"
REGISTRATION = "3b9a6c1e-7f7d-4e0a-9d2b-2f4a5c6d7e8f"


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    database = sqlite_database if request.param == "sqlite" else postgres_database
    with database() as url:
        w = make_world(url)
        # An authority: registered with kind "authority" and no catalog role.
        w.ledger.register_agency(AUTHORITY, name_ja="個人情報保護委員会",
                                 name_en="Personal Information Protection Commission",
                                 kind="authority", roles=[], registered_at=REGISTERED)
        key = SigningKey.generate()
        w.ledger.add_agency_key(AUTHORITY, key.public_bytes, valid_from=REGISTERED)
        w.keys[AUTHORITY] = key
        yield w
        w.ledger.close()


def _flag(world: World, agency: str, provision: UUID | str, flag: str = "non_disclosure", *,
          set: bool = True, reason: str = "dv_support_measure",
          disclose_after: datetime | None = None, **extra: Any) -> dict[str, Any]:
    payload = {**flag_payload(provision, flag, set=set, reason=reason,
                              disclose_after=disclose_after), **extra}
    return sign_statement(payload, kind=KIND, agency=agency, key=world.keys[agency])


def _record(world: World, **overrides: Any) -> Receipt:
    return world.ledger.append(world.statement(**overrides))


def test_provider_requester_and_authority_set_and_lift(world: World) -> None:
    record = _record(world)
    ledger = world.ledger
    ledger.append_flag(_flag(world, world.provider, record.id))
    history = ledger.get_flag_history(record.id)
    assert history.withheld() and history.in_force() == {"non_disclosure": None}
    ledger.append_flag(_flag(world, world.requester, record.id, "self_information_block",
                             reason="criminal_investigation"))
    ledger.append_flag(_flag(world, world.provider, record.id, set=False,
                             reason="grounds_ceased"))
    assert ledger.get_flag_history(record.id).in_force() == {"self_information_block": None}
    ledger.append_flag(_flag(world, AUTHORITY, record.id, "self_information_block", set=False,
                             reason="set_in_error"))
    history = ledger.get_flag_history(record.id)
    assert not history.withheld()
    assert [(c.agency, c.role, c.flag, c.set, c.reason) for c in history.changes] == [
        (world.provider, "provider", "non_disclosure", True, "dv_support_measure"),
        (world.requester, "requester", "self_information_block", True, "criminal_investigation"),
        (world.provider, "provider", "non_disclosure", False, "grounds_ceased"),
        (AUTHORITY, "authority", "self_information_block", False, "set_in_error"),
    ]


def test_refusals_append_nothing(world: World) -> None:
    record = _record(world)
    ledger = world.ledger
    size = ledger.tree_size()
    refused: list[tuple[dict[str, Any], type[Exception]]] = [
        (_flag(world, world.stranger, record.id), FlagSubmitterNotAllowed),
        (_flag(world, world.provider, "5f0c9e1e-2d7b-5c43-9a51-8d1f6f7d1b2a"), UnknownProvision),
        (_flag(world, world.provider, record.id, "hide_everything"), UnknownFlag),
        (_flag(world, world.provider, record.id, reason="because"), UnknownReason),
        (_flag(world, world.provider, record.id, set=False, reason="grounds_ceased"), FlagNotSet),
        (_flag(world, world.provider, record.id, extra_key=1), MalformedStatement),
    ]
    for statement, error in refused:
        with pytest.raises(error):
            ledger.append_flag(statement)
    forged = _flag(world, world.provider, record.id)
    forged["payload"]["reason"] = "court_order"
    with pytest.raises(Exception) as caught:
        ledger.append_flag(forged)
    assert getattr(caught.value, "code", "") == "commitment-mismatch"
    tampered = _flag(world, world.provider, record.id)
    tampered["statement"]["time"] = "2026-01-01T00:00:00Z"
    with pytest.raises(BadSignature):
        ledger.append_flag(tampered)
    # A flag statement is not a provision: the provision routes refuse it.
    with pytest.raises(MalformedStatement):
        ledger.append(_flag(world, world.provider, record.id))
    assert ledger.tree_size() == size
    assert ledger.get_flag_history(record.id).changes == []


def test_a_replay_appends_nothing_and_gets_the_same_receipt(world: World) -> None:
    record = _record(world)
    statement = _flag(world, world.provider, record.id)
    first = world.ledger.append_flag(statement)
    again = world.ledger.append_flag(statement)
    assert (again.index, again.leaf, again.id) == (first.index, first.leaf, record.id)
    assert world.ledger.tree_size() == first.index + 1


def test_payload_flag_can_be_lifted_and_expired_flags_are_not_in_force(world: World) -> None:
    ledger = world.ledger
    hidden = _record(world, non_disclosure=True)
    assert ledger.get_flag_history(hidden.id).changes[0].reason == "recorded"
    ledger.append_flag(_flag(world, world.requester, hidden.id, set=False,
                             reason="grounds_ceased"))
    assert not ledger.get_flag_history(hidden.id).withheld()
    # A delayed disclosure that has passed is no longer in force: there is nothing to lift.
    past = _record(world)
    ledger.append_flag(_flag(world, world.provider, past.id, reason="criminal_investigation",
                             disclose_after=datetime.now(UTC) - timedelta(seconds=1)))
    assert not ledger.get_flag_history(past.id).withheld()
    with pytest.raises(FlagNotSet):
        ledger.append_flag(_flag(world, world.provider, past.id, set=False,
                                 reason="grounds_ceased"))
    future = datetime.now(UTC) + timedelta(days=30)
    ledger.append_flag(_flag(world, world.provider, past.id, reason="criminal_investigation",
                             disclose_after=future))
    history = ledger.get_flag_history(past.id)
    assert history.withheld() and not history.withheld(future + timedelta(seconds=1))


def test_entries_carry_no_personal_data_and_the_verifier_accepts_them(
        world: World, tmp_path: Path) -> None:
    ledger = world.ledger
    subject = "subj-VICTIMVICTIMVICTIM0"
    record = _record(world, subject=subject)
    ledger.append_flag(_flag(world, world.provider, record.id))
    registration, _ = ledger.register_proxy(subject, "proxy:helper-1", "legal_representative")
    ledger.cancel_proxy(registration.id, by="authority", reason="court_order")
    checkpoint = ledger.checkpoint()
    lines = list(ledger.export())
    kinds = [json.loads(_leaf(line))["kind"] for line in lines]
    assert kinds[-3:] == ["provision.flagged", "proxy.registered", "proxy.cancelled"]
    for line in lines[-3:]:
        text = json.dumps(line, ensure_ascii=False)
        assert subject not in text and "helper-1" not in text  # payloads hold digests only
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
                              for line in lines))
    report = verify_export_file(str(export), checkpoint.note,
                                NoteVerifier.from_vkey(ledger.vkey), workers=0)
    assert report.entries == len(lines)


def test_proxy_registration_is_keyed_on_the_pseudonym_and_only_the_principal_cancels(
        world: World) -> None:
    ledger = world.ledger
    registration, receipt = ledger.register_proxy("subj-A", "proxy:p1", "appointed")
    assert receipt.index == registration.registered_idx
    with pytest.raises(ProxyAlreadyRegistered):
        ledger.register_proxy("subj-A", "proxy:p1", "appointed")
    with pytest.raises(InvalidProxy):
        ledger.register_proxy("subj-A", "subj-A", "appointed")
    with pytest.raises(InvalidProxy):
        ledger.register_proxy("subj-A", "proxy:p2", "friend")
    size = ledger.tree_size()
    with pytest.raises(UnknownProxy):  # a stranger's cancellation is refused, like a missing one
        ledger.cancel_proxy(registration.id, by="principal", reason="principal_request",
                            principal="subj-B")
    assert ledger.tree_size() == size
    assert [r.id for r in list_for_principal(ledger, "subj-A")] == [registration.id]
    ledger.cancel_proxy(registration.id, by="principal", reason="principal_request",
                        principal="subj-A")
    assert list_for_principal(ledger, "subj-A") == []
    with pytest.raises(UnknownProxy):
        ledger.cancel_proxy(registration.id, by="authority", reason="court_order")


def _leaf(line: dict[str, Any]) -> bytes:
    import base64

    return base64.b64decode(line["leaf"])


def test_cli_signs_and_appends_flags_and_an_authority_cancels_a_proxy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cli import _payload, _set_up_agencies, kiroku

    monkeypatch.setenv("KIROKU_HOME", str(tmp_path / "var"))
    monkeypatch.delenv("KIROKU_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    key = _set_up_agencies(tmp_path)
    (tmp_path / "p.json").write_text(json.dumps(_payload(1)))
    signed = kiroku("sign", "--key", str(key), "--payload-version", "1", str(tmp_path / "p.json"))
    provision = json.loads(kiroku("append", "-", input=signed.output).output)["id"]
    flag = {"provision": provision, "flag": "non_disclosure", "set": True,
            "reason": "dv_support_measure"}
    (tmp_path / "f.json").write_text(json.dumps(flag))
    signed_flag = kiroku("sign", "--key", str(key), "--agency", "131121", "--kind", KIND,
                         str(tmp_path / "f.json"))
    assert json.loads(signed_flag.output)["statement"]["kind"] == KIND
    receipt = kiroku("append", "-", input=signed_flag.output)
    assert receipt.exit_code == 0, receipt.output
    assert json.loads(receipt.output)["id"] == provision
    lift = {**flag, "set": False, "reason": "grounds_ceased"}
    (tmp_path / "l.json").write_text(json.dumps(lift))
    signed_lift = kiroku("sign", "--key", str(key), "--agency", "131121", "--kind", KIND,
                         str(tmp_path / "l.json"))
    assert kiroku("append", "-", input=signed_lift.output).exit_code == 0
    refused = CliRunner().invoke(cli_main, ["append", "-"], input=signed_lift.output)
    assert refused.exit_code == 0  # the same statement again: the same receipt
    (tmp_path / "l2.json").write_text(json.dumps({**lift, "reason": "set_in_error"}))
    second_lift = kiroku("sign", "--key", str(key), "--agency", "131121", "--kind", KIND,
                         str(tmp_path / "l2.json"))
    refused = CliRunner().invoke(cli_main, ["append", "-"], input=second_lift.output)
    assert refused.exit_code == 1 and "flag-not-set" in refused.output
    missing = CliRunner().invoke(cli_main, ["proxy", "cancel", REGISTRATION,
                                            "--reason", "court_order"])
    assert missing.exit_code == 1 and "unknown-proxy" in missing.output
