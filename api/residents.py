"""Residents' login: a JPKI-like X.509 user certificate signs a server challenge.

Trust model (docs/api.md): the service trusts the CA certificate(s) in ``KIROKU_RESIDENT_CA``,
like a relying party trusts J-LIS's JPKI user-certificate CA. A certificate proves control of a
key, not who the resident is in the log: the operator's table ``kiroku_resident_credential`` maps
the certificate (its SHA-256 fingerprint) to the resident's pseudonym, the way J-LIS links a
certificate serial number to a person. No My Number is used or stored anywhere on this path.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from sqlalchemy import insert, select, update

from api.errors import Unauthenticated
from api.schema import resident_credential, resident_reissue
from ledger.encoding import format_time, now_utc
from ledger.errors import ConfigurationError

LOGIN_CONTEXT = "kiroku-login/v1"
#: Why a certificate was re-issued (docs/residents.md); codes only, so no free text can carry
#: personal data into the operator's table.
REISSUE_REASONS = ("emigrated", "renewed", "lost", "other")
MAX_CERT_BYTES = 16 * 1024


def login_message(origin: str, challenge: str) -> bytes:
    """What the resident signs: a fixed context, the log's origin (so a signature made for one
    service cannot be relayed to another) and the server's challenge."""
    return f"{LOGIN_CONTEXT}\n{origin}\n{challenge}\n".encode()


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def load_trust_anchors(path: Path) -> list[x509.Certificate]:
    try:
        anchors = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the resident CA {path}: {exc}") from None
    return anchors


def parse_certificate(pem: str) -> x509.Certificate:
    if len(pem) > MAX_CERT_BYTES:
        raise Unauthenticated("the certificate is too large")
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise Unauthenticated("'certificate' is not a PEM X.509 certificate") from None


def check_certificate(cert: x509.Certificate, anchors: list[x509.Certificate],
                      at: datetime | None = None) -> None:
    """RFC 5280 essentials for a directly issued end-entity certificate."""
    at = at or now_utc()
    issuer = next((a for a in anchors if a.subject == cert.issuer), None)
    if issuer is None:
        raise Unauthenticated("the certificate is not issued by a trusted resident CA")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise Unauthenticated("the certificate's signature by the CA does not verify") from None
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise Unauthenticated("the certificate is outside its validity period")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise Unauthenticated("a CA certificate cannot log in as a resident")
    except x509.ExtensionNotFound:
        pass
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise Unauthenticated("the certificate's key usage excludes digital signatures")
    except x509.ExtensionNotFound:
        pass


def verify_login_signature(cert: x509.Certificate, message: bytes, signature_b64: str) -> None:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Unauthenticated("'signature' is not base64") from None
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):  # JPKI user certificates: RSA, PKCS #1 v1.5
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            raise Unauthenticated("the certificate's key type is not supported")
    except InvalidSignature:
        raise Unauthenticated("the challenge signature does not verify with the certificate's "
                              "key") from None


