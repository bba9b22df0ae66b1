"""Per-agency link codes (符号) and the registry that resolves them.

Under the My Number Act agencies never exchange the My Number, nor any other identifier shared
between them: each agency knows a resident by its own link code (符号), issued by the network
operator (J-LIS / the Digital Agency's 情報提供ネットワークシステム) when the agency enrols the
resident, and the network translates one agency's code into the other's for each exchange
(Act Art. 2(8), Art. 21; the ordinance on 符号 issuance). kiroku models that operator:

- a code is derived like Austria's sector-specific identifier (bPK): a keyed one-way function
  per sector, every agency code its own sector (departments of one municipality included):
  ``code = base32(HMAC-SHA256(K_link, "kiroku/link-code/v1\\n" ‖ agency ‖ "\\n" ‖ pseudonym))[:26]``
  (RFC 2104, RFC 4648 §6). Without K_link, one resident's codes at two agencies are unrelated
  130-bit strings: nothing an agency sees links them;
- K_link is 32 random bytes in a 0600 file beside the operator key (``kiroku init`` creates
  it). It is never exported and never logged; losing it only stops *new* codes from being
  derived the same way (issued codes stay resolvable from the table);
- the registry table (``kiroku_link_code``) records every code issued, (agency, code) → the
  ledger's internal pseudonym; ``kiroku resident link-code`` issues one. A version-2 provision
  payload (docs/log-format.md) names the requester's and the provider's codes; the ledger
  resolves both here and refuses unknown codes, codes of another agency and codes of two
  different residents; the resident view and the completeness index resolve them here too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError as EsIntegrityError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.encoding import format_time, now_utc
from ledger.errors import (
    ConfigurationError,
    IntegrityFailure,
    InvalidRequest,
    LinkCodeOfAnotherAgency,
    LinkCodesOfDifferentResidents,
    UnknownLinkCode,
)
from ledger.schema import link_code as table
from ledger.storage import writing

KEY_FILE = "link-code.key"
CODE_LENGTH = 26  # 130 bits of the HMAC: collisions are out of reach at any population
CODE_PATTERN = re.compile(r"[A-Z2-7]{26}")
_DOMAIN = b"kiroku/link-code/v1\n"
_MY_NUMBER = re.compile(r"[0-9]{12}")
_IN = 500  # codes per IN (...) list
_CACHE_MAX = 200_000


# The secret ---------------------------------------------------------------------------------
def key_path(key_dir: Path) -> Path:
    """Where K_link lives: beside the operator key, never in the database or the log."""
    return key_dir / KEY_FILE


def load_or_create_key(path: Path) -> tuple[bytes, bool]:
    """K_link (32 random bytes, hex in a 0600 file) and whether it was created now."""
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the link-code key {path}: {exc}") from None
        if len(key) != 32:
            raise ConfigurationError(f"{path}: expected 64 hex digits (32 bytes)")
        return key, False
    key = secrets.token_bytes(32)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return key, True


def derive_code(key: bytes, agency: str, subject: str) -> str:
    """The link code of ``subject`` at ``agency`` (the bPK-style derivation above)."""
    mac = hmac.new(key, _DOMAIN + agency.encode() + b"\n" + subject.encode(), hashlib.sha256)
    return base64.b32encode(mac.digest()).decode("ascii")[:CODE_LENGTH]


def is_version_2(payload: Mapping[str, Any]) -> bool:
    """A version-2 provision payload names link codes instead of a shared ``subject``."""
    return "requester_code" in payload


# Resolution (the ledger's, the projections' and the completeness index's) ------------------
class _Resolved:
    """code → (agency, pseudonym) of codes seen issued, per database. An issued code never
    changes meaning, so positive answers are cached for good (bounded); misses are not, since
    another process may issue the code a moment later."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[str, str]] = {}
        self._lock = threading.Lock()

    def get(self, database: str, code: str) -> tuple[str, str] | None:
        return self._known.get((database, code))

    def put(self, database: str, found: Mapping[str, tuple[str, str]]) -> None:
        with self._lock:
            if len(self._known) + len(found) > _CACHE_MAX:
                self._known.clear()
            for code, value in found.items():
                self._known[(database, code)] = value


