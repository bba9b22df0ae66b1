"""Notices (お知らせ) in the pages: a resident reads their notices (unread first) and marks them
read; a proxy does the same for a principal; an agency sees its notices' delivery counts.

The pages call the same queries as the JSON API (api/routers/notices.py, projections/notices.py),
so the rules are the API's: a notice shows only while it is valid and applies to the reader (an
individual one addressed to them, a group one whose criteria their attributes at the issuing
agency match); a notice that does not apply answers 404 like a missing one. A proxy (代理人)
reads and marks the principal's notices through its handle, and the mark is the principal's, as
in the API; a proxy's own credential has no notices (its /me/notices goes to /proxy, as /me).
Agencies see counts only (applies to, read), never who read what.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import ServicesDep
from api.routers.notices import _notices as notices_for
from api.services import Services
from api.web import sessions
from api.web.pages import PageNotFound, ResidentPage, jst
from api.web.proxies import _acting
from api.web.render import language, render
from api.web.sessions import WebSession
from ledger.encoding import parse_time
from ledger.proxies import PROXY_IDENTITY_PREFIX, ProxyRegistration

router = APIRouter(include_in_schema=False)
#: The agency page lists its newest notices with their counts.
AGENCY_SHOWN = 20


@router.get("/me/notices")
def my_notices(request: Request, resident: ResidentPage, services: ServicesDep) -> Response:
    if str(resident.subject).startswith(PROXY_IDENTITY_PREFIX):
        # A proxy identity has no notices of its own: it reads its principals' (/proxy).
        return RedirectResponse("/proxy", status_code=303)
    return _page(request, resident, services, str(resident.subject), "/me/notices")


@router.post("/me/notices/{notice_id}/read")
def read_my_notice(request: Request, notice_id: str, resident: ResidentPage,
                   services: ServicesDep, csrf: Annotated[str, Form(max_length=64)]
                   ) -> Response:
    sessions.check_csrf(request, csrf)
    _mark(services, str(resident.subject), notice_id)
    return RedirectResponse(f"/me/notices?done=read#n-{notice_id}", status_code=303)


@router.get("/proxy/{handle}/notices")
def principal_notices(request: Request, handle: str, holder: ResidentPage,
                      services: ServicesDep) -> Response:
    acting = _acting(services, holder, handle)
    return _page(request, holder, services, acting.principal, f"/proxy/{acting.id}/notices",
                 acting=acting)


@router.post("/proxy/{handle}/notices/{notice_id}/read")
def read_principal_notice(request: Request, handle: str, notice_id: str, holder: ResidentPage,
                          services: ServicesDep, csrf: Annotated[str, Form(max_length=64)]
                          ) -> Response:
    sessions.check_csrf(request, csrf)
    acting = _acting(services, holder, handle)
    _mark(services, acting.principal, notice_id)
    return RedirectResponse(f"/proxy/{acting.id}/notices?done=read#n-{notice_id}",
                            status_code=303)


def _mark(services: Services, subject: str, notice_id: str) -> None:
    try:
        ident = UUID(notice_id)
    except ValueError:
        raise PageNotFound() from None
    if notices_for(services).mark_read(subject, ident) is None:
        raise PageNotFound()  # not this reader's notice now: as a missing one


def _page(request: Request, session: WebSession, services: Services, subject: str, base: str,
          acting: ProxyRegistration | None = None) -> Response:
    listed = notices_for(services).list(subject)
    lang = language(request)
    views = services.projections.residents
    name = views.labels.agency if views is not None else (lambda code: code)
    items = [{**_item(n, lang), "agency": name(n["agency"])} for n in listed["items"]]
    return render(request, "me_notices.html", session=session, title_key="notices_title",
                  notices=items, unread=listed["unread"], base=base, acting=acting)


def _text(texts: dict[str, str], lang: str) -> tuple[str, str]:
    """The text in the page's language when the agency gave one, else Japanese (always given);
    with the language it is in, for ``lang=`` on the element."""
    return (texts[lang], lang) if texts.get(lang) else (texts["ja"], "ja")


def _item(notice: dict[str, Any], lang: str) -> dict[str, Any]:
    title, title_lang = _text(notice["title"], lang)
    body, body_lang = _text(notice["body"], lang)
    form = notice.get("form") or None
    return {"id": notice["id"], "agency": notice["agency"], "category": notice["category"],
            "title": title, "title_lang": title_lang, "body": body, "body_lang": body_lang,
            "valid_from": jst(parse_time(notice["valid_from"], field="valid_from")),
            "valid_until": jst(parse_time(notice["valid_until"], field="valid_until")),
            "issued_at": jst(parse_time(notice["issued_at"], field="issued_at")),
            "target": notice["target"], "form": form,
            "read_at": (jst(parse_time(notice["read_at"], field="read_at"))
                        if notice.get("read_at") else None)}


def agency_delivery(services: Services, agency: str, lang: str) -> list[dict[str, Any]]:
    """The agency's newest notices with their delivery counts (applies to now, read): counts
    only, as GET /v1/agencies/{code}/notices gives them."""
    found = notices_for(services).for_agency(agency)["notices"][:AGENCY_SHOWN]
    out = []
    for notice in found:
        title, title_lang = _text(notice["title"], lang)
        out.append({"id": notice["id"], "notice_id": notice["notice_id"],
                    "category": notice["category"], "title": title, "title_lang": title_lang,
                    "target": notice["target"],
                    "valid_until": jst(parse_time(notice["valid_until"], field="valid_until")),
                    "applies_to": notice["delivery"]["applies_to"],
                    "read": notice["delivery"]["read"]})
    return out
