"""Demo credentials: a test resident CA, a few residents' certificates and keys, an auditor key.

Everything is written under ``$KIROKU_KEY_DIR/demo`` (private keys 0600). Residents are chosen
among the demo population's pseudonyms that really have visible records in the log. The
certificates carry no pseudonym and no My Number (JPKI user certificates carry neither): the
operator's table maps each certificate's fingerprint to the resident.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from api.residents import CredentialStore
from api.settings import ApiSettings
from ledger.application import Ledger
from ledger.encoding import now_utc
from ledger.keys import load_or_create

SCAN_LAST = 20_000


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class DemoResident:
    subject: str
    records: int
    certificate: Path
    key: Path


@dataclass(frozen=True)
class DemoCredentials:
    ca: Path
    residents: list[DemoResident]
    auditor_name: str
    auditor_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kiroku demo"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _rsa_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_private(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return key


def ensure_ca(folder: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate, Path]:
    key = _rsa_key(folder / "resident-ca.key")
    path = folder / "resident-ca.crt"
    if path.exists():
        return key, x509.load_pem_x509_certificate(path.read_bytes()), path
    now = now_utc()
    name = _name("kiroku demo resident CA (JPKI-like, TEST ONLY)")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def issue_resident(ca_key: rsa.RSAPrivateKey, ca: x509.Certificate, folder: Path, label: str
                   ) -> tuple[x509.Certificate, Path, Path]:
    """A JPKI-like user certificate (利用者証明用): no name, no number, digital signature only."""
    key = _rsa_key(folder / f"{label}.key")
    path = folder / f"{label}.crt"
    if path.exists():
        return x509.load_pem_x509_certificate(path.read_bytes()), path, folder / f"{label}.key"
    now = now_utc()
    cert = (x509.CertificateBuilder().subject_name(_name(f"kiroku demo user {label}"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, path, folder / f"{label}.key"


def residents_with_records(ledger: Ledger, population: list[str], n: int) -> list[tuple[str, int]]:
    """Demo residents with the most visible (disclosed) records among the last entries."""
    known = set(population)
    counts: Counter[str] = Counter()
    size = ledger.tree_size()
    shown = [payload for line in ledger.export(max(0, size - SCAN_LAST), size)
             if (payload := line["payload"]) and ("subject" in payload or "requester_code" in payload)
             and not payload.get("non_disclosure")]
    # Version-2 payloads name link codes, not the subject: resolved in one registry read.
    for subject in ledger.link_codes.residents_of(shown):
        if subject in known:
            counts[subject] += 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def ensure_demo_credentials(settings: ApiSettings, ledger: Ledger, population: list[str],
                            n: int = 3) -> DemoCredentials:
    folder = settings.demo_dir
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.secret()
    ca_key, ca, ca_path = ensure_ca(folder)
    store = CredentialStore(ledger)
    residents = []
    for subject, records in residents_with_records(ledger, population, n):
        # Files are named by a digest, so the pseudonym does not appear in file names either.
        label = "resident-" + hashlib.sha256(subject.encode()).hexdigest()[:10]
        cert, cert_path, key_path = issue_resident(ca_key, ca, folder / "residents", label)
        store.register(cert, subject)
        residents.append(DemoResident(subject, records, cert_path, key_path))
    auditor_key, _ = load_or_create(folder / "auditor.pem")
    name = "demo-auditor"
    (folder / "auditor.pub").write_text(
        f"{name}={base64.b64encode(auditor_key.public_bytes).decode()}\n")
    return DemoCredentials(ca_path, residents, name, folder / "auditor.pem")