def sign_login(private_key: object, message: bytes) -> bytes:
    """What a resident's card does with the login message (the client side of the check above;
    the demo's one-click log-in and kiroku.client use it)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(message)
    raise TypeError(f"unsupported key type {type(private_key).__name__}")


class CredentialStore:
    """Certificate fingerprint -> resident pseudonym, with a short per-worker cache."""

    CACHE_SECONDS = 30.0

    def __init__(self, ledger: object) -> None:
        self._log = ledger.log  # type: ignore[attr-defined]
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def register(self, cert: x509.Certificate, subject: str) -> None:
        fp = fingerprint(cert)
        with self._log.transaction(commit=True) as session:
            found = session.execute(select(resident_credential.c.subject).where(
                resident_credential.c.cert_sha256 == fp)).first()
            if found is None:
                session.execute(insert(resident_credential).values(
                    cert_sha256=fp, issuer=cert.issuer.rfc4514_string(),
                    serial=format(cert.serial_number, "x"), subject=subject,
                    registered_at=format_time(now_utc()), revoked_at=None))
            elif found.subject != subject:
                raise ConfigurationError("this certificate is registered to another resident")

    def revoke(self, cert_sha256: str) -> None:
        with self._log.transaction(commit=True) as session:
            session.execute(update(resident_credential)
                            .where(resident_credential.c.cert_sha256 == cert_sha256)
                            .values(revoked_at=format_time(now_utc())))
        with self._lock:
            self._cache.pop(cert_sha256, None)

    def reissue(self, old_sha256: str, new: x509.Certificate, reason: str) -> str:
        """Revoke the certificate ``old_sha256`` (if it is not already) and let ``new`` log in
        as the same resident, in one transaction; returns the new fingerprint.

        For a resident who emigrates (国外転出): the card's certificate is revoked, and the
        credential the operator issues instead reaches the same records, past and future,
        because the pseudonym in the log does not change. ``reason`` is one of
        REISSUE_REASONS and goes to the operator's own table, never to the log.
        """
        if reason not in REISSUE_REASONS:
            raise ConfigurationError(f"reason must be one of {', '.join(REISSUE_REASONS)}")
        new_sha256 = fingerprint(new)
        if new_sha256 == old_sha256:
            raise ConfigurationError("the new certificate is the old one")
        now = format_time(now_utc())
        with self._log.transaction(commit=True) as session:
            old = session.execute(select(resident_credential.c.subject,
                                         resident_credential.c.revoked_at).where(
                resident_credential.c.cert_sha256 == old_sha256)).first()
            if old is None:
                raise ConfigurationError("the old certificate is not registered")
            taken = session.execute(select(resident_credential.c.subject,
                                           resident_credential.c.revoked_at).where(
                resident_credential.c.cert_sha256 == new_sha256)).first()
            if taken is not None and (taken.subject != old.subject or taken.revoked_at):
                raise ConfigurationError("the new certificate is registered to another resident "
                                         "or revoked")
            if session.execute(select(resident_reissue.c.new_cert_sha256).where(
                    resident_reissue.c.old_cert_sha256 == old_sha256)).first() is not None:
                raise ConfigurationError("the old certificate was already re-issued")
            if taken is None:
                session.execute(insert(resident_credential).values(
                    cert_sha256=new_sha256, issuer=new.issuer.rfc4514_string(),
                    serial=format(new.serial_number, "x"), subject=old.subject,
                    registered_at=now, revoked_at=None))
            if old.revoked_at is None:
                session.execute(update(resident_credential)
                                .where(resident_credential.c.cert_sha256 == old_sha256)
                                .values(revoked_at=now))
            session.execute(insert(resident_reissue).values(
                old_cert_sha256=old_sha256, new_cert_sha256=new_sha256, reason=reason,
                reissued_at=now))
        with self._lock:
            self._cache.pop(old_sha256, None)
            self._cache.pop(new_sha256, None)
        return new_sha256

    def cached(self, cert_sha256: str) -> tuple[bool, str | None]:
        """(True, subject or None) if the cache answers, without touching the database."""
        with self._lock:
            hit = self._cache.get(cert_sha256)
        if hit is not None and time.monotonic() - hit[0] < self.CACHE_SECONDS:
            return True, hit[1]
        return False, None

    def subject_for(self, cert_sha256: str) -> str | None:
        known, subject = self.cached(cert_sha256)
        if known:
            return subject
        now = time.monotonic()
        with self._log.transaction(commit=False) as session:
            row = session.execute(select(resident_credential.c.subject,
                                         resident_credential.c.revoked_at).where(
                resident_credential.c.cert_sha256 == cert_sha256)).first()
        subject = row.subject if row is not None and row.revoked_at is None else None
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[cert_sha256] = (now, subject)
        return subject


def pseudonym_digest(subject: str) -> str:
    """A non-reversible label for logs and metrics; subjects themselves are never logged."""
    return hashlib.sha256(subject.encode()).hexdigest()[:12]


def utc(ts: int) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))
