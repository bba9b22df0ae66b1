"""Liveness with substance: the database answers and the latest checkpoint still holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api import metrics, problems
from api.deps import ServicesDep
from api.models import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses=problems.responses(503),
            summary="Database reachable and latest checkpoint re-verified")
def healthz(services: ServicesDep) -> Any:
    ledger = services.ledger
    try:
        ledger.verify_latest_checkpoint()
        latest = ledger.latest_checkpoint()
        size = ledger.tree_size()
    except Exception as exc:  # noqa: BLE001 (any failure means "do not route traffic to me")
        body = problems.problem("unavailable", 503, f"health check failed: {type(exc).__name__}"
                                f": {exc}", "/healthz")
        return JSONResponse(body, status_code=503, media_type=problems.PROBLEM_JSON)
    status = services.projections.status
    views = list(status(ledger)) if status is not None else []
    return {"status": "ok", "tree_size": size, "checkpoint_size": latest.size if latest else 0,
            "projections": views}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"example":
                                                        "kiroku_tree_size 1042.0\n"}}}},
            summary="Prometheus metrics")
def prometheus(services: ServicesDep) -> Response:
    data, content_type = metrics.render(services.ledger, services.projections.status)
    return Response(data, media_type=content_type)
