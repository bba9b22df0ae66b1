"""E-applications over HTTP: notice → signed application → provisions naming it → decision as
one thread, the address change forwarded only to consented partners with each receipt recorded,
and the refusals (forged signature, someone else's certificate, unknown notice or form, missing
consent, replay, steps out of order or by the wrong agency), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from kiroku.client import sign_login
from ledger import applications as la
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env
from tests.api.test_notices import issue, notice_payload
from tests.ledger.fixtures import REGISTERED

PARTNERS = ("TOKYOGAS", "MIZUHO")


def add_partners(env: Env) -> None:
    ledger = env.world.ledger
    for code, ja, en in (("TOKYOGAS", "東京ガス", "Tokyo Gas"), ("MIZUHO", "みずほ銀行",
                                                                   "Mizuho Bank")):
        ledger.register_agency(code, name_ja=ja, name_en=en, kind=la.PARTNER_KIND, roles=[],
                               registered_at=REGISTERED)
        key = SigningKey.generate()
        ledger.add_agency_key(code, key.public_bytes, valid_from=REGISTERED)
        env.world.keys[code] = key


def address_notice(env: Env, who: str = "A", form: dict[str, str] | None = None,
                   name: str = "address") -> str:
    """An individual notice from the requester (Y, a health insurer that takes changes of
    address) to resident ``who``, inviting the address-change form."""
    subject = env.residents[who].subject
    payload = notice_payload(name, {"type": "individual",
                                    "code": env.world.code(env.y, subject)})
    payload["form"] = form or {"id": "address-change"}
    response = issue(env, payload, agency=env.y)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def signed(env: Env, notice: str, *, who: str = "A", signer: str | None = None,
           forward: list[dict[str, Any]] | None = None, form: str = "address-change",
           answers: dict[str, str] | None = None) -> dict[str, Any]:
    """An application body signed by ``signer``'s card (by default the applicant's own)."""
    challenge = env.client.post("/v1/auth/challenge").json()["challenge"]
    request = {"notice": notice, "form": form,
               "answers": answers or {"new_address": "東京都世田谷区北沢1-2-3",
                                      "moved_on": "2026-06-01"},
               "forward": forward if forward is not None else [
                   {"partner": "TOKYOGAS", "consent": True, "customer_number": "1234-5678"}],
               "challenge": challenge}
    cred = env.residents[signer or who]
    signature = sign_login(cred.key, la.signing_message("test.kiroku/log", request))
    return {"request": request, "certificate": cred.certificate,
            "signature": base64.b64encode(signature).decode()}


def apply(env: Env, body: dict[str, Any], who: str = "A") -> Any:
    raw = json.dumps(body).encode()
    return env.client.post("/v1/me/applications", content=raw, headers={
        **env.headers(who, "POST", "/v1/me/applications", raw),
        "Content-Type": "application/json"})


def step(env: Env, agency: str, kind: str, application: str, **extra: Any) -> Any:
    payload = {"application": application, **extra}
    statement = sign_statement(payload, kind=kind, agency=agency, key=env.world.keys[agency])
    return env.client.post("/v1/applications/steps", json=statement)


def _thread(env: Env) -> None:
    add_partners(env)
    notice = address_notice(env)
    submitted = apply(env, signed(env, notice))
    assert submitted.status_code == 201, submitted.text
    app_id = submitted.json()["id"]
    entry = submitted.json()["entry"]
    assert entry["kind"] == la.SUBMITTED and entry["agency"] == "operator"
    # The leaf holds a commitment only: no answer, no certificate, no resident.
    leaf = base64.b64decode(submitted.json()["leaf"]).decode()
    for secret in ("北沢", "1234-5678", SUBJECT_A, "CERTIFICATE"):
        assert secret not in leaf
    # A provision naming the application before the agency took it is refused.
    early = env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_A, application=app_id))
    assert early.status_code == 422
    assert early.json()["type"] == "urn:kiroku:problem:application-state"
    # Forwarding before the decision is refused; so is a decision before receipt.
    assert step(env, "TOKYOGAS", la.FORWARDED, app_id).json()["code"] == "application-state"
    assert step(env, env.y, la.DECIDED, app_id, outcome="approved", reason=None
                ).json()["code"] == "application-state"
    # Only the agency it was made to takes it.
    other = step(env, env.x, la.RECEIVED, app_id)
    assert other.status_code == 403 and other.json()["code"] == "application-of-another"
    received = step(env, env.y, la.RECEIVED, app_id)
    assert received.status_code == 201, received.text
    assert step(env, env.y, la.RECEIVED, app_id).status_code == 409  # another statement
    # The agency's inbox: the answers, the applicant by the agency's own link code only.
    inbox = env.get("Y", f"/v1/agencies/{env.y}/applications")
    assert inbox.status_code == 200
    item = inbox.json()["items"][0]
    assert item["id"] == app_id and item["applicant"] == env.world.code(env.y, SUBJECT_A)
    assert item["answers"]["new_address"] == "東京都世田谷区北沢1-2-3"
    assert SUBJECT_A not in inbox.text
    assert env.get("X", f"/v1/agencies/{env.y}/applications").status_code == 403
    # Provisions the application causes (Y asks X instead of the resident attaching a
    # certificate) carry its id; one of them is non-disclosed and stays out of the thread.
    extras: list[dict[str, Any]] = [{}, {}, {"non_disclosure": True}]
    caused = [env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_A, application=app_id, **extra))
        for extra in extras]
    assert [r.status_code for r in caused] == [201, 201, 201], [r.text for r in caused]
    unrelated = env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_A))
    assert unrelated.status_code == 201
    # Another resident's provision cannot name A's application, nor can another requester.
    wrong = env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_B, application=app_id))
    assert wrong.status_code == 403 and wrong.json()["code"] == "application-of-another"
    unknown = env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_A, application="00000000-0000-4000-8000-000000000000"))
    assert unknown.json()["code"] == "unknown-application"
    decided = step(env, env.y, la.DECIDED, app_id, outcome="approved", reason=None)
    assert decided.status_code == 201, decided.text
    # Partners: only the consented one sees the change, and records its receipt once.
    assert step(env, "MIZUHO", la.FORWARDED, app_id).json()["code"] == "consent-missing"
    target = "/v1/partners/TOKYOGAS/forwards"
    seen = env.client.get(target, headers={"Authorization": _partner_auth(env, "TOKYOGAS",
                                                                          target)})
    assert seen.status_code == 200
    assert seen.json()["items"] == [{
        "application": app_id, "form": "address-change", "customer_number": "1234-5678",
        "data": {"new_address": "東京都世田谷区北沢1-2-3", "moved_on": "2026-06-01"},
        "received_index": None}]
    mizuho = "/v1/partners/MIZUHO/forwards"
    assert env.client.get(mizuho, headers={"Authorization": _partner_auth(
        env, "MIZUHO", mizuho)}).json()["items"] == []
    assert env.client.get(target, headers={"Authorization": _partner_auth(
        env, "MIZUHO", target)}).status_code == 403
    forwarded = step(env, "TOKYOGAS", la.FORWARDED, app_id)
    assert forwarded.status_code == 201, forwarded.text
    env.settle()
    # The resident's thread: notice → application → the disclosed provisions → decision.
    thread = env.get("A", f"/v1/me/applications/{app_id}")
    assert thread.status_code == 200, thread.text
    body = thread.json()
    assert body["notice"]["id"] == notice and body["notice"]["title"]["ja"] == "お知らせ address"
    assert [s["step"] for s in body["steps"]] == ["submitted", "received", "decided",
                                                  "forwarded"]
    assert sorted(p["id"] for p in body["provisions"]) == sorted(
        r.json()["id"] for r in caused[:2])
    assert body["decision"]["outcome"] == "approved" and body["status"] == "approved"
    assert body["forwards"][0]["partner"]["code"] == "TOKYOGAS"
    assert body["forwards"][0]["received_index"] == forwarded.json()["index"]
    assert body["answers"]["moved_on"] == "2026-06-01"
    listed = env.get("A", "/v1/me/applications").json()["items"]
    assert [a["id"] for a in listed] == [app_id]
    # Another resident sees neither the thread nor the list entry.
    assert env.get("B", f"/v1/me/applications/{app_id}").status_code == 404
    assert env.get("B", "/v1/me/applications").json()["items"] == []


def _partner_auth(env: Env, code: str, target: str) -> str:
    from api.request_signing import sign_request

    return sign_request(env.world.keys[code], f"agency:{code}", "GET", target, b"")


def test_whole_thread_sqlite(env: Env) -> None:
    _thread(env)


def test_whole_thread_postgres(pg_env: Env) -> None:
    _thread(pg_env)


def test_refusals(env: Env) -> None:
    add_partners(env)
    notice = address_notice(env)
    size = env.world.ledger.tree_size()
    # Forged: the signature is not the card's over this request.
    forged = signed(env, notice)
    forged["request"]["answers"]["new_address"] = "somewhere else"
    response = apply(env, forged)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"
    # For someone else: B's card signs an application sent in A's session.
    other = apply(env, signed(env, notice, signer="B"))
    assert other.status_code == 403 and other.json()["code"] == "forbidden"
    # B's own session, for a notice addressed to A: no such notice for B.
    b_notice = apply(env, signed(env, notice, who="B"), who="B")
    assert b_notice.status_code == 404 and b_notice.json()["code"] == "unknown-notice"
    missing = apply(env, signed(env, "00000000-0000-4000-8000-000000000000"))
    assert missing.status_code == 404 and missing.json()["code"] == "unknown-notice"
    wrong_form = apply(env, signed(env, notice, form="general", answers={"details": "x"},
                                   forward=[]))
    assert wrong_form.status_code == 422 and wrong_form.json()["code"] == "unknown-form"
    no_form = apply(env, signed(env, notice, form="no-such-form", forward=[]))
    assert no_form.json()["code"] == "unknown-form"
    # Consent is explicit per recipient: a partner listed without "consent": true refuses all.
    unconsented = apply(env, signed(env, notice, forward=[
        {"partner": "TOKYOGAS", "consent": True, "customer_number": "1"},
        {"partner": "MIZUHO", "customer_number": "2"}]))
    assert unconsented.status_code == 422 and unconsented.json()["code"] == "consent-missing"
    refused = apply(env, signed(env, notice, forward=[
        {"partner": "MIZUHO", "consent": False, "customer_number": "2"}]))
    assert refused.json()["code"] == "consent-missing"
    not_partner = apply(env, signed(env, notice, forward=[
        {"partner": env.x, "consent": True, "customer_number": "2"}]))
    assert not_partner.json()["code"] == "invalid-application"
    bad_answer = apply(env, signed(env, notice, answers={"new_address": "x",
                                                         "moved_on": "June"}))
    assert bad_answer.json()["code"] == "invalid-application"
    assert env.world.ledger.tree_size() == size  # nothing of the above was appended
    # Replay: the same signed body again (its challenge is spent) appends nothing.
    body = signed(env, notice)
    assert apply(env, body).status_code == 201
    again = apply(env, body)
    assert again.status_code == 401 and "replay" in again.json()["detail"]
    assert env.world.ledger.tree_size() == size + 1
    # The ledger refuses the same signed application by itself too (e.g. a second worker).
    with pytest.raises(la.ReplayedApplication):
        la.submit(env.world.ledger, SUBJECT_A, body["request"], body["certificate"],
                  body["signature"])
    # Without a session: 401; an agency's signed request is not a resident: 403.
    raw = json.dumps(body).encode()
    assert env.client.post("/v1/me/applications", content=raw).status_code == 401


def test_url_only_notice_has_no_form_here(env: Env) -> None:
    notice = address_notice(env, form={"url": "https://example.city.lg.jp/form"}, name="ext")
    response = apply(env, signed(env, notice, forward=[]))
    assert response.status_code == 422 and response.json()["code"] == "unknown-form"


def test_forms_and_partners_are_public(env: Env) -> None:
    add_partners(env)
    assert env.client.get("/v1/forms/address-change").json()["forwardable"] is True
    assert env.client.get("/v1/forms/nope").status_code == 404
    codes = [p["code"] for p in env.client.get("/v1/partners").json()["items"]]
    assert codes == sorted(PARTNERS)
