"""The application pages over plain HTTP: POST /me/applications takes a signed application
only with the page's CSRF token and only signed by the session's own card; the thread page
shows the notice, the application, the provisions it caused and the decision."""

from __future__ import annotations

from ledger import applications as la
from tests.api.conftest import SUBJECT_A, Env
from tests.api.test_applications import add_partners, address_notice, signed, step
from tests.api.test_web_pages import _csrf, login


def test_apply_from_the_page_and_read_the_thread(env: Env) -> None:
    add_partners(env)
    notice = address_notice(env)
    a, b = login(env, "A"), login(env, "B")
    env.settle()  # the notices page reads the notices view
    assert f'href="/me/applications/new?notice={notice}"' in a.get("/me/notices").text
    form = a.get(f"/me/applications/new?notice={notice}")
    assert form.status_code == 200 and 'data-consent="TOKYOGAS"' in form.text
    size = env.world.ledger.tree_size()
    body = signed(env, notice)
    # Without the page's CSRF token: refused, nothing appended.
    assert a.post("/me/applications", json=body).status_code == 403
    # B's session with A's card: an application is made only for oneself.
    other = b.post("/me/applications", json=body, headers={"X-CSRF-Token": _csrf(b)})
    assert other.status_code == 403
    assert env.world.ledger.tree_size() == size
    done = a.post("/me/applications", json=body, headers={"X-CSRF-Token": _csrf(a)})
    assert done.status_code == 201, done.text
    app_id = done.json()["id"]
    assert done.json()["next"] == f"/me/applications/{app_id}"
    assert step(env, env.y, la.RECEIVED, app_id).status_code == 201
    caused = env.client.post("/v1/provisions", json=env.world.statement(
        agency=env.y, subject=SUBJECT_A, application=app_id))
    assert caused.status_code == 201
    assert step(env, env.y, la.DECIDED, app_id, outcome="approved", reason=None
                ).status_code == 201
    env.settle()
    page = a.get(f"/me/applications/{app_id}")
    assert page.status_code == 200
    assert f'data-provision="{caused.json()["id"]}"' in page.text
    assert 'data-outcome="approved"' in page.text and "お知らせ address" in page.text
    assert 'data-forward="TOKYOGAS" data-received="no"' in page.text
    assert b.get(f"/me/applications/{app_id}").status_code == 404
    listed = a.get("/me/applications")
    assert f'data-application="{app_id}"' in listed.text
