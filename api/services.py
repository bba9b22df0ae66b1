"""What a worker holds while it serves: the ledger, the writer thread, credentials, views."""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from cryptography import x509
from sqlalchemy import select

from api.background import Appender, Housekeeper, witnessing_for
from api.replay import NonceDatastore, SharedNonces
from api.residents import CredentialStore, load_trust_anchors
from api.settings import ApiSettings
from api.tokens import TokenSigner
from ledger.application import Ledger, Receipt
from ledger.schema import log_entry


@dataclass
class Projections:
    """The projections package's query API, or None where it is not installed."""

    residents: Any = None
    reports: Any = None
    catch_up: Any = None
    status: Any = None

    @classmethod
    def load(cls, ledger: Ledger) -> Projections:
        found = cls()
        try:
            resident = importlib.import_module("projections.resident")
            found.residents = resident.ResidentRecords.for_ledger(ledger)
        except (ImportError, AttributeError):
            pass
        try:
            report = importlib.import_module("projections.report")
            found.reports = report.AgencyReport.for_ledger(ledger)
        except (ImportError, AttributeError):
            pass
        try:
            runner = importlib.import_module("projections.runner")
            found.catch_up, found.status = runner.catch_up, runner.status
        except (ImportError, AttributeError):
            pass
        return found


@dataclass
class Services:
    settings: ApiSettings
    ledger: Ledger
    housekeeper: Housekeeper
    appender: Appender
    tokens: TokenSigner
    nonces: SharedNonces
    challenges: SharedNonces
    credentials: CredentialStore
    anchors: list[x509.Certificate]
    auditors: dict[str, tuple[str, bytes]]
    projections: Projections
    started: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, settings: ApiSettings, ledger: Ledger) -> Services:
        projections = Projections.load(ledger)
        housekeeper = Housekeeper(ledger, checkpoint_interval=settings.checkpoint_interval,
                                  projection_interval=settings.projection_interval,
                                  catch_up=projections.catch_up,
                                  witnessing=witnessing_for(settings, ledger))
        # The ledger's own database (settings.database_url is unset when derived from the home).
        replay_store = NonceDatastore(url=ledger.settings.database_url)
        ca = settings.resident_ca_path()
        anchors = load_trust_anchors(ca) if ca.exists() or not settings.demo else []
        return cls(settings=settings, ledger=ledger, housekeeper=housekeeper,
                   appender=Appender(ledger, housekeeper),
                   tokens=TokenSigner(settings.secret()),
                   nonces=SharedNonces(replay_store, "request", settings.request_skew),
                   challenges=SharedNonces(replay_store, "challenge", settings.challenge_ttl),
                   credentials=CredentialStore(ledger), anchors=anchors,
                   auditors=settings.auditors(), projections=projections)

    def receipt_by_id(self, provision: UUID) -> Receipt | None:
        """The receipt of an appended provision statement, by its id."""
        table = self.ledger.log.events_record_cls.__table__
        with self.ledger.log.transaction(commit=False) as session:
            row = session.execute(
                select(log_entry.c.idx, log_entry.c.leaf, log_entry.c.leaf_hash)
                .join(table, table.c.id == log_entry.c.notification_id)
                .where(table.c.originator_id == provision, table.c.originator_version == 1)
            ).first()
        if row is None:
            return None
        return Receipt(provision, int(row.idx), bytes(row.leaf), bytes(row.leaf_hash))
