"""The resident's pages: "who provided what about me, and why", each record verified in the
resident's own browser (static/js/marks.js with static/js/verify.js).

The list page is rendered from the resident view alone (one read transaction: an indexed query
for the page, one grouped query for the filter choices and the count); the proofs travel separately, from /me/verification, which
recomputes the same page for the same session and returns each record's leaf, payload, salt and
inclusion proof against the latest signed checkpoint, so the page itself stays fast.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from markupsafe import Markup, escape

from api.deps import ServicesDep
from api.services import Services
from api.web import i18n
from api.web.login import key_fingerprint
from api.web.pages import JST, PageNotFound, ResidentPage, jst
from api.web.render import language, render
from api.web.sessions import WebSession
from ledger.proxies import PROXY_IDENTITY_PREFIX, list_for_holder
from projections.errors import InvalidQuery
from projections.resident import Overview, ResidentRecords

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


class Filters:
    """The list's query string, parsed once: dates are Japan calendar days, as residents mean
    them (``until`` includes its whole day)."""

    def __init__(self, request: Request) -> None:
        q = request.query_params
        self.errors: list[str] = []
        self.since_text = q.get("since", "")[:10]
        self.until_text = q.get("until", "")[:10]
        self.agency = q.get("agency", "")[:64] or None
        self.affair = q.get("affair", "")[:64] or None
        self.cursor = q.get("cursor", "")[:512] or None
        self.since = self._day(self.since_text, "since")
        until = self._day(self.until_text, "until")
        self.until = None if until is None else until + timedelta(days=1)

    def _day(self, text: str, name: str) -> datetime | None:
        if not text:
            return None
        try:
            return datetime.combine(date.fromisoformat(text), time(), JST)
        except ValueError:
            self.errors.append(name)
            return None

    @property
    def active(self) -> bool:
        return any((self.since_text, self.until_text, self.agency, self.affair))

    def query(self, *, cursor: str | None = None) -> str:
        params = {"since": self.since_text, "until": self.until_text, "agency": self.agency or "",
                  "affair": self.affair or "", "cursor": cursor or ""}
        return urlencode({k: v for k, v in params.items() if v})

    def list_kwargs(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "agency": self.agency,
                "affair": self.affair}


def _views(services: Services) -> Any:
    if services.projections.residents is None:
        raise PageNotFound()
    return services.projections.residents


@router.get("/me")
def my_records(request: Request, resident: ResidentPage, services: ServicesDep) -> Response:
    if resident.subject is not None and resident.subject.startswith(PROXY_IDENTITY_PREFIX):
        # A proxy identity has no records of its own: it reads its principals' (/proxy).
        return RedirectResponse("/proxy", status_code=303)
    return list_page(request, resident, services, str(resident.subject), "/me",
                     holder=str(resident.subject))


@router.get("/me/records/{record_id}")
def my_record(request: Request, record_id: str, resident: ResidentPage,
              services: ServicesDep) -> Response:
    return detail_page(request, resident, services, str(resident.subject), "/me", record_id)


@router.get("/me/verification")
def my_verification(request: Request, resident: ResidentPage, services: ServicesDep
                    ) -> Response:
    return verification(request, services, str(resident.subject))


def list_page(request: Request, session: WebSession, services: Services, subject: str,
              base: str, *, holder: str | None = None, **context: Any) -> Response:
    """A page of ``subject``'s records at ``base`` (the resident's own, or a principal's for
    their proxy): filters, counts, paging, and the marks' verification URL. With ``holder``,
    the page also says how many residents the holder acts for as proxy."""
    views = _views(services)
    filters = Filters(request)
    page, total, principals = None, 0, None
    if not filters.errors:
        try:
            overview = _overview(views, subject, filters, holder)
        except InvalidQuery:
            filters.errors.append("cursor")
        else:
            page, total = overview.page, overview.total
            agencies, affairs = overview.agencies, overview.affairs
            if isinstance(views, ResidentRecords):
                principals = overview.principals
    if page is None:
        agencies, affairs = views.facets(subject)
    if holder is not None:
        context["principals"] = (principals if principals is not None
                                 else len(list_for_holder(services.ledger, holder)))
    lang = language(request)
    cards = None if page is None else _cards(page.items, views.labels, lang, base)
    verify_query = filters.query(cursor=filters.cursor)
    return render(
        request, "me_list.html", 400 if filters.errors else 200, session=session,
        title_key="records_title", filters=filters, records=cards, total=total,
        agencies=agencies, affairs=affairs, base=base,
        next_query=filters.query(cursor=page.next_cursor) if page and page.next_cursor else None,
        first_query=filters.query() if filters.cursor else None,
        as_of=page.as_of if page else None,
        page_data=_page_data(services, f"{base}/verification" + (f"?{verify_query}"
                                                                 if verify_query else "")),
        **context)


def _overview(views: Any, subject: str, filters: Filters, holder: str | None = None
              ) -> Overview:
    if isinstance(views, ResidentRecords):
        # One snapshot: the page, its count, the filter choices (and the proxy count) agree.
        return views.overview(subject, cursor=filters.cursor, limit=PAGE_SIZE, holder=holder,
                              **filters.list_kwargs())
    # Another implementation of the resident queries (projections.shards) answers one by one.
    page = views.list(subject, cursor=filters.cursor, limit=PAGE_SIZE, **filters.list_kwargs())
    agencies, affairs = views.facets(subject)
    return Overview(page, views.count(subject, **filters.list_kwargs()), agencies, affairs)


def detail_page(request: Request, session: WebSession, services: Services, subject: str,
                base: str, record_id: str, **context: Any) -> Response:
    views = _views(services)
    try:
        found = views.get(subject, UUID(record_id))
    except ValueError:
        found = None
    if found is None:
        raise PageNotFound()
    row = _row(found, views.labels, language(request))
    return render(request, "me_record.html", session=session, title_key="record_title",
                  record=row, base=base,
                  page_data=_page_data(services, f"{base}/verification?id={found.id}"),
                  **context)


def verification(request: Request, services: Services, subject: str) -> Response:
    """What the browser needs to verify the records of one page (or one record) of
    ``subject``: the latest checkpoint note and, per record, the leaf, payload, salt and
    inclusion proof. Ids that are not ``subject``'s visible records are left out."""
    views = _views(services)
    one = request.query_params.get("id")
    if one is not None:
        try:
            found = views.get(subject, UUID(one))
        except ValueError:
            found = None
        records = [] if found is None else [found]
    else:
        filters = Filters(request)
        try:
            records = [] if filters.errors else views.list(
                subject, cursor=filters.cursor, limit=PAGE_SIZE,
                **filters.list_kwargs()).items
        except InvalidQuery:
            records = []
    return JSONResponse(bundle(services, records), headers={"Cache-Control": "no-store"})


