"""Logging in from a browser: residents with their certificate, auditors and agencies with their
Ed25519 key, each signing a one-time challenge **inside the browser** (static/js/login.js uses
WebCrypto; the private key never leaves the page). In demo mode, one click logs in as a demo
resident, the demo auditor or a demo agency: the service signs the challenge with the demo key
files it generated and runs the very same checks.

Auditors and agencies sign ``kiroku-console-login/v1\\n<origin>\\n<principal>\\n<key id>\\n
<challenge>\\n``: a different first line from residents' ``kiroku-login/v1`` and from signed API
requests' ``kiroku-request/v1``, so no signature made for one purpose is accepted for another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from api.deps import ServicesDep
from api.errors import Forbidden, InvalidParameter, ResourceNotFound, Unauthenticated
from api.models import LoginRequest
from api.residents import fingerprint, login_message, sign_login
from api.routers.auth import authenticate_resident
from api.services import Services
from api.web import sessions
from api.web.render import render
from ledger.errors import StatementRejected
from ledger.keys import SigningKey

router = APIRouter(include_in_schema=False)

HOME = {"resident": "/me", "auditor": "/audit", "agency": "/agency"}
CONSOLE_PREFIX = b"kiroku-console-login/v1"


class ConsoleLogin(BaseModel):
    principal: str = Field(max_length=80, description="auditor:<name> or agency:<code>")
    key_id: str = Field(min_length=16, max_length=16)
    challenge: str = Field(max_length=4096)
    signature: str = Field(max_length=200)


def console_message(origin: str, principal: str, key_id: str, challenge: str) -> bytes:
    return b"\n".join([CONSOLE_PREFIX, origin.encode(), principal.encode(), key_id.encode(),
                       challenge.encode()]) + b"\n"


def agency_key_valid(services: Services, code: str, key_id: str) -> bool:
    """The key is registered to the agency, valid now and not revoked (checked on every page, so
    revoking the key in the log ends the agency's browser sessions)."""
    # Registration entries written since the last look (a revocation) apply within a second.
    services.ledger.refresh_registry(force=False)
    registry = services.ledger.registry
    now = datetime.now(UTC)
    try:
        registry.key_for(code, key_id, now, now)
    except StatementRejected:
        return False
    return True


def _public_key(services: Services, principal: str, key_id: str) -> tuple[str, str, bytes]:
    role, _, name = principal.partition(":")
    if role == "auditor":
        found = services.auditors.get(key_id)
        if found is None or found[0] != name:
            raise Unauthenticated("no such auditor key")
        return role, name, found[1]
    if role == "agency":
        registry = services.ledger.registry
        now = datetime.now(UTC)
        if key_id not in registry.keys:
            services.ledger.refresh_registry()
        try:
            return role, name, bytes(registry.key_for(name, key_id, now, now).public_key)
        except StatementRejected as exc:
            raise Unauthenticated(f"agency key refused: {exc}") from None
    raise InvalidParameter("principal must be 'auditor:<name>' or 'agency:<code>'")


def _check_console(services: Services, body: ConsoleLogin) -> tuple[str, str]:
    claims = services.tokens.open("challenge", body.challenge)
    role, name, public = _public_key(services, body.principal, body.key_id)
    message = console_message(services.settings.log_origin, body.principal, body.key_id,
                              body.challenge)
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(body.signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        raise Unauthenticated("the challenge signature does not verify with that key") from None
    services.challenges.check_and_add("challenge", str(claims.get("jti")), float(claims["exp"]))
    return role, name


def _landing(request: Request, services: Services, role: str, name: str,
             key_id: str | None = None) -> Response:
    response = JSONResponse({"next": HOME[role]})
    sessions.start(response, request, services, role, name, key_id)
    return response


@router.get("/login")
def login_page(request: Request, services: ServicesDep) -> Response:
    return render(request, "login.html", demo=_demo_choices(services) if services.settings.demo
                  else None, title_key="login_title")


@router.post("/login/resident")
def login_resident(request: Request, body: LoginRequest, services: ServicesDep) -> Response:
    sessions.check_csrf(request, request.headers.get("x-csrf-token"))
    fp = authenticate_resident(services, body)
    return _landing(request, services, "resident", fp)


@router.post("/login/console")
def login_console(request: Request, body: ConsoleLogin, services: ServicesDep) -> Response:
    sessions.check_csrf(request, request.headers.get("x-csrf-token"))
    role, name = _check_console(services, body)
    return _landing(request, services, role, name, body.key_id)


@router.post("/login/demo")
def login_demo(request: Request, services: ServicesDep,
               csrf: Annotated[str, Form(max_length=64)],
               who: Annotated[str, Form(max_length=80)]) -> Response:
    """Demo mode only: sign the challenge with the demo key the service generated."""
    sessions.check_csrf(request, csrf)
    if not services.settings.demo:
        raise Forbidden("one-click log-in exists only in demo mode")
    token, _ = services.tokens.issue("challenge", {}, services.settings.challenge_ttl)
    role, _, name = who.partition(":")
    if role == "resident":
        cert_path, key_path = _demo_resident_files(services, name)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        signature = sign_login(key, login_message(services.settings.log_origin, token))
        fp = authenticate_resident(services, LoginRequest(
            certificate=cert_path.read_text(), challenge=token,
            signature=base64.b64encode(signature).decode()))
        role, name, key_id = "resident", fp, None
    else:
        signer, principal = _demo_console_key(services, role, name)
        key_id = signer.key_id
        message = console_message(services.settings.log_origin, principal, key_id, token)
        role, name = _check_console(services, ConsoleLogin(
            principal=principal, key_id=key_id, challenge=token,
            signature=base64.b64encode(signer.sign(message)).decode()))
    response = RedirectResponse(HOME[role], status_code=303)
    sessions.start(response, request, services, role, name, key_id)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=64)]) -> Response:
    sessions.check_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    sessions.end(response, request)
    return response


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/") -> Response:
    """Set the page language and go back; ``next`` must be a path on this site."""
    if lang not in ("ja", "en"):
        raise ResourceNotFound("no such language")
    if not next.startswith("/") or next.startswith("//") or "\\" in next:
        next = "/"
    response = RedirectResponse(next, status_code=303)
    response.set_cookie(sessions.LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict",
                        secure=sessions.secure(request), path="/")
    return response


