"""E-applications in the pages (docs/applications.md): from a notice, the resident opens the
form it invites, fills it and signs it **inside the browser** with their card's key
(static/js/apply.js, WebCrypto; the key is never sent); then the thread page shows notice →
application → the provisions it caused → decision, and each partner's receipt.

The rules are the API's (api/routers/applications.py, ledger/applications.py): the signing
certificate must be the one the session was opened with; another resident's application
answers 404 like a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.deps import ServicesDep
from api.routers.applications import ApplicationSubmission, submit_signed, threads
from api.services import Services
from api.web import sessions
from api.web.pages import PageNotFound, ResidentPage, jst
from api.web.render import _env, render
from ledger import applications as la
from ledger.encoding import parse_time

router = APIRouter(include_in_schema=False)
# The notices page links a notice to its form when kiroku takes that form (me_notices.html).
_env.globals["application_forms"] = frozenset(la.FORMS)


def _subject(resident: Any) -> str:
    subject = str(resident.subject)
    if subject.startswith("proxy:"):  # a proxy's own card has no applications
        raise PageNotFound()
    return subject


@router.get("/me/applications")
def my_applications(request: Request, resident: ResidentPage, services: ServicesDep
                    ) -> Response:
    items = [{**item, "submitted_at": jst(parse_time(item["submitted_at"], field="time")) + " JST"}
             for item in threads(services).of_resident(_subject(resident))]
    return render(request, "me_applications.html", session=resident,
                  title_key="applications_title", items=items)


@router.get("/me/applications/new")
def new_application(request: Request, resident: ResidentPage, services: ServicesDep,
                    notice: str = "") -> Response:
    """The form a notice invites, for a notice that applies to the resident now."""
    found = _notice(services, _subject(resident), notice)
    form = la.FORMS.get((found["form"] or {}).get("id", ""))
    if form is None:
        raise PageNotFound()
    partners = []
    if form.forwardable:
        services.ledger.refresh_registry(force=False)
        partners = sorted((a for a in services.ledger.registry.agencies.values()
                           if a.kind == la.PARTNER_KIND), key=lambda a: a.code)
    return render(request, "me_application_new.html", session=resident,
                  title_key="application_new_title", notice=found, notice_id=notice,
                  agency=threads(services).residents.labels.agency(found["agency"]),
                  form=form, partners=partners,
                  page_data={"origin": services.settings.log_origin, "notice": notice,
                             "form": form.id, "context": la.SIGNING_CONTEXT})


@router.post("/me/applications")
def submit_application(request: Request, body: ApplicationSubmission, resident: ResidentPage,
                       services: ServicesDep) -> Response:
    """The signed application from static/js/apply.js (JSON, CSRF header): the API's checks."""
    sessions.check_csrf(request, request.headers.get("x-csrf-token"))
    receipt = submit_signed(services, _subject(resident), resident.name, body)
    return JSONResponse({"id": receipt["id"], "next": f"/me/applications/{receipt['id']}"},
                        status_code=201)


@router.get("/me/applications/{application_id}")
def application_thread(request: Request, application_id: str, resident: ResidentPage,
                       services: ServicesDep) -> Response:
    found = threads(services).thread(_subject(resident), application_id)
    if found is None:
        raise PageNotFound()
    form = la.FORMS.get(found["form"])
    fields = {f.name: {"ja": f.label_ja, "en": f.label_en} for f in form.fields} if form else {}
    return render(request, "me_application.html", session=resident,
                  title_key="application_title", thread=_in_jst(found), fields=fields)


def _in_jst(thread: dict[str, Any]) -> dict[str, Any]:
    """Times as residents read them (JST, to the minute), as on the record pages."""
    def shown(value: str | None) -> str:
        return jst(parse_time(value, field="time")) + " JST" if value else "—"

    out = dict(thread)
    out["submitted_at"] = shown(thread["submitted_at"])
    if thread["notice"]:
        out["notice"] = {**thread["notice"], "issued_at": shown(thread["notice"]["issued_at"])}
    out["steps"] = [{**step, "logged_at": shown(step["logged_at"])} for step in thread["steps"]]
    decided = [step for step in out["steps"] if step["step"] == "decided"]
    out["decision"] = decided[0] if decided else None
    out["forwards"] = [{**f, "received_at": shown(f["received_at"])} for f in thread["forwards"]]
    return out


def _notice(services: Services, subject: str, notice: str) -> dict[str, Any]:
    from uuid import UUID

    try:
        return la.notice_for(services.ledger, subject, UUID(notice))
    except (ValueError, la.UnknownNotice):
        raise PageNotFound() from None
