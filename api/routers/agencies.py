"""An agency reads its own audit report (auditors may read any agency's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api import problems
from api.deps import AgencyOrAuditorDep, ServicesDep
from api.errors import Forbidden, ResourceNotFound, Unavailable
from api.models import AgencyReport

router = APIRouter(prefix="/v1/agencies", tags=["agencies"])


@router.get("/{code}/report", response_model=AgencyReport,
            responses=problems.responses(400, 401, 403, 404, 503),
            summary="An agency's audit report",
            response_description="The report (projections.report): counts by affair, "
            "counterpart, outcome and month, as of a log size")
def report(code: Annotated[str, Path(max_length=64)], caller: AgencyOrAuditorDep,
           services: ServicesDep,
           as_of: Annotated[int | None, Query(ge=0, description="The last log index to count "
                                              "(inclusive; default: everything projected)")
                            ] = None,
           ) -> dict[str, Any]:
    """Needs a signed request by that agency's own registered key, or by an auditor (the
    supervisor reads every agency's report, ARCHITECTURE.md)."""
    if caller.kind == "agency" and caller.name != code:
        raise Forbidden("an agency may read only its own report")
    if code not in services.ledger.registry.agencies:
        services.ledger.refresh_registry()
        if code not in services.ledger.registry.agencies:
            raise ResourceNotFound(f"no agency {code!r}")
    if services.projections.reports is None:
        raise Unavailable("agency reports (projections) are not installed")
    try:
        return dict(services.projections.reports.get(code, as_of=as_of))
    except ValueError as exc:
        from api.errors import InvalidParameter

        raise InvalidParameter(str(exc)) from None


