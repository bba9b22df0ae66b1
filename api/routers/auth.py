"""Residents log in: a server challenge signed with the key of a JPKI-like certificate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import problems
from api.deps import ServicesDep
from api.errors import Unauthenticated, Unavailable
from api.models import Challenge, LoginRequest, Session
from api.residents import (
    check_certificate,
    fingerprint,
    login_message,
    parse_certificate,
    utc,
    verify_login_signature,
)
from api.services import Services

router = APIRouter(prefix="/v1/auth", tags=["residents"])


@router.post("/challenge", response_model=Challenge, responses=problems.responses(429),
             summary="Get a login challenge")
def challenge(services: ServicesDep) -> dict[str, Any]:
    """A fresh challenge, valid for KIROKU_CHALLENGE_TTL seconds and usable once. Sign
    ``message`` with the certificate's private key and POST it to /v1/auth/session."""
    token, expires = services.tokens.issue("challenge", {}, services.settings.challenge_ttl)
    return {"challenge": token, "message": login_message(services.settings.log_origin,
                                                         token).decode(),
            "expires_at": utc(expires)}


@router.post("/session", response_model=Session,
             responses=problems.responses(401, 422, 429, 503),
             summary="Exchange a signed challenge for a session token")
def session(body: LoginRequest, services: ServicesDep) -> dict[str, Any]:
    """Checks the certificate against the trusted resident CA, the signature over the challenge
    message, and the certificate's registration; returns a Bearer token valid for
    KIROKU_SESSION_TTL seconds."""
    fp = authenticate_resident(services, body)
    token, expires = services.tokens.issue("session", {"cfp": fp}, services.settings.session_ttl)
    return {"access_token": token, "token_type": "Bearer",
            "expires_in": services.settings.session_ttl, "expires_at": utc(expires)}


def authenticate_resident(services: Services, body: LoginRequest) -> str:
    """The fingerprint of the registered certificate that signed this challenge (used once);
    raises Unauthenticated otherwise. The API's session and the web pages' login share it."""
    if not services.anchors:
        raise Unavailable("no resident CA is configured (KIROKU_RESIDENT_CA)")
    claims = services.tokens.open("challenge", body.challenge)
    cert = parse_certificate(body.certificate)
    check_certificate(cert, services.anchors)
    verify_login_signature(cert, login_message(services.settings.log_origin, body.challenge),
                           body.signature)
    fp = fingerprint(cert)
    if services.credentials.subject_for(fp) is None:
        raise Unauthenticated("this certificate is not registered to a resident of this log")
    services.challenges.check_and_add("challenge", str(claims.get("jti")), float(claims["exp"]))
    return fp