def bundle(services: Services, records: list[Any]) -> dict[str, Any]:
    ledger = services.ledger
    checkpoint = ledger.latest_checkpoint()
    lines = {line["index"]: line for line in ledger.export_entries([r.index for r in records])}
    size = checkpoint.size if checkpoint else 0
    covered = [r.index for r in records if r.index < size]
    proofs = ledger.prove_inclusions(covered, size) if covered else {}
    out = []
    for record in records:
        line = lines.get(record.index)
        if line is None:
            continue
        out.append({"id": str(record.id), "index": record.index, "leaf": line["leaf"],
                    "payload": line["payload"], "salt": line["salt"],
                    "inclusion": proofs.get(record.index),
                    "expected": {"requester": record.requester.code,
                                 "provider": record.provider.code, "affair": record.affair.id,
                                 "items": [item.code for item in record.items],
                                 "outcome": record.outcome}})
    return {"checkpoint": checkpoint.note if checkpoint else None, "records": out}


def _page_data(services: Services, verify_url: str) -> dict[str, Any]:
    vkey = services.ledger.vkey
    return {"verify_url": verify_url, "vkey": vkey, "fingerprint": key_fingerprint(vkey)}


def _row(record: Any, labels: Any, lang: str) -> dict[str, Any]:
    """A record as the page shows it, every label already in the page's language (the list
    renders fifty of these: the template only prints strings)."""
    words = i18n.table(lang)
    name = "name_ja" if lang == "ja" else "name_en"
    row = labels.basis_row(record.basis)
    return {
        "id": str(record.id), "index": record.index,
        "requested": jst(record.requested_at), "provided": jst(record.provided_at),
        "requested_utc": record.requested_at.isoformat(),
        "requester": getattr(record.requester, name), "requester_code": record.requester.code,
        "provider": getattr(record.provider, name), "provider_code": record.provider.code,
        "affair": getattr(record.affair, lang),
        "basis": (words["basis_row"].format(row=row, id=record.basis) if row is not None
                  else record.basis),
        "items": [getattr(item, lang) for item in record.items],
        "outcome": record.outcome, "outcome_text": words["outcome_" + record.outcome],
        "reason": record.reason,
    }


