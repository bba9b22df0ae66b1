"""The residents' own signatures inside ``application.submitted`` payloads (docs/applications.md).

The registrar (the operator) signs an ``application.submitted`` entry after checking the
resident's card signature; the resident's certificate, signature and exact signed request travel
in the committed payload. This check does not take the registrar's word for it: for every such
entry whose payload is still there (not erased by retention) it verifies, with the resident CA's
certificate the auditor holds,

1. that the certificate was issued by that CA and was valid when the entry was logged;
2. the signature, with the certificate's key (RSA PKCS #1 v1.5, ECDSA P-256 or Ed25519, SHA-256),
   over ``"kiroku-application/v1\\n" ‖ origin ‖ "\\n" ‖ JCS(request)``;
3. that the application id is the one the log derives from that signature
   (``uuid5(NS, "application:" ‖ hex(SHA-256(signature text)))``), so one signed request makes
   one application.

Run after the export verified (its payloads match their commitments): ``kiroku verify EXPORT
--checkpoint … --vkey … --resident-ca CA.pem``. Standalone code, like the rest of the verifier:
``cryptography`` for certificates and signatures, ``rfc8785`` for JCS.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

SUBMITTED = "application.submitted"
CONTEXT = b"kiroku-application/v1\n"
#: The log's fixed UUID namespace (docs/applications.md): application ids are part of the data.
NAMESPACE = uuid.UUID("5b0c7a8e-1f0e-4c1d-9a55-6b69726f6b75")


@dataclass
class ApplicationReport:
    checked: int = 0
    erased: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)


def application_id(signature: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "application:" + hashlib.sha256(signature.encode())
                          .hexdigest()))


def check_lines(lines: Iterable[bytes | str], origin: str, ca: x509.Certificate
                ) -> ApplicationReport:
    """Check every ``application.submitted`` entry of an export's lines."""
    report = ApplicationReport()
    for raw in lines:
        if not raw.strip():
            continue
        line = json.loads(raw)
        leaf = json.loads(base64.b64decode(line["leaf"]))
        if leaf.get("kind") != SUBMITTED:
            continue
        if line.get("payload") is None:
            report.erased += 1
            continue
        problem = check_payload(line["payload"], origin, ca, leaf["logged_at"])
        if problem is None:
            report.checked += 1
        else:
            report.problems.append((int(line["index"]), problem))
    return report


def check_payload(payload: dict[str, Any], origin: str, ca: x509.Certificate, logged_at: str
                  ) -> str | None:
    """None if the resident's signature holds; else what is wrong (names no one)."""
    try:
        held = payload["resident_signature"]
        certificate = x509.load_pem_x509_certificate(str(held["certificate"]).encode())
        signature = base64.b64decode(str(held["signature"]), validate=True)
        request = payload["request"]
    except (KeyError, TypeError, ValueError, binascii.Error):
        return "the payload holds no readable resident certificate and signature"
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "the resident's certificate was not issued by the given resident CA"
    moment = datetime.fromisoformat(logged_at)
    if not certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc:
        return "the resident's certificate was not valid when the entry was logged"
    message = CONTEXT + origin.encode() + b"\n" + rfc8785.dumps(request)
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            return "the resident's certificate has a key type residents do not sign with"
    except InvalidSignature:
        return "the resident's signature does not verify over the request in the payload"
    if payload.get("application") != application_id(str(held["signature"])):
        return "the application id is not the one derived from the resident's signature"
    return None


def audit_command(export: str, origin: str, ca_path: str) -> int:
    """``--resident-ca``: 0 if every application's resident signature holds, 1 if one does not
    (each named by its log index), 2 if the CA certificate or the export cannot be read."""
    try:
        with open(ca_path, "rb") as handle:
            ca = x509.load_pem_x509_certificate(handle.read())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the resident CA certificate {ca_path!r}: {exc}",
              file=sys.stderr)
        return 2
    if export == "-":
        print("error: --resident-ca reads the export again: give a file, not -", file=sys.stderr)
        return 2
    try:
        with open(export, "rb") as lines:
            report = check_lines(lines, origin, ca)
    except OSError as exc:
        print(f"error: cannot read export {export!r}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    for index, problem in report.problems:
        print(f"FAILED at index {index}: application-signature: {problem}")
    if report.problems:
        return 1
    print(f"OK {report.checked} application(s): the residents' signatures verify with the "
          f"resident CA" + (f"; {report.erased} erased by retention" if report.erased else ""))
    return 0
