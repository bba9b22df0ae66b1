"""Fill a ledger with demo data: real-looking agencies with keys, a synthetic pseudonymous
population, and signed provisions that follow the catalog (ledger.demo_data).

Idempotent: agencies and keys are registered once (agency keys are kept beside the operator key,
mode 0600); every run appends ``provisions`` more. Provisions are version 2 (docs/log-format.md):
each names the requester's and the provider's link codes, issued through the registry as the
network operator would when the agencies enrol the resident (ledger.linkcodes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path

from ledger.application import Ledger
from ledger.catalog import load_catalog
from ledger.demo_data import (
    DemoAgency,
    DemoProvision,
    demo_agencies,
    demo_provisions,
    demo_residents,
    with_link_codes,
)
from ledger.encoding import now_utc, parse_time
from ledger.keys import SigningKey, load_or_create
from ledger.signing import sign_statement

BATCH = 1000


@dataclass(frozen=True)
class DemoResult:
    appended: int
    tree_size: int
    agencies: int
    residents: list[str]


def agency_key_path(key_dir: Path, code: str) -> Path:
    return key_dir / "agencies" / f"{code}.pem"


def ensure_agencies(ledger: Ledger) -> tuple[list[DemoAgency], dict[str, SigningKey]]:
    """Load the catalog, register the demo agencies and one key each (once)."""
    catalog = load_catalog()
    ledger.load_catalog(catalog)
    agencies = demo_agencies(catalog)
    # Registered before the demo's year of provisions, so no provision predates its agency.
    since = now_utc().replace(microsecond=0) - timedelta(days=400)
    keys: dict[str, SigningKey] = {}
    for agency in agencies:
        if agency.code not in ledger.registry.agencies:
            ledger.register_agency(agency.code, name_ja=agency.name_ja, name_en=agency.name_en,
                                   kind=agency.kind, roles=agency.roles, registered_at=since)
        key, _ = load_or_create(agency_key_path(ledger.settings.key_dir, agency.code))
        if key.key_id not in ledger.registry.keys:
            ledger.refresh_registry()
            registered = ledger.registry.agencies[agency.code].registered_at
            ledger.add_agency_key(agency.code, key.public_bytes, valid_from=registered)
        keys[agency.code] = key
    ledger.refresh_registry()
    return agencies, keys


def signed_provisions(ledger: Ledger, agencies: list[DemoAgency], keys: dict[str, SigningKey],
                      residents: list[str], n: int, seed: int, *, version: int = 2
                      ) -> Iterator[dict[str, object]]:
    """``version`` 2 (the default) names link codes, issued a batch at a time; 1 the subject."""
    start = ledger.tree_size()  # request ids stay unique across runs
    catalog = ledger.registry.catalog
    assert catalog is not None
    stream = demo_provisions(catalog, agencies, residents, n, seed, start_index=start)
    while chunk := list(islice(stream, BATCH)):
        codes = _issue_codes(ledger, chunk) if version == 2 else {}
        for item in chunk:
            payload = with_link_codes(item.payload, codes) if version == 2 else item.payload
            # The statement is made when the exchange completes (or is refused).
            made = item.payload["provided_at"] or item.payload["requested_at"]
            yield sign_statement(payload, kind="provision", agency=item.submitter,
                                 key=keys[item.submitter], time=parse_time(made, field="time"))


def _issue_codes(ledger: Ledger, chunk: list[DemoProvision]) -> dict[tuple[str, str], str]:
    """(agency, pseudonym) → code for both parties of every provision in ``chunk``: one
    registry transaction per agency (the bulk form of 'kiroku resident link-code')."""
    wanted: defaultdict[str, set[str]] = defaultdict(set)
    for item in chunk:
        subject = item.payload["subject"]
        wanted[item.payload["requester"]].add(subject)
        wanted[item.payload["provider"]].add(subject)
    codes: dict[tuple[str, str], str] = {}
    for agency, subjects in sorted(wanted.items()):
        issued = ledger.issue_link_codes(agency, sorted(subjects))
        codes.update({(agency, subject): code for subject, code in issued.items()})
    return codes


def run_demo(ledger: Ledger, *, provisions: int, seed: int, residents: int = 2000,
             progress: Callable[[int], None] | None = None) -> DemoResult:
    agencies, keys = ensure_agencies(ledger)
    people = demo_residents(seed, residents)
    stream = signed_provisions(ledger, agencies, keys, people, provisions, seed)
    appended = 0
    while batch := list(islice(stream, BATCH)):
        ledger.append_batch(batch)
        appended += len(batch)
        if progress is not None:
            progress(len(batch))
    ledger.checkpoint()
    return DemoResult(appended, ledger.tree_size(), len(agencies), people)

