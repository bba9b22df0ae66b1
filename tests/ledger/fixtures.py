"""A small ledger with a catalog, three agencies and their keys, and a statement factory."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger.application import Ledger
from ledger.catalog import Basis, load_catalog
from ledger.config import Settings
from ledger.encoding import format_time
from ledger.keys import SigningKey
from ledger.signing import sign_statement

REGISTERED = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class World:
    ledger: Ledger
    basis: Basis
    requester: str = "KYOKAI"
    provider: str = "131121"
    stranger: str = "MOJ"
    keys: dict[str, SigningKey] = field(default_factory=dict)
    counter: int = 0
    #: 2: payloads name the requester's and the provider's link codes (issued on first use)
    #: instead of ``subject`` (docs/log-format.md, version 2); ``subject=`` still picks the resident.
    version: int = 1
    codes: dict[tuple[str, str], str] = field(default_factory=dict)

    def code(self, agency: str, subject: str) -> str:
        """``agency``'s link code for ``subject``, issued by the registry on first use."""
        if (agency, subject) not in self.codes:
            self.codes[(agency, subject)] = self.ledger.issue_link_codes(agency, [subject])[subject]
        return self.codes[(agency, subject)]

    def payload(self, **overrides: Any) -> dict[str, Any]:
        self.counter += 1
        asked = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
        payload = {
            "request_id": f"req-{self.counter}",
            "subject": "subj-AAAABBBBCCCCDDDDEEEE",
            "requester": self.requester,
            "provider": self.provider,
            "basis": self.basis.id,
            "affair": self.basis.affair_id,
            "items": [self.basis.items[0]],
            "requested_at": format_time(asked),
            "provided_at": format_time(asked + timedelta(seconds=40)),
            "outcome": "provided",
            "reason": None,
            "non_disclosure": False,
            "operator": "op-KYOKAI-01",
        }
        payload.update(overrides)
        if self.version == 2 and "subject" in payload:
            subject = payload.pop("subject")  # overriding a code keeps the other one right
            payload.setdefault("requester_code", self.code(payload["requester"], subject))
            payload.setdefault("provider_code", self.code(payload["provider"], subject))
        return payload

    def statement(self, agency: str | None = None, key: SigningKey | None = None,
                  time: datetime | None = None, **overrides: Any) -> dict[str, Any]:
        agency = agency or self.provider
        return sign_statement(self.payload(**overrides), kind="provision", agency=agency,
                              key=key or self.keys[agency], time=time)


def make_world(url: str, home: Path | None = None, *, version: int = 1) -> World:
    home = home or Path(tempfile.mkdtemp(prefix="kiroku-home-"))
    settings = Settings(home=home, database_url=url, key_dir=home / "keys", origin="test.kiroku/log")
    ledger = Ledger(settings, SigningKey.generate())
    catalog = load_catalog()
    ledger.load_catalog(catalog)
    basis = catalog.bases["2-4"]  # Kyokai Kenpo asks a mayor for local-tax information
    world = World(ledger, basis, version=version)
    ledger.register_agency(world.requester, name_ja="全国健康保険協会", name_en="Kyokai Kenpo",
                           kind="insurer", roles=[basis.requester], registered_at=REGISTERED)
    ledger.register_agency(world.provider, name_ja="世田谷区", name_en="Setagaya City",
                           kind="municipality", roles=[basis.provider], registered_at=REGISTERED)
    ledger.register_agency(world.stranger, name_ja="法務省", name_en="Ministry of Justice",
                           kind="ministry", roles=["法務大臣"], registered_at=REGISTERED)
    for code in (world.requester, world.provider, world.stranger):
        key = SigningKey.generate()
        ledger.add_agency_key(code, key.public_bytes, valid_from=REGISTERED)
        world.keys[code] = key
    return world
