"""A small kiroku site for the page tests, in demo mode (one-click log-in) over a fresh ledger.

Resident A has 60 visible records (so the list has a second page), from two legal bases and two
pairs of agencies, over several months, plus one non-disclosed record; B has 2; C logs in with an
ECDSA P-256 certificate and has 1. Agencies: KYOKAI asks 131121 (basis 2-4), MHLW asks MOJ (1-1).
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from api.app import create_app
from api.demo import ensure_ca, issue_resident, write_private
from api.residents import CredentialStore
from api.services import Services
from api.settings import ApiSettings
from ledger.encoding import format_time
from ledger.keys import SigningKey
from tests.ledger.fixtures import REGISTERED, World, make_world

SUBJECTS = {"A": "subj-AAAAAAAAAAAAAAAAAAAA", "B": "subj-BBBBBBBBBBBBBBBBBBBB",
            "C": "subj-CCCCCCCCCCCCCCCCCCCC", "D": "subj-DDDDDDDDDDDDDDDDDDDD"}
MHLW = "MHLW"
A_RECORDS = 60
A_MOJ = 8       # of A's records, those between MHLW and MOJ (basis 1-1)
A_MARCH = 5     # of A's records, those requested in March 2026 (JST)


@dataclass
class Site:
    app: Any
    world: World
    services: Services
    home: Path
    credentials: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    auditor: SigningKey | None = None

    @property
    def ledger(self) -> Any:
        return self.world.ledger

    def settle(self) -> None:
        self.services.housekeeper.checkpoint_if_behind()
        self.services.housekeeper.project(force=True)


def _ec_resident(ca_key: Any, ca: x509.Certificate, folder: Path, label: str
                 ) -> tuple[x509.Certificate, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = folder / f"{label}.key"
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"kiroku test {label}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    cert_path = folder / f"{label}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, cert_path, key_path


def _records(world: World) -> None:
    from ledger.catalog import load_catalog

    ledger = world.ledger
    other = load_catalog().bases["1-1"]
    ledger.register_agency(MHLW, name_ja="厚生労働大臣", name_en="MHLW Minister",
                           kind="ministry", roles=[other.requester], registered_at=REGISTERED)
    world.keys[MHLW] = SigningKey.generate()
    ledger.add_agency_key(MHLW, world.keys[MHLW].public_bytes, valid_from=REGISTERED)
    now = datetime.now(UTC).replace(microsecond=0)
    statements = []
    for n in range(A_RECORDS):
        # A_MARCH records in March 2026 (JST), the rest spread over the last 50 days.
        asked = (datetime(2026, 3, 10, 3, 0, tzinfo=UTC) + timedelta(days=n) if n < A_MARCH
                 else now - timedelta(days=2 + (n % 50), hours=n))
        times = {"requested_at": format_time(asked),
                 "provided_at": format_time(asked + timedelta(seconds=30))}
        if n >= A_RECORDS - A_MOJ:
            statements.append(world.statement(
                agency="MOJ", subject=SUBJECTS["A"], requester=MHLW, provider="MOJ",
                basis=other.id, affair=other.affair_id, items=[other.items[0]], **times))
        else:
            statements.append(world.statement(subject=SUBJECTS["A"], **times))
    statements.append(world.statement(subject=SUBJECTS["A"], non_disclosure=True))
    statements += [world.statement(subject=SUBJECTS["B"]) for _ in range(2)]
    statements.append(world.statement(subject=SUBJECTS["C"]))
    ledger.append_batch(statements)


@contextmanager
def build_site(url: str, *, demo: bool = True, version: int = 1) -> Iterator[Site]:
    """``version`` 2: the records' payloads name link codes (tests.ledger.fixtures.World)."""
    home = Path(tempfile.mkdtemp(prefix="kiroku-web-"))
    world = make_world(url, home, version=version)
    settings = ApiSettings(home=home, database_url=url, log_origin="test.kiroku/log", demo=demo,
                           background=False, session_ttl=900)
    demo_dir = settings.demo_dir
    ca_key, ca, _ = ensure_ca(demo_dir)
    store = CredentialStore(world.ledger)
    credentials = {}
    for who in ("A", "B", "D"):  # D: a registered resident with no record yet
        cert, cert_path, key_path = issue_resident(ca_key, ca, demo_dir / "residents",
                                                   f"resident-{who.lower() * 10}")
        store.register(cert, SUBJECTS[who])
        credentials[who] = (cert_path, key_path)
    cert, cert_path, key_path = _ec_resident(ca_key, ca, home / "ec", "resident-c")
    store.register(cert, SUBJECTS["C"])
    credentials["C"] = (cert_path, key_path)
    # P: a person with a card of their own and no records, who A will name as proxy (代理人).
    _, cert_path, key_path = issue_resident(ca_key, ca, home / "proxy", "resident-p")
    credentials["P"] = (cert_path, key_path)
    auditor = SigningKey.generate()
    auditor.save(demo_dir / "auditor.pem")
    (demo_dir / "auditor.pub").write_text(
        f"demo-auditor={base64.b64encode(auditor.public_bytes).decode()}\n")
    _records(world)
    for code, key in world.keys.items():  # the demo's one-click agency log-in reads these
        key.save(settings.ledger_settings().key_dir / "agencies" / f"{code}.pem")
    app = create_app(settings, world.ledger)
    site = Site(app, world, app.state.services, home, credentials, auditor)
    site.settle()
    try:
        yield site
    finally:
        world.ledger.close()