# -- demo credentials ----------------------------------------------------------------------------
def _demo_choices(services: Services) -> dict[str, Any]:
    folder = services.settings.demo_dir
    residents = []
    for n, cert_path in enumerate(sorted((folder / "residents").glob("*.crt")), start=1):
        fp = fingerprint(x509.load_pem_x509_certificate(cert_path.read_bytes()))
        subject = services.credentials.subject_for(fp)
        if subject is None or services.projections.residents is None:
            continue
        records = services.projections.residents.count(subject)
        residents.append({"who": f"resident:{cert_path.stem}", "n": n, "records": records})
    agencies = []
    labels = services.projections.residents.labels if services.projections.residents else None
    for pem in sorted((services.ledger.settings.key_dir / "agencies").glob("*.pem"))[:8]:
        code = pem.stem
        name = labels.agency(code) if labels is not None else code
        agencies.append({"who": f"agency:{code}", "name": name})
    auditor = (folder / "auditor.pem").exists()
    return {"residents": residents, "agencies": agencies, "auditor": auditor}


def _demo_resident_files(services: Services, label: str) -> tuple[Path, Path]:
    folder = services.settings.demo_dir / "residents"
    if not label.startswith("resident-") or not label[9:].isalnum():
        raise InvalidParameter("no such demo resident")
    cert, key = folder / f"{label}.crt", folder / f"{label}.key"
    if not cert.exists() or not key.exists():
        raise InvalidParameter("no such demo resident")
    return cert, key


def _demo_console_key(services: Services, role: str, name: str) -> tuple[SigningKey, str]:
    if role == "auditor":
        path = services.settings.demo_dir / "auditor.pem"
        key = SigningKey.load(path) if path.exists() else None
        found = services.auditors.get(key.key_id) if key else None
        if key is None or found is None:
            raise InvalidParameter("the demo auditor is not configured")
        return key, f"auditor:{found[0]}"
    if role == "agency" and name.isalnum():
        path = services.ledger.settings.key_dir / "agencies" / f"{name}.pem"
        if path.exists():
            return SigningKey.load(path), f"agency:{name}"
    raise InvalidParameter("no such demo principal")


def key_fingerprint(vkey: str) -> str:
    """A short fingerprint of the operator's vkey a resident can compare by eye."""
    digest = hashlib.sha256(vkey.encode()).hexdigest()[:16]
    return " ".join(digest[i:i + 4] for i in range(0, 16, 4))
