"""What every page route shares: the logged-in user by role, and the HTML error pages.

A page needs a session of the right role: without one the browser is sent to /login (303); with
one of another role it gets a 403 page. Another resident's record answers 404 exactly like a
missing one, as in the API.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.deps import ServicesDep
from api.web import sessions
from api.web.render import render
from api.web.sessions import CsrfRefused, WebSession

JST = timezone(timedelta(hours=9), "JST")


class LoginRequired(Exception):
    pass


class WrongRole(Exception):
    pass


class PageNotFound(Exception):
    pass


def _role(role: str):  # type: ignore[no-untyped-def]
    async def dependency(request: Request, services: ServicesDep) -> WebSession:
        found = sessions.read(request, services)
        if found is None:
            raise LoginRequired()
        if found.role != role:
            raise WrongRole()
        return found
    return dependency


ResidentPage = Annotated[WebSession, Depends(_role("resident"))]
AuditorPage = Annotated[WebSession, Depends(_role("auditor"))]
AgencyPage = Annotated[WebSession, Depends(_role("agency"))]


def jst(moment: datetime | None) -> str:
    """A time as residents read it: Japan time, to the minute."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M")


def install_handlers(app: FastAPI) -> None:
    async def login_required(request: Request, _exc: Exception) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)

    async def wrong_role(request: Request, _exc: Exception) -> Response:
        return render(request, "error.html", 403, title_key="forbidden", text_key="forbidden_text")

    async def not_found(request: Request, _exc: Exception) -> Response:
        return render(request, "error.html", 404, title_key="not_found", text_key="not_found_text")

    async def csrf_refused(request: Request, _exc: Exception) -> Response:
        return render(request, "error.html", 403, title_key="forbidden", text_key="csrf_text")

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(WrongRole, wrong_role)
    app.add_exception_handler(PageNotFound, not_found)
    app.add_exception_handler(CsrfRefused, csrf_refused)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
