"""The auditor console: the log's health at a glance, checked in the auditor's own browser.

The latest checkpoints' signatures and the consistency of each with the one before it are
verified by static/js/console.js (the same verify.js as the residents' marks) from the notes
and RFC 9162 consistency proofs this page carries; the server's own word is only the numbers
it shows beside them. Reports per agency have charts drawn from the report's own counts, and one
page per log entry shows its leaf, its statement signature check and its inclusion proof.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.deps import ServicesDep
from api.services import Services
from api.web.login import key_fingerprint
from api.web.pages import AuditorPage, PageNotFound
from api.web.render import render
from api.web.reports import csv_download, report_context
from ledger.errors import LedgerError
from ledger.signing import verify_signature

router = APIRouter(include_in_schema=False)
CHECKPOINTS_SHOWN = 10
LEAF_ONLY = ("index", "prev", "logged_at", "signature")


@router.get("/audit")
def console(request: Request, auditor: AuditorPage, services: ServicesDep) -> Response:
    ledger = services.ledger
    checkpoints = ledger.list_checkpoints(limit=CHECKPOINTS_SHOWN)
    checkpoints.sort(key=lambda c: c["tree_size"])
    consistency = []
    for old, new in itertools.pairwise(checkpoints):
        if 0 < old["tree_size"] < new["tree_size"]:
            consistency.append(ledger.prove_consistency(old["tree_size"], new["tree_size"]))
    status = services.projections.status(ledger) if services.projections.status else []
    registry = ledger.registry
    agencies = sorted(registry.agencies.values(), key=lambda a: a.code)
    data = {"vkey": ledger.vkey, "fingerprint": key_fingerprint(ledger.vkey),
            "checkpoints": [{"size": c["tree_size"], "note": c["note"]} for c in checkpoints],
            "consistency": consistency}
    return render(request, "audit_home.html", session=auditor, title_key="console_title",
                  tree_size=ledger.tree_size(), checkpoints=list(reversed(checkpoints)),
                  views=status, agencies=agencies, console_data=data,
                  fingerprint=data["fingerprint"])


@router.get("/audit/agencies/{code}")
def agency_report(request: Request, code: str, auditor: AuditorPage, services: ServicesDep
                  ) -> Response:
    context = report_context(request, services, code, f"/audit/agencies/{code}/csv")
    return render(request, "audit_agency.html", session=auditor, title_key="console_title",
                  **context)


@router.get("/audit/agencies/{code}/csv/{part}")
def agency_csv(code: str, part: str, auditor: AuditorPage, services: ServicesDep) -> Response:
    return csv_download(services, code, part)


@router.get("/audit/entry")
def entry_lookup(index: str, auditor: AuditorPage) -> Response:
    if not index.isdigit():
        raise PageNotFound()
    return RedirectResponse(f"/audit/entries/{int(index)}", status_code=303)


@router.get("/audit/entries/{index}")
def entry_page(request: Request, index: int, auditor: AuditorPage, services: ServicesDep
               ) -> Response:
    line = _line(services, index)
    leaf = json.loads(_b64(line["leaf"]))
    return render(request, "audit_entry.html", session=auditor, title_key="console_title",
                  index=index, line=line, leaf=leaf,
                  leaf_text=json.dumps(leaf, ensure_ascii=False, indent=2),
                  payload_text=None if line["payload"] is None else json.dumps(
                      line["payload"], ensure_ascii=False, indent=2),
                  signature=check_statement(services, leaf),
                  flags=_flags(services, leaf, line["payload"]),
                  page_data={"verify_url": f"/audit/entries/{index}/verification",
                             "vkey": services.ledger.vkey,
                             "fingerprint": key_fingerprint(services.ledger.vkey)})


@router.get("/audit/entries/{index}/verification")
def entry_verification(index: int, auditor: AuditorPage, services: ServicesDep) -> Response:
    return JSONResponse(entry_bundle(services, index), headers={"Cache-Control": "no-store"})


def entry_bundle(services: Services, index: int) -> dict[str, Any]:
    """The verification bundle (as residents' pages get) for one log entry, by index."""
    line = _line(services, index)
    checkpoint = services.ledger.latest_checkpoint()
    inclusion = None
    if checkpoint is not None and checkpoint.size > index:
        inclusion = services.ledger.prove_inclusions([index], checkpoint.size)[index]
    return {"checkpoint": checkpoint.note if checkpoint else None,
            "records": [{"id": str(index), "index": index, "leaf": line["leaf"],
                         "payload": line["payload"], "salt": line["salt"],
                         "inclusion": inclusion}]}


def _flags(services: Services, leaf: dict[str, Any], payload: dict[str, Any] | None
           ) -> dict[str, Any] | None:
    """A provision's non-disclosure history (不開示, 自己情報提供不可, disclose_after), as
    auditors see it: who set or lifted which flag, when and why, and what is in force now."""
    if leaf.get("kind") != "provision" or not payload or "request_id" not in payload:
        return None
    from ledger.domain import provision_id

    history = services.ledger.get_flag_history(
        provision_id(str(leaf.get("agency")), str(payload["request_id"])))
    return None if history is None else dict(history.to_json())


def check_statement(services: Services, leaf: dict[str, Any]) -> dict[str, Any]:
    """The statement signature of one entry, checked on the server with the key the log
    registered (the operator's for registrar entries)."""
    statement = {k: v for k, v in leaf.items() if k not in LEAF_ONLY}
    try:
        if leaf.get("agency") == "operator":
            # Registrar entries are signed by the operator key of their time: after a rotation
            # (docs/key-rotation.md) older entries carry the previous key's id.
            from ledger.keys import statement_key_id

            found = [k for k in services.ledger.operator_public_keys
                     if statement_key_id(k) == leaf.get("key_id")]
            if not found:
                return {"ok": False, "reason": f"no operator key {leaf.get('key_id')} in this log"}
            public = found[0]
        else:
            from ledger.encoding import parse_time

            key = services.ledger.registry.key_for(
                str(leaf.get("agency")), str(leaf.get("key_id")),
                parse_time(str(leaf.get("time")), field="time"),
                parse_time(str(leaf.get("logged_at")), field="logged_at"))
            public = bytes(key.public_key)
        verify_signature(statement, str(leaf.get("signature")), public)
    except LedgerError as exc:
        return {"ok": False, "reason": str(exc)}
    return {"ok": True, "agency": leaf.get("agency"), "key_id": leaf.get("key_id")}


def _line(services: Services, index: int) -> dict[str, Any]:
    found = services.ledger.export_entries([index]) if index >= 0 else []
    if not found:
        raise PageNotFound()
    return found[0]


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)
