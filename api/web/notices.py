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
from markupsafe import Markup, escape

from api.deps import ServicesDep
from api.routers.notices import _notices as notices_for
from api.services import Services
from api.web import i18n, sessions
from api.web.pages import PageNotFound, ResidentPage, jst
from api.web.proxies import _acting
from api.web.render import label_in, language, render
from api.web.sessions import WebSession
from ledger.applications import FORMS
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
                  notices=items, unread=listed["unread"], base=base, acting=acting,
                  articles=_articles(items, lang, base, sessions.csrf_token(request),
                                     acting is not None))


# The notices, one <article> each, filled in here rather than in the template: there, a look-up,
# a translation and an escape per field were half of the page's time. Every text is escaped as
# the template's autoescape does (markupsafe); ids are UUIDs and times digits and punctuation.
_ARTICLE = (
    '<article class="record" id="n-{id}" data-notice="{id}" data-read="{read}" '
    'aria-labelledby="nt-{id}">\n'
    '  <header class="record-head">\n'
    '    <h2 id="nt-{id}" class="record-title"{title_lang}>{title}</h2>\n'
    '{mark}'
    '  </header>\n'
    '  <p class="notice-body"{body_lang}>{body}</p>\n'
    '  <dl class="facts">\n'
    '    <div><dt>{w_category}</dt><dd data-category="{category}">{category_text}</dd></div>\n'
    '    <div><dt>{w_validity}</dt><dd data-validity>{valid_from} – {valid_until}</dd></div>\n'
    '    <div><dt>{w_issuer}</dt><dd>{issuer}</dd></div>\n'
    '    <div><dt>{w_target}</dt><dd>{target}</dd></div>\n'
    '{form}'
    '  </dl>\n'
    '{mark_form}'
    '</article>\n'
)


def _articles(items: list[dict[str, Any]], lang: str, base: str, csrf: str, acting: bool
              ) -> Markup:
    words = i18n.table(lang)
    w = {key: escape(i18n.translate(lang, key)) for key in (
        "notice_category", "notice_validity", "notice_issuer", "notice_target", "notice_unread",
        "notice_mark_read", "notice_form", "notice_form_open", "application_open_form")}
    out = []
    for n in items:
        title = escape(n["title"])
        if n["read_at"]:
            mark = ('    <p class="mark" data-state="ok" data-read-state>'
                    f'{escape(i18n.translate(lang, "notice_read_at", at=n["read_at"]))}</p>\n')
            mark_form = ""
        else:
            mark = (f'    <p class="mark" data-state="pending" data-read-state>'
                    f'{w["notice_unread"]}</p>\n')
            mark_form = (f'  <form method="post" action="{escape(base)}/{n["id"]}/read" '
                         'class="more" data-mark-read>\n'
                         f'    <input type="hidden" name="csrf" value="{escape(csrf)}">\n'
                         f'    <button type="submit" aria-label="{w["notice_mark_read"]}: '
                         f'{title}">{w["notice_mark_read"]}</button>\n  </form>\n')
        out.append(_ARTICLE.format(
            id=n["id"], read="yes" if n["read_at"] else "no", title=title,
            title_lang=_lang_attribute(n["title_lang"], lang), mark=mark,
            body=escape(n["body"]), body_lang=_lang_attribute(n["body_lang"], lang),
            w_category=w["notice_category"], category=escape(n["category"]),
            category_text=escape(words["cat_" + n["category"]]),
            w_validity=w["notice_validity"], valid_from=n["valid_from"],
            valid_until=n["valid_until"], w_issuer=w["notice_issuer"],
            issuer=escape(label_in(n["agency"], lang)), w_target=w["notice_target"],
            target=escape(words["notice_target_" + n["target"]]),
            form=_form(n, w, acting), mark_form=mark_form))
    return Markup("".join(out))


def _lang_attribute(text_lang: str, lang: str) -> str:
    return "" if text_lang == lang else f' lang="{escape(text_lang)}"'


def _form(n: dict[str, Any], w: dict[str, Markup], acting: bool) -> str:
    form = n["form"]
    if not form:
        return ""
    if form.get("url"):
        opened = (f' ({escape(form["id"])})' if form.get("id") else "")
        link = (f'<a href="{escape(form["url"])}" rel="noopener noreferrer">'
                f'{w["notice_form_open"]}{opened}</a>')
    else:
        link = f'<code>{escape(form.get("id"))}</code>'
    apply = ""
    if form.get("id") in FORMS and not acting:
        apply = (f' <a href="/me/applications/new?notice={n["id"]}" data-apply>'
                 f'{w["application_open_form"]}</a>')
    return (f'    <div><dt>{w["notice_form"]}</dt><dd data-form>{link}{apply}</dd></div>\n')


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
