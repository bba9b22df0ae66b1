"""The agency page: the agency's own audit report and its latest appends, each with its receipt
and an inclusion proof checked in the browser (the same marks as residents get)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from api.deps import ServicesDep
from api.receipts import receipt_json
from api.services import Services
from api.web.login import key_fingerprint
from api.web.notices import agency_delivery
from api.web.pages import AgencyPage, PageNotFound, jst
from api.web.render import language, render
from api.web.reports import csv_download, report_context
from ledger.application import Receipt
from ledger.domain import provision_id
from ledger.encoding import parse_time
from ledger.schema import log_entry

router = APIRouter(include_in_schema=False)
#: How far back the page looks for the agency's appends (entries, newest first).
SCAN = 5000
SHOWN = 20


@router.get("/agency")
def agency_home(request: Request, agency: AgencyPage, services: ServicesDep) -> Response:
    context = report_context(request, services, agency.name, "/agency/csv")
    appends = recent_appends(services, agency.name)
    delivery = agency_delivery(services, agency.name, language(request))
    return render(request, "agency_home.html", session=agency, title_key="nav_agency",
                  appends=appends, scan=SCAN, delivery=delivery,
                  page_data={"verify_url": "/agency/verification", "vkey": services.ledger.vkey,
                             "fingerprint": key_fingerprint(services.ledger.vkey)},
                  **context)


@router.get("/agency/csv/{part}")
def agency_csv(part: str, agency: AgencyPage, services: ServicesDep) -> Response:
    return csv_download(services, agency.name, part)


@router.get("/agency/verification")
def agency_verification(agency: AgencyPage, services: ServicesDep) -> Response:
    appends = recent_appends(services, agency.name)
    ledger = services.ledger
    checkpoint = ledger.latest_checkpoint()
    size = checkpoint.size if checkpoint else 0
    covered = [a["index"] for a in appends if a["index"] < size]
    proofs = ledger.prove_inclusions(covered, size) if covered else {}
    records = [{"id": str(a["index"]), "index": a["index"], "leaf": a["leaf"],
                "payload": a["payload"], "salt": a["salt"], "inclusion": proofs.get(a["index"])}
               for a in appends]
    return JSONResponse({"checkpoint": checkpoint.note if checkpoint else None,
                         "records": records}, headers={"Cache-Control": "no-store"})


@router.get("/agency/receipts/{index}")
def agency_receipt(index: int, agency: AgencyPage, services: ServicesDep) -> Response:
    """The receipt of one of the agency's own entries (another agency's answers 404)."""
    ledger = services.ledger
    found = ledger.get_leaves([index]) if index >= 0 else {}
    if index not in found:
        raise PageNotFound()
    leaf, digest = found[index]
    entry = json.loads(leaf)
    if entry.get("agency") != agency.name or entry.get("kind") != "provision":
        raise PageNotFound()
    line = ledger.export_entries([index])[0]
    if line["payload"] is None:
        raise PageNotFound()
    receipt = Receipt(provision_id(agency.name, line["payload"]["request_id"]), index, leaf,
                      digest)
    return JSONResponse(receipt_json(ledger, receipt, ledger.latest_checkpoint()),
                        headers={"Cache-Control": "no-store"})


def recent_appends(services: Services, code: str) -> list[dict[str, Any]]:
    """The agency's provision entries among the last ``SCAN`` log entries, newest first.

    Leaves are canonical JSON, so the agency's own entries are found by their exact
    ``"agency":"<code>"`` member without parsing every leaf."""
    ledger = services.ledger
    size = ledger.tree_size()
    needle = json.dumps({"agency": code}, separators=(",", ":"))[1:-1].encode()
    with ledger.log.transaction(commit=False) as session:
        rows = session.execute(
            select(log_entry.c.idx, log_entry.c.leaf)
            .where(log_entry.c.idx >= max(0, size - SCAN)).order_by(log_entry.c.idx.desc())
        ).all()
    mine = [int(r.idx) for r in rows if needle in bytes(r.leaf)][:SHOWN]
    views = services.projections.residents
    name = views.labels.agency if views is not None else (lambda c: c)
    out = []
    for line in reversed(ledger.export_entries(mine)):
        leaf = json.loads(_b64(line["leaf"]))
        if leaf.get("kind") != "provision":
            continue
        payload = line["payload"] or {}
        out.append({**line, "logged_at": jst(parse_time(leaf["logged_at"], field="logged_at")),
                    "request_id": payload.get("request_id"),
                    "id": (str(provision_id(code, payload["request_id"]))
                           if "request_id" in payload else None),
                    "requester": name(payload.get("requester", "")),
                    "provider": name(payload.get("provider", "")),
                    "affair": payload.get("affair")})
    return out


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
