"""A resident reads "who provided what about me, and why" — their own records only.

The subject is never taken from the request: it comes from the session (certificate → pseudonym),
so no parameter can name another resident. Records under non-disclosure (不開示) never appear:
the projection leaves them out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from api import problems
from api.deps import ResidentDep, ServicesDep
from api.errors import InvalidParameter, ProofPending, ResourceNotFound, Unavailable
from api.models import RecordDetail, RecordPage
from api.witnessing import checkpoint_for_proof
from ledger.tlogproof import entry_proof

router = APIRouter(prefix="/v1/me", tags=["residents"])


def _records(services: ServicesDep) -> Any:
    if services.projections.residents is None:
        raise Unavailable("the resident view (projections) is not installed")
    return services.projections.residents


@router.get("/provisions", response_model=RecordPage,
            responses=problems.responses(400, 401, 403, 503),
            summary="My provision records (newest first)")
def list_provisions(
    resident: ResidentDep, services: ServicesDep,
    since: Annotated[datetime | None, Query(description="Records provided or requested at or "
                                            "after this time (RFC 3339)")] = None,
    until: Annotated[datetime | None, Query(description="… and before this time")] = None,
    agency: Annotated[str | None, Query(max_length=64,
                                        description="Requester or provider code")] = None,
    affair: Annotated[str | None, Query(max_length=64, description="Affair id")] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Each record names the requester and provider, the affair and the items with Japanese and
    English labels (``ja``, ``en``), the legal basis, the times and the outcome."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidParameter(f"{name} needs a UTC offset, e.g. 2026-06-01T00:00:00Z")
    try:
        page = _records(services).list(resident.subject, since=since, until=until,
                                       agency=agency, affair=affair, cursor=cursor, limit=limit)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None
    return page.to_json()


@router.get("/provisions/{provision_id}", response_model=RecordDetail,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="One of my records, with what I need to verify it")
def get_provision(provision_id: UUID, resident: ResidentDep, services: ServicesDep
                  ) -> dict[str, Any]:
    """The record, its exact leaf, payload and salt, and an inclusion proof against the latest
    signed checkpoint, so the resident can check it offline with nothing but the operator's
    ``vkey`` (kiroku.client does: ``verify_record``)."""
    record, line = _own_entry(provision_id, resident.subject, services)
    ledger = ledger_of(record, services)
    payload = line["payload"]
    settings = services.settings
    covering = checkpoint_for_proof(ledger, settings.witness_list(), settings.quorum,
                                    record.index)
    inclusion = ledger.prove_inclusion(record.index, covering[1]) if covering else None
    return {"record": record.to_json(), "leaf": line["leaf"], "leaf_hash": line["leaf_hash"],
            "payload": payload, "salt": line["salt"],
            "checkpoint": covering[0] if covering else None,
            "inclusion": inclusion,
            "vkey": ledger.vkey}


def ledger_of(record: Any, services: ServicesDep) -> Any:
    """The log holding the record: its shard's (docs/shards.md), else the service's one."""
    return getattr(record, "ledger", None) or services.ledger


def _own_entry(provision_id: UUID, subject: str, services: ServicesDep) -> tuple[Any, Any]:
    """The resident's record and its export line; the same 404 for a record of someone else
    as for one that does not exist, so the answer reveals nothing about other residents."""
    record = _records(services).get(subject, provision_id)
    if record is None:
        raise ResourceNotFound(f"you have no record {provision_id}")
    ledger = ledger_of(record, services)
    line = next(iter(ledger.export(record.index, record.index + 1)), None)
    payload = line["payload"] if line else None
    # A version-2 payload names link codes: it is this resident's if they resolve to them.
    if line is None or (payload is not None
                        and ledger.link_codes.resident_of(payload) != subject):
        raise ResourceNotFound(f"you have no record {provision_id}")
    return record, line


@router.get("/provisions/{provision_id}/proof", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"example": "c2sp.org/tlog-proof@v1\n"
                                                          "extra …\nindex 42\n…\n\n"
                                                          "kiroku.local/log\n…"}}},
                       **problems.responses(400, 401, 403, 404, 503)},
            summary="One of my records as a self-contained offline proof (C2SP tlog-proof)")
def get_provision_proof(provision_id: UUID, resident: ResidentDep, services: ServicesDep
                        ) -> PlainTextResponse:
    """A ``.tlog-proof`` file: the entry's leaf, payload and salt (in ``extra``), its inclusion
    proof and the checkpoint with the witnesses' cosignatures when witnesses are configured.
    Check it with no network: ``kiroku verify proof FILE --vkey … [--witness … --quorum K]``.
    It holds the resident's own record: keep it as private as the record itself."""
    record, _ = _own_entry(provision_id, resident.subject, services)
    settings = services.settings
    ledger = ledger_of(record, services)
    covering = checkpoint_for_proof(ledger, settings.witness_list(), settings.quorum,
                                    record.index)
    if covering is None:
        raise ProofPending("no (witnessed) checkpoint covers this record yet; ask again shortly",
                           retry_after=max(settings.checkpoint_interval, 1.0))
    text = entry_proof(ledger, record.index, covering[0], covering[1])
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{provision_id}.tlog-proof"'})