_RESOLVED = _Resolved()


def _database(session: Session) -> str:
    bind = session.get_bind()
    return str(bind.engine.url)


def lookup_codes(session: Session, codes: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(agency, pseudonym) of each of ``codes`` the registry issued, read in bulk."""
    database = _database(session)
    found: dict[str, tuple[str, str]] = {}
    missing: list[str] = []
    for code in dict.fromkeys(codes):
        hit = _RESOLVED.get(database, code)
        if hit is not None:
            found[code] = hit
        else:
            missing.append(code)
    fresh: dict[str, tuple[str, str]] = {}
    for start in range(0, len(missing), _IN):
        rows = session.execute(select(table.c.code, table.c.agency, table.c.subject)
                               .where(table.c.code.in_(missing[start:start + _IN])))
        for code, agency, subject in rows:
            fresh[code] = (agency, subject)
    _RESOLVED.put(database, fresh)
    found.update(fresh)
    return found


def resident_of(payload: Mapping[str, Any], session: Session) -> str:
    """The internal pseudonym a logged provision payload is about: version 1 names it
    (``subject``); version 2 names link codes, resolved through the registry (the ledger
    checked both codes resolve to one resident when it accepted the statement)."""
    if not is_version_2(payload):
        return str(payload["subject"])
    return residents_of(session, [payload])[0] or ""


def residents_of(session: Session, payloads: Sequence[Mapping[str, Any] | None]
                 ) -> list[str | None]:
    """``resident_of`` for many payloads with one registry read (None for an erased payload)."""
    codes = [p["requester_code"] for p in payloads if p is not None and is_version_2(p)]
    found = lookup_codes(session, codes) if codes else {}
    out: list[str | None] = []
    for payload in payloads:
        if payload is None:
            out.append(None)
        elif not is_version_2(payload):
            out.append(str(payload["subject"]))
        else:
            hit = found.get(payload["requester_code"])
            if hit is None or hit[0] != payload["requester"]:
                # Accepted only after resolving, so the registry lost a row it had.
                raise IntegrityFailure(
                    f"a logged provision of agency {payload['requester']!r} names a link code "
                    "the registry no longer holds; restore kiroku_link_code from a backup")
            out.append(hit[1])
    return out


def dump_codes(session: Session) -> Iterator[dict[str, str]]:
    """The registry's rows (agency, code → pseudonym), streamed in (agency, code) order: what an
    auditor needs to resolve an export's version-2 provisions (docs/completeness.md)."""
    rows = session.execute(select(table.c.agency, table.c.code, table.c.subject)
                           .order_by(table.c.agency, table.c.code)
                           .execution_options(yield_per=_IN * 10))
    for agency, code, subject in rows:
        yield {"agency": agency, "code": code, "subject": subject}


# The registry -------------------------------------------------------------------------------
class LinkCodeRegistry:
    """Issues codes and checks version-2 payloads against them. Thread-safe: each call is its
    own transaction on the ledger's database."""

    def __init__(self, log: Any, key: Path | bytes) -> None:
        self._log = log
        self._key_source = key
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        """Loaded (or created) when first needed: opening a ledger to read never writes a key."""
        if self._key is None:
            source = self._key_source
            self._key = source if isinstance(source, bytes) else load_or_create_key(source)[0]
        return self._key

    def code_for(self, agency: str, subject: str) -> str:
        return derive_code(self.key, agency, subject)

    def issue(self, agency: str, subject: str) -> str:
        """The agency's code for the resident, recorded in the registry (idempotent)."""
        return self.issue_many(agency, [subject])[subject]

    def issue_many(self, agency: str, subjects: Iterable[str]) -> dict[str, str]:
        """pseudonym → the agency's code, for each of ``subjects``, recorded in one transaction.

        A code already issued is returned as recorded (even if K_link was replaced since)."""
        wanted = list(dict.fromkeys(subjects))
        for subject in wanted:
            _check_pseudonym(subject)
        for attempt in range(2):
            try:
                with writing(), self._log.transaction(commit=True) as session:
                    issued = self._issued(session, agency, wanted)
                    stamp = format_time(now_utc())
                    rows = [{"agency": agency, "code": self.code_for(agency, s), "subject": s,
                             "issued_at": stamp} for s in wanted if s not in issued]
                    if rows:
                        session.execute(insert(table), rows)
                    issued.update({r["subject"]: r["code"] for r in rows})
                    return {s: issued[s] for s in wanted}
            except (IntegrityError, EsIntegrityError):
                if attempt:  # a second clash is not a race with another issuer
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _issued(session: Session, agency: str, subjects: list[str]) -> dict[str, str]:
        found = {}
        for start in range(0, len(subjects), _IN):
            for subject, code in session.execute(
                    select(table.c.subject, table.c.code)
                    .where(table.c.agency == agency,
                           table.c.subject.in_(subjects[start:start + _IN]))):
                found[subject] = code
        return found

    def lookup(self, codes: Iterable[str]) -> dict[str, tuple[str, str]]:
        with self._log.transaction(commit=False) as session:
            return lookup_codes(session, codes)

    def prefetch(self, submissions: Sequence[Any]) -> None:
        """Read the codes of a batch's version-2 payloads in bulk, before they are checked one
        by one (``resolve``): a batch of 10,000 costs a few queries, not 20,000."""
        codes = []
        for submission in submissions:
            payload = submission.get("payload") if isinstance(submission, dict) else None
            if isinstance(payload, dict):
                codes += [payload[k] for k in ("requester_code", "provider_code")
                          if isinstance(payload.get(k), str)]
        if codes:
            self.lookup(codes)

    def resolve(self, requester: str, requester_code: str, provider: str, provider_code: str
                ) -> str:
        """The one resident both codes stand for; raises the refusal that says what is wrong.

        Messages name neither the pseudonym nor the agency a misplaced code belongs to: a
        refusal must not become an oracle that links codes across agencies."""
        found = self.lookup([requester_code, provider_code])
        subjects = []
        for role, agency, code in (("requester", requester, requester_code),
                                   ("provider", provider, provider_code)):
            hit = found.get(code)
            if hit is None:
                raise UnknownLinkCode(
                    f"payload.{role}_code is not a link code issued to agency {agency!r}; use "
                    "the code the network operator issued for this resident "
                    "('kiroku resident link-code')")
            if hit[0] != agency:
                raise LinkCodeOfAnotherAgency(
                    f"payload.{role}_code was issued to another agency, not to the {role} "
                    f"{agency!r}; each agency's payload field takes that agency's own code")
            subjects.append(hit[1])
        if subjects[0] != subjects[1]:
            raise LinkCodesOfDifferentResidents(
                "payload.requester_code and payload.provider_code stand for two different "
                "residents; both must be the codes of the one resident the provision is about")
        return subjects[0]

    def dump(self) -> Iterator[dict[str, str]]:
        """Every issued code as ``{"agency", "code", "subject"}``, ordered by agency and code,
        read in one transaction (``kiroku log link-code-dump``). Personal data: for auditors
        only, handled like the completeness key (docs/completeness.md)."""
        with self._log.transaction(commit=False) as session:
            yield from dump_codes(session)

    def residents_of(self, payloads: Sequence[Mapping[str, Any] | None]) -> list[str | None]:
        """``residents_of`` in one transaction of its own."""
        with self._log.transaction(commit=False) as session:
            return residents_of(session, payloads)

    def resident_of(self, payload: Mapping[str, Any]) -> str:
        """``resident_of`` in a transaction of its own (for callers outside the ledger)."""
        if not is_version_2(payload):
            return str(payload["subject"])
        with self._log.transaction(commit=False) as session:
            return resident_of(payload, session)


def _check_pseudonym(subject: str) -> None:
    if not isinstance(subject, str) or not subject or len(subject) > 256:
        raise InvalidRequest("a resident pseudonym is a non-empty string (≤256 chars)")
    if _MY_NUMBER.fullmatch(subject):
        # My Number Act Art. 19: the number itself is never a key outside lawful use.
        raise InvalidRequest("that looks like a My Number; give the resident's pseudonym")
