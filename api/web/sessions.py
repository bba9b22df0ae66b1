"""Browser sessions: who is logged in, carried in a cookie, and CSRF protection for forms.

The cookie holds an HMAC token (api/tokens.py, purpose ``web``) naming the role and the credential,
never a pseudonym: a resident's session names their certificate fingerprint and the pseudonym is
looked up on each request, so revoking the certificate ends the session (as for API sessions).
It is ``HttpOnly`` (scripts cannot read it), ``SameSite=Strict`` (no cross-site request carries it)
and ``Secure`` whenever the request came over TLS. Session cookies never authenticate /v1 API calls:
those take only ``Authorization`` headers, so the API has no CSRF surface.

CSRF (OWASP's double-submit cookie, on top of SameSite=Strict): every page sets a random
``kiroku_csrf`` cookie and puts the same value in each form (and a ``<meta>`` for scripts); a POST
must present both, equal, and an ``Origin`` header, when sent, must be this site.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from api.errors import Unauthenticated
from api.services import Services

SESSION_COOKIE = "kiroku_session"
CSRF_COOKIE = "kiroku_csrf"
LANG_COOKIE = "kiroku_lang"
PURPOSE = "web"
ROLES = ("resident", "auditor", "agency")


class CsrfRefused(Exception):
    """A state-changing request without a matching CSRF token or from another origin."""


@dataclass(frozen=True)
class WebSession:
    role: str
    #: resident: certificate fingerprint; auditor: auditor name; agency: agency code
    name: str
    key_id: str | None = None
    #: resident only: the pseudonym, resolved on this request (never stored in the cookie)
    subject: str | None = None


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def start(response: Response, request: Request, services: Services, role: str, name: str,
          key_id: str | None = None) -> None:
    claims: dict[str, Any] = {"r": role, "n": name}
    if key_id is not None:
        claims["k"] = key_id
    token, _ = services.tokens.issue(PURPOSE, claims, services.settings.session_ttl)
    response.set_cookie(SESSION_COOKIE, token, max_age=services.settings.session_ttl,
                        httponly=True, samesite="strict", secure=secure(request), path="/")


def end(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict",
                           secure=secure(request), path="/")


def read(request: Request, services: Services) -> WebSession | None:
    """The session the cookie names, or None (no cookie, forged, expired, or its credential is
    gone: a revoked certificate, or an agency key no longer valid)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = services.tokens.open(PURPOSE, token)
    except Unauthenticated:
        return None
    role, name, key_id = claims.get("r"), claims.get("n"), claims.get("k")
    if role not in ROLES or not isinstance(name, str):
        return None
    if role == "resident":
        known, subject = services.credentials.cached(name)
        if not known:
            subject = services.credentials.subject_for(name)
        return None if subject is None else WebSession(role, name, None, subject)
    if role == "auditor":
        found = services.auditors.get(str(key_id))
        return WebSession(role, name, str(key_id)) if found and found[0] == name else None
    from api.web.login import agency_key_valid

    if not isinstance(key_id, str) or not agency_key_valid(services, name, key_id):
        return None
    return WebSession(role, name, key_id)


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (set as a cookie by ``ensure_csrf`` on the response)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and 20 <= len(existing) <= 64:
        return existing
    cached = getattr(request.state, "csrf", None)
    if cached is None:
        cached = request.state.csrf = secrets.token_urlsafe(24)
    return str(cached)


def ensure_csrf(response: Response, request: Request) -> None:
    if request.cookies.get(CSRF_COOKIE) != csrf_token(request):
        response.set_cookie(CSRF_COOKIE, csrf_token(request), httponly=True, samesite="strict",
                            secure=secure(request), path="/")


def check_csrf(request: Request, presented: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not presented or not hmac.compare_digest(cookie, presented):
        raise CsrfRefused("the form's CSRF token does not match this browser's; reload the page")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise CsrfRefused("the request came from another site")
