"""An agency's audit report as a page section: totals, charts drawn from the same numbers,
refusals, anomalies, and CSV downloads. Auditors see any agency's; an agency its own."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup

from api.services import Services
from api.web.pages import PageNotFound
from api.web.render import language
from projections.charts import affair_chart, monthly_chart
from projections.errors import UnknownAgency
from projections.report import CSV_PARTS, csv_text


def report_context(request: Request, services: Services, code: str,
                   csv_base: str) -> dict[str, Any]:
    reports = services.projections.reports
    if reports is None:
        raise PageNotFound()
    try:
        report = reports.get(code)
    except UnknownAgency:
        raise PageNotFound() from None
    lang = language(request)
    return {"report": report, "csv_base": csv_base, "csv_parts": list(CSV_PARTS),
            "affair_svg": Markup(affair_chart(report, lang)),
            "outcome_svg": Markup(monthly_chart(report))}


def csv_download(services: Services, code: str, part: str) -> Response:
    reports = services.projections.reports
    if reports is None or part not in CSV_PARTS:
        raise PageNotFound()
    try:
        report = reports.get(code)
    except UnknownAgency:
        raise PageNotFound() from None
    # BOM: spreadsheet programs in Japan open UTF-8 CSV correctly only with it.
    return Response("\ufeff" + csv_text(report, part), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{code}-{part}.csv"',
                             "Cache-Control": "no-store"})
