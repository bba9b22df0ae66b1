"""The notices page, the alert subscriptions page and the agency's delivery counts over plain
HTTP: what each caller may read and change, CSRF on every form, and no secret or resident shown
where it must not be. (In a browser: tests/web/test_notice_pages.py.)"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from api.routers.subscriptions import _store as alert_store
from projections.alerts import subscription
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env
from tests.api.test_notices import birth, issue, notice_payload, put_attributes
from tests.api.test_web_pages import _csrf, _proxy_of_a, login


def _notices(env: Env) -> dict[str, str]:
    """For A: an individual notice with a form, and a group notice B gets too."""
    x = env.x
    a_code, b_code = env.world.code(x, SUBJECT_A), env.world.code(x, SUBJECT_B)
    for code, years in ((a_code, 3), (b_code, 40)):
        assert put_attributes(env, "X", code, x, {"birth_date": birth(years),
                                                  "district": "131121-03"}).status_code == 200
    ids = {}
    for name, target in (("for-a", {"type": "individual", "code": a_code}),
                         ("district", {"type": "group", "criteria": {"district": "131121-03"}})):
        payload = notice_payload(name, target)
        if name == "for-a":
            payload["form"] = {"id": "hoiku-2026", "url": "https://example.city.lg.jp/hoiku"}
        response = issue(env, payload)
        assert response.status_code == 201, response.text
        ids[name] = response.json()["id"]
    env.settle()
    return ids


def _order(page: str) -> list[str]:
    return re.findall(r'data-notice="([0-9a-f-]{36})" data-read="(?:yes|no)"', page)


def test_a_resident_reads_and_marks_notices(env: Env) -> None:
    ids = _notices(env)
    a = login(env, "A")
    page = a.get("/me/notices")
    assert page.status_code == 200
    assert _order(page.text) == [ids["district"], ids["for-a"]]  # newest first, both unread
    assert "https://example.city.lg.jp/hoiku" in page.text and "hoiku-2026" in page.text
    assert "2 件（未読 2 件）" in page.text
    # A forged token changes nothing.
    target = f"/me/notices/{ids['district']}/read"
    assert a.post(target, data={"csrf": "forged-token-value-123456"}).status_code == 403
    assert 'data-read="yes"' not in a.get("/me/notices").text
    done = a.post(target, data={"csrf": _csrf(a)})
    assert done.status_code == 303 and done.headers["location"].startswith("/me/notices")
    page = a.get("/me/notices").text
    assert _order(page) == [ids["for-a"], ids["district"]]  # unread first, then the read one
    assert f'data-notice="{ids["district"]}" data-read="yes"' in page
    assert "2 件（未読 1 件）" in page
    # B cannot mark A's individual notice (404 as a missing one); B's marks are B's own.
    b = login(env, "B")
    assert _order(b.get("/me/notices").text) == [ids["district"]]
    assert f'data-notice="{ids["district"]}" data-read="no"' in b.get("/me/notices").text
    mine = f"/me/notices/{ids['for-a']}/read"
    assert b.post(mine, data={"csrf": _csrf(b)}).status_code == 404
    assert f'data-notice="{ids["for-a"]}" data-read="no"' in a.get("/me/notices").text
    assert a.post("/me/notices/not-a-uuid/read", data={"csrf": _csrf(a)}).status_code == 404


def test_notice_forms_by_caller(env: Env) -> None:
    ids = _notices(env)
    handle = _proxy_of_a(env)
    mine = f"/me/notices/{ids['for-a']}/read"
    proxied = f"/proxy/{handle}/notices/{ids['for-a']}/read"
    expected: dict[str, tuple[int, int]] = {  # (own form, through P's handle)
        "B": (404, 404), "P": (404, 303), "X": (403, 403), "Y": (403, 403),
        "auditor": (403, 403), "anon": (303, 303)}
    for caller, (own, through) in expected.items():
        client = login(env, caller)
        assert client.post(mine, data={"csrf": _csrf(client)}).status_code == own, caller
        if caller != "P":
            assert client.post(proxied, data={"csrf": _csrf(client)}
                               ).status_code == through, caller
    assert 'data-read="yes"' not in login(env, "A").get("/me/notices").text
    p = login(env, "P")
    page = p.get(f"/proxy/{handle}/notices")
    assert page.status_code == 200 and 'id="acting-for"' in page.text
    assert SUBJECT_A not in page.text
    assert p.post(proxied, data={"csrf": _csrf(p)}).status_code == 303
    # The mark is the principal's, as in the API.
    assert f'data-notice="{ids["for-a"]}" data-read="yes"' in login(env, "A").get(
        "/me/notices").text
    assert login(env, "B").get(f"/proxy/{handle}/notices").status_code == 404


def test_the_empty_notices_page(env: Env) -> None:
    page = login(env, "A").get("/me/notices")
    assert page.status_code == 200 and 'id="empty-state"' in page.text


def test_agency_page_shows_counts_never_who(env: Env) -> None:
    ids = _notices(env)
    a = login(env, "A")
    assert a.post(f"/me/notices/{ids['district']}/read", data={"csrf": _csrf(a)}
                  ).status_code == 303
    page = login(env, "X").get("/agency").text
    rows = {m[0]: (m[1], m[2]) for m in re.findall(
        r'<tr data-notice="([^"]+)">.*?data-applies>(\d+)</td><td class="num" data-read>(\d+)',
        page, re.DOTALL)}
    assert rows == {"district": ("2", "1"), "for-a": ("1", "0")}
    for secret in (SUBJECT_A, SUBJECT_B, env.world.code(env.x, SUBJECT_A), birth(3)):
        assert secret not in page
    assert 'id="no-notices"' in login(env, "Y").get("/agency").text


def _token(env: Env, ident: str) -> str:
    import uuid

    with alert_store(env.services).read() as session:
        return str(session.execute(select(subscription.c.confirm_token)
                                   .where(subscription.c.id == uuid.UUID(ident))).scalar())


def _rows(page: str) -> dict[str, dict[str, Any]]:
    return {m[0]: {"channel": m[1], "status": m[2]} for m in re.findall(
        r'data-subscription="([^"]+)" data-channel="([^"]+)" data-status="([^"]+)"', page)}


def test_a_resident_manages_subscriptions(env: Env) -> None:
    a = login(env, "A")
    assert 'id="empty-state"' in a.get("/me/subscriptions").text
    assert a.post("/me/subscriptions", data={"csrf": "forged-token-value-123456",
                                             "channel": "email", "target": "a@example.jp"}
                  ).status_code == 403
    assert _rows(a.get("/me/subscriptions").text) == {}
    added = a.post("/me/subscriptions", data={"csrf": _csrf(a), "channel": "email",
                                              "target": "hanako@example.jp"})
    assert added.status_code == 303
    rows = _rows(a.get("/me/subscriptions").text)
    (email,) = rows
    assert rows[email] == {"channel": "email", "status": "pending_confirmation"}
    wrong = a.post(f"/me/subscriptions/{email}/confirm", data={"csrf": _csrf(a),
                                                               "token": "wrong-code"})
    assert wrong.status_code == 422 and 'id="sub-error"' in wrong.text
    assert a.post(f"/me/subscriptions/{email}/confirm",
                  data={"csrf": _csrf(a), "token": _token(env, email)}).status_code == 303
    assert _rows(a.get("/me/subscriptions").text)[email]["status"] == "active"
    # A webhook: its secret is in this answer only.
    hook = a.post("/me/subscriptions", data={"csrf": _csrf(a), "channel": "webhook",
                                             "target": "https://hooks.example.jp/kiroku"})
    assert hook.status_code == 201
    secret = re.search(r'<code id="secret-value">([^<]+)</code>', hook.text)
    assert secret is not None and len(secret.group(1)) >= 32
    listed = a.get("/me/subscriptions").text
    assert secret.group(1) not in listed and "https://hooks.example.jp/kiroku" in listed
    api = env.get("A", "/v1/me/subscriptions").json()["subscriptions"]
    assert {s["id"] for s in api} == set(_rows(listed))
    # Refused: a plain-http URL (not echoed back), and nothing is added.
    refused = a.post("/me/subscriptions", data={"csrf": _csrf(a), "channel": "webhook",
                                                "target": "http://evil.example/x"})
    assert refused.status_code == 422 and "http://evil.example/x" not in refused.text
    assert len(_rows(a.get("/me/subscriptions").text)) == 2
    # B can neither confirm nor remove A's (404 as a missing one); A removes its own.
    b = login(env, "B")
    assert b.post(f"/me/subscriptions/{email}/delete", data={"csrf": _csrf(b)}
                  ).status_code == 404
    assert b.post(f"/me/subscriptions/{email}/confirm",
                  data={"csrf": _csrf(b), "token": "x"}).status_code == 404
    assert a.post(f"/me/subscriptions/{email}/delete", data={"csrf": "forged-token-value-1234"}
                  ).status_code == 403
    assert a.post(f"/me/subscriptions/{email}/delete", data={"csrf": _csrf(a)}
                  ).status_code == 303
    assert set(_rows(a.get("/me/subscriptions").text)) == {s["id"] for s in api} - {email}


def test_subscription_forms_by_caller(env: Env) -> None:
    for caller, status in (("P", 403), ("X", 403), ("Y", 403), ("auditor", 403),
                           ("anon", 303)):
        client = login(env, caller)
        for target in ("/me/subscriptions", "/me/subscriptions/" + "0" * 8 + "-0000-4000-8000-"
                       + "0" * 12 + "/delete"):
            data = {"csrf": _csrf(client), "channel": "email", "target": "p@example.jp"}
            assert client.post(target, data=data).status_code == status, (caller, target)
    with alert_store(env.services).read() as session:
        assert session.execute(select(subscription.c.id)).first() is None
