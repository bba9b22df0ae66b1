"""Alert subscriptions in the pages: a resident lists them, adds an e-mail address or a webhook,
confirms an address with the mailed code, and removes one (docs/alerts.md).

Every form is CSRF-checked and calls the same functions as /v1/me/subscriptions, with the same
refusals. A webhook's signing secret is shown once, in the answer to the form that created it
(never put in a URL, never shown again), as the API's POST answer carries it once. A proxy's own
credential has no subscriptions, as in the API (403 page).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import ServicesDep
from api.routers.subscriptions import _store as alert_store
from api.services import Services
from api.web import sessions
from api.web.pages import PageNotFound, ResidentPage, WrongRole, jst
from api.web.render import render
from api.web.sessions import WebSession
from ledger.encoding import parse_time
from ledger.proxies import PROXY_IDENTITY_PREFIX
from projections import alerts as pa
from projections.decode import format_micros

router = APIRouter(include_in_schema=False)
CHANNELS = (pa.EMAIL, pa.WEBHOOK)


def _own(resident: WebSession) -> str:
    subject = str(resident.subject)
    if subject.startswith(PROXY_IDENTITY_PREFIX):
        raise WrongRole()  # a proxy's credential has no records of its own to be alerted about
    return subject


@router.get("/me/subscriptions")
def my_subscriptions(request: Request, resident: ResidentPage, services: ServicesDep
                     ) -> Response:
    return _page(request, resident, services, _own(resident))


@router.post("/me/subscriptions")
def subscribe(request: Request, resident: ResidentPage, services: ServicesDep,
              csrf: Annotated[str, Form(max_length=64)],
              channel: Annotated[str, Form(max_length=16)],
              target: Annotated[str, Form(max_length=2048)]) -> Response:
    sessions.check_csrf(request, csrf)
    subject = _own(resident)
    try:
        with alert_store(services).write() as session:
            created, _ = pa.create(session, subject, channel, target.strip())
    except (pa.InvalidSubscription, pa.TooManySubscriptions) as exc:
        # The refusal says what is wrong without echoing the refused value.
        return _page(request, resident, services, subject, 422, error=str(exc),
                     channel=channel if channel in CHANNELS else pa.EMAIL)
    if created.secret is not None:
        # The secret exists in this answer only: render it here rather than redirecting.
        return _page(request, resident, services, subject, 201, created=created)
    return RedirectResponse("/me/subscriptions?done=pending", status_code=303)


@router.post("/me/subscriptions/{subscription_id}/confirm")
def confirm(request: Request, subscription_id: str, resident: ResidentPage,
            services: ServicesDep, csrf: Annotated[str, Form(max_length=64)],
            token: Annotated[str, Form(max_length=128)]) -> Response:
    sessions.check_csrf(request, csrf)
    subject = _own(resident)
    try:
        with alert_store(services).write() as session:
            pa.confirm(session, subject, subscription_id, token.strip())
    except pa.UnknownSubscription:
        raise PageNotFound() from None
    except pa.InvalidConfirmation as exc:
        return _page(request, resident, services, subject, 422, error=str(exc))
    return RedirectResponse("/me/subscriptions?done=confirmed", status_code=303)


@router.post("/me/subscriptions/{subscription_id}/delete")
def remove(request: Request, subscription_id: str, resident: ResidentPage,
           services: ServicesDep, csrf: Annotated[str, Form(max_length=64)]) -> Response:
    sessions.check_csrf(request, csrf)
    subject = _own(resident)
    try:
        with alert_store(services).write() as session:
            pa.remove(session, subject, subscription_id)
    except pa.UnknownSubscription:
        raise PageNotFound() from None  # another resident's answers like a missing one
    return RedirectResponse("/me/subscriptions?done=removed", status_code=303)


def _page(request: Request, resident: WebSession, services: Services, subject: str,
          status: int = 200, *, error: str | None = None, created: pa.Subscription | None = None,
          channel: str = pa.EMAIL) -> Response:
    with alert_store(services).read() as session:
        found = pa.list_for(session, subject)
    rows: list[dict[str, Any]] = [
        {"id": s.id, "channel": s.channel, "target": s.target, "active": s.active,
         "created_at": jst(parse_time(format_micros(s.created_at), field="created_at"))}
        for s in found]
    return render(request, "me_subscriptions.html", status, session=resident,
                  title_key="subscriptions_title", subscriptions=rows, error=error,
                  created=created, channel=channel, limit=pa.MAX_SUBSCRIPTIONS,
                  full=len(rows) >= pa.MAX_SUBSCRIPTIONS)