# The list's record cards. A page shows fifty, and rendering them in the template (a look-up and
# an escape per field, about thirty per card) was most of the page's time: they are filled in
# here instead, every text escaped exactly as the template's autoescape does (markupsafe), the
# few distinct labels escaped once. Ids, log indexes and times are hex digits, digits and
# punctuation that need no escaping. The markup is what me_list.html showed for each record.
_CARD = (
    '<article class="record" data-id="{id}" data-index="{index}" aria-labelledby="rec-{id}">\n'
    '  <header class="record-head">\n'
    '    <h2 id="rec-{id}" class="record-title"><time datetime="{requested_utc}">{requested}'
    '</time> {affair}</h2>\n'
    '    <p class="mark" data-mark aria-live="polite"><span class="mark-icon" aria-hidden="true">'
    '…</span> <span class="mark-text">{mark_checking}</span></p>\n'
    '  </header>\n'
    '  <dl class="facts">\n'
    '    <div><dt>{requester_short}</dt><dd>{requester}</dd></div>\n'
    '    <div><dt>{provider_short}</dt><dd>{provider}</dd></div>\n'
    '    <div><dt>{why}</dt><dd>{affair}<br><small>{basis}</small></dd></div>\n'
    '    <div><dt>{items_title}</dt><dd>{items}</dd></div>\n'
    '    <div><dt>{outcome_title}</dt><dd class="outcome-{outcome}">{outcome_text}{reason}'
    '</dd></div>\n'
    '  </dl>\n'
    '  <p class="more"><a href="{base}/records/{id}">{details}<span class="visually-hidden">: '
    '{requested} {affair}</span></a></p>\n'
    '</article>\n'
)


@functools.lru_cache(maxsize=8192)
def _escaped(text: str) -> str:
    return str(escape(text))


@functools.cache
def _card_words(lang: str) -> dict[str, str]:
    words = i18n.table(lang)
    return {"mark_checking": _escaped(words["mark_checking"]),
            "requester_short": _escaped(words["requester_short"]),
            "provider_short": _escaped(words["provider_short"]), "why": _escaped(words["why"]),
            "items_title": _escaped(words["items"]), "outcome_title": _escaped(words["outcome"]),
            "details": _escaped(words["details"])}


def _cards(records: list[Any], labels: Any, lang: str, base: str) -> Markup:
    """The record cards of a list page, as one piece of markup."""
    words = i18n.table(lang)
    fixed = dict(_card_words(lang), base=_escaped(base))
    name = "name_ja" if lang == "ja" else "name_en"
    separator = "、" if lang == "ja" else ", "
    out = []
    for record in records:
        row = labels.basis_row(record.basis)
        basis = (words["basis_row"].format(row=row, id=record.basis) if row is not None
                 else record.basis)
        record_id = str(record.id)
        out.append(_CARD.format_map(dict(
            fixed, id=record_id, index=record.index, requested=jst(record.requested_at),
            requested_utc=record.requested_at.isoformat(),
            affair=_escaped(getattr(record.affair, lang)),
            requester=_escaped(getattr(record.requester, name)),
            provider=_escaped(getattr(record.provider, name)), basis=_escaped(basis),
            items=_escaped(separator.join(getattr(item, lang) for item in record.items)),
            outcome=_escaped(record.outcome),
            outcome_text=_escaped(words["outcome_" + record.outcome]),
            reason=f" ({escape(record.reason)})" if record.reason else "")))
    return Markup("".join(out))
