"""The web pages served by ``kiroku serve`` itself: residents' records with in-browser
verification, the auditor console and the agency page (server-rendered Jinja2, a little
JavaScript, everything under /static: no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.web import (
    agency,
    applications,
    auditor,
    login,
    notices,
    proxies,
    resident,
    sessions,
    subscriptions,
)
from api.web.pages import install_handlers

STATIC = Path(__file__).parent / "static"
#: The page routers (tests/api/test_web_pages.py checks every route of each against its matrix).
ROUTERS = (login.router, resident.router, proxies.router, auditor.router, agency.router,
           notices.router, subscriptions.router, applications.router)


class _Static(StaticFiles):
    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", _Static(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        found = sessions.read(request, request.app.state.services)
        return RedirectResponse(login.HOME[found.role] if found else "/login", status_code=303)
