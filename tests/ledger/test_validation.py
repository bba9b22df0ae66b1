"""Every validation rule refuses the bad statement with its own error, and appends nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from ledger import errors
from ledger.encoding import format_time
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import REGISTERED, World, make_world


@pytest.fixture
def world() -> Iterator[World]:
    with sqlite_database() as url:
        w = make_world(url)
        yield w
        w.ledger.close()


def refused(world: World, submission: object, error: type[errors.LedgerError]) -> str:
    before = world.ledger.tree_size()
    with pytest.raises(error) as caught:
        world.ledger.append(submission)
    assert world.ledger.tree_size() == before, "a refused statement must append nothing"
    assert type(caught.value) is error, f"expected {error.__name__}, got {type(caught.value)}"
    return str(caught.value)


def test_valid_statement_is_appended_with_a_receipt(world: World) -> None:
    submission = world.statement()
    receipt = world.ledger.append(submission)
    assert receipt.index == world.ledger.tree_size() - 1
    entry = receipt.entry
    assert entry["kind"] == "provision" and entry["agency"] == world.provider
    assert world.ledger.get_leaf(receipt.index) == (receipt.leaf, receipt.leaf_hash)
    stored = world.ledger.repository.get(receipt.id)  # the event-sourced aggregate
    assert stored.payload == submission["payload"] and stored.signature == submission["signature"]


def test_leaf_carries_no_personal_data(world: World) -> None:
    submission = world.statement()
    leaf = world.ledger.append(submission).leaf.decode()
    for secret in (submission["payload"]["subject"], submission["payload"]["request_id"],
                   submission["payload"]["operator"], submission["salt"]):
        assert secret not in leaf


def test_bad_signature(world: World) -> None:
    submission = world.statement()
    submission["signature"] = world.statement()["signature"]  # another statement's signature
    message = refused(world, submission, errors.BadSignature)
    assert "canonical JSON" in message


def test_tampered_payload_breaks_commitment(world: World) -> None:
    submission = world.statement()
    submission["payload"]["subject"] = "subj-SOMEBODYELSE000000"
    refused(world, submission, errors.CommitmentMismatch)


def test_unknown_key(world: World) -> None:
    refused(world, world.statement(key=SigningKey.generate()), errors.UnknownKey)


def test_key_of_another_agency(world: World) -> None:
    submission = world.statement(key=world.keys[world.stranger])
    assert "belongs to agency 'MOJ'" in refused(world, submission, errors.KeyOfAnotherAgency)


def test_key_not_yet_valid(world: World) -> None:
    key = SigningKey.generate()
    world.ledger.add_agency_key(world.provider, key.public_bytes,
                                valid_from=datetime.now(UTC) + timedelta(days=1))
    refused(world, world.statement(key=key), errors.KeyNotYetValid)


def test_revoked_key(world: World) -> None:
    key = SigningKey.generate()
    world.ledger.add_agency_key(world.provider, key.public_bytes, valid_from=REGISTERED)
    world.ledger.revoke_agency_key(world.provider, key.key_id,
                                   revoked_at=datetime.now(UTC) - timedelta(hours=1))
    refused(world, world.statement(key=key), errors.KeyRevoked)


def test_unknown_agency(world: World) -> None:
    refused(world, world.statement(requester="999999"), errors.UnknownAgency)


def test_requester_not_allowed_by_catalog(world: World) -> None:
    # The Ministry of Justice is not a requester of row 2.
    refused(world, world.statement(agency=world.provider, requester=world.stranger),
            errors.RequesterNotAllowed)


def test_provider_not_allowed_by_catalog(world: World) -> None:
    submission = world.statement(agency=world.requester, provider=world.stranger)
    refused(world, submission, errors.ProviderNotAllowed)


def test_affair_not_allowed(world: World) -> None:
    refused(world, world.statement(affair="1"), errors.AffairNotAllowed)


def test_items_not_allowed(world: World) -> None:
    refused(world, world.statement(items=["戸籍関係情報"]), errors.ItemsNotAllowed)


def test_unknown_basis(world: World) -> None:
    refused(world, world.statement(basis="999-1"), errors.UnknownBasis)


def test_submitter_must_be_a_party(world: World) -> None:
    refused(world, world.statement(agency=world.stranger), errors.SubmitterNotParty)


def test_statement_time_in_future(world: World) -> None:
    submission = world.statement(time=datetime.now(UTC) + timedelta(hours=1))
    refused(world, submission, errors.TimeInFuture)


def test_request_time_in_future(world: World) -> None:
    later = format_time(datetime.now(UTC) + timedelta(days=1))
    submission = world.statement(requested_at=later, provided_at=later)
    refused(world, submission, errors.TimeInFuture)


def test_time_before_registration(world: World) -> None:
    early = REGISTERED - timedelta(days=3)
    submission = world.statement(requested_at=format_time(early),
                                 provided_at=format_time(early + timedelta(minutes=1)))
    refused(world, submission, errors.TimeBeforeRegistration)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s.pop("salt"),
        lambda s: s["statement"].update(extra="x"),
        lambda s: s["statement"].update(v=3),  # 1 and 2 (link codes) exist
        lambda s: s["payload"].pop("items"),
        lambda s: s["payload"].update(items=[]),
        lambda s: s["payload"].update(outcome="maybe"),
        lambda s: s["payload"].update(provided_at=None),
        lambda s: s["payload"].update(requested_at="yesterday"),
        lambda s: s.update(signature="not base64!"),
        lambda s: s.update(payload=[1, 2]),
    ],
    ids=["no-salt", "extra-field", "version", "no-items", "empty-items", "outcome",
         "provided-without-time", "bad-time", "bad-base64", "payload-not-object"],
)
def test_malformed_statement(world: World, mutate: object) -> None:
    submission = world.statement()
    mutate(submission)  # type: ignore[operator]
    refused(world, submission, errors.MalformedStatement)


def test_not_a_json_object(world: World) -> None:
    refused(world, ["statement"], errors.MalformedStatement)


def test_same_statement_again_returns_same_receipt(world: World) -> None:
    submission = world.statement()
    first = world.ledger.append(submission)
    size = world.ledger.tree_size()
    again = world.ledger.append(copy.deepcopy(submission))
    assert again == first
    assert world.ledger.tree_size() == size


def test_other_statement_under_same_request_id_is_a_conflict(world: World) -> None:
    first = world.statement()
    world.ledger.append(first)
    second = world.statement(request_id=first["payload"]["request_id"], operator="op-OTHER")
    assert "already recorded" in refused(world, second, errors.DuplicateConflict)


def test_batch_is_all_or_nothing_and_names_each_refusal(world: World) -> None:
    good = [world.statement() for _ in range(3)]
    bad = world.statement(items=["戸籍関係情報"])
    before = world.ledger.tree_size()
    with pytest.raises(errors.BatchRejected) as caught:
        world.ledger.append_batch([good[0], bad, good[1], {"nonsense": True}, good[2]])
    assert [(p, type(e)) for p, e in caught.value.errors] == [
        (1, errors.ItemsNotAllowed), (3, errors.MalformedStatement)]
    assert world.ledger.tree_size() == before
    receipts = world.ledger.append_batch(good)
    assert [r.index for r in receipts] == [before, before + 1, before + 2]


def test_batch_too_large(world: World) -> None:
    from ledger.application import MAX_BATCH

    with pytest.raises(errors.BatchTooLarge):
        world.ledger.append_batch([{}] * (MAX_BATCH + 1))


def test_revocation_takes_effect_for_later_statements(world: World) -> None:
    key = world.keys[world.provider]
    world.ledger.append(world.statement())
    world.ledger.revoke_agency_key(world.provider, key.key_id)
    refused(world, world.statement(), errors.KeyRevoked)


def test_operator_signature_cannot_be_used_by_agency(world: World) -> None:
    submission = sign_statement(world.payload(), kind="agency.registered",
                                agency=world.provider, key=world.keys[world.provider])
    refused(world, submission, errors.MalformedStatement)
