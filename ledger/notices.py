"""Notices (お知らせ): an agency's signed push notice to residents, as a log entry (docs/notices.md,
docs/log-format.md "notice.issued").

A notice statement is an agency's signed claim like a provision statement ("I, agency A, issue
notice N of category C, valid from F until U, to target T"), with a salted commitment to its
payload, so a notice is as verifiable as a provision. The target never names a resident in a way
that links agencies or reveals a group's members:

- an **individual** notice names the issuing agency's own link code (符号) for the resident; the
  ledger refuses a code that was not issued to that agency;
- a **group** notice names only criteria (age band, municipality, district, household type).
  Which residents match is decided outside the log, against the attributes the agency keeps for
  its residents in ``kiroku_resident_attribute`` (keyed by the internal pseudonym, never exported,
  never logged; agencies write it through their link codes).

Each notice is an aggregate of its own, id ``uuid5("notice:<agency>:<notice_id>")``: the same
statement again gets the same receipt, another statement with the same notice id is refused.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic
from sqlalchemy import Column, Index, MetaData, Table, Text, select

from ledger.domain import NAMESPACE, OPERATOR, Logged, LoggedAggregate
from ledger.encoding import format_time, now_utc, parse_time
from ledger.errors import (
    DuplicateConflict,
    InvalidRequest,
    LinkCodeOfAnotherAgency,
    MalformedStatement,
    StatementRejected,
    UnknownLinkCode,
)
from ledger.schema import log_entry
from ledger.signing import check_shape
from ledger.storage import AppendedEntry, writing
from ledger.submitters import check_agency_statement

if TYPE_CHECKING:
    from ledger.application import Ledger, Receipt

KIND = "notice.issued"
CATEGORIES = frozenset({"childcare", "vaccination", "health_check", "national_health_insurance",
                        "disaster", "tax", "pension", "welfare", "other"})
HOUSEHOLD_TYPES = frozenset({"single", "couple", "with_children", "single_parent",
                             "elderly_only", "other"})
CRITERIA = ("age_band", "municipality", "district", "household_type")
REQUIRED_KEYS = frozenset({"notice_id", "category", "title", "body", "valid_from",
                           "valid_until", "target"})
OPTIONAL_KEYS = frozenset({"form"})
_LINK_CODE = re.compile(r"[A-Z2-7]{26}")
_AGE_BAND = re.compile(r"(0|[1-9][0-9]?|1[0-4][0-9])-(0|[1-9][0-9]?|1[0-4][0-9])")
_AREA = re.compile(r"[0-9]{6}(-[0-9A-Za-z]{1,16})?")  # 全国地方公共団体コード (6 digits) [-district]
_TEXT_LIMITS = {"title": 200, "body": 4000}
MAX_ID = 128


class NoticeRejected(StatementRejected):
    """A notice statement whose payload breaks a notice rule."""

    code = "invalid-notice"


class OperatorCannotIssue(StatementRejected):
    """Notices come from agencies: the operator's registrar key signs no notice."""

    code = "operator-cannot-issue-notice"


class Notice(LoggedAggregate):
    """A notice an agency issued (kind ``notice.issued``); never changed afterwards."""

    class Issued(Aggregate.Created, Logged):
        pass


NOTICE_TOPIC = get_topic(Notice.Issued)
_NOTICE_AGGREGATE_TOPIC = get_topic(Notice)


def notice_uuid(agency: str, notice_id: str) -> uuid.UUID:
    """One notice per (issuing agency, the agency's own notice id)."""
    return uuid.uuid5(NAMESPACE, f"notice:{agency}:{notice_id}")


#: The attributes each agency holds about its residents, keyed by the ledger's internal
#: pseudonym: what group notices are matched against. Operator table (migration 0010): never
#: exported, never in the log, written only by the agency about residents it has link codes for.
resident_attribute = Table(
    "kiroku_resident_attribute",
    MetaData(),
    Column("agency", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("birth_date", Text, nullable=True),  # YYYY-MM-DD: age bands are judged on each day
    Column("municipality", Text, nullable=True),
    Column("district", Text, nullable=True),
    Column("household_type", Text, nullable=True),
    Column("updated_at", Text, nullable=False),
    Index("kiroku_resident_attribute_subject", "subject"),
)
ATTRIBUTES = ("birth_date", "municipality", "district", "household_type")


# Payload --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoticePayload:
    notice_id: str
    category: str
    valid_from: datetime
    valid_until: datetime
    code: str | None  # individual: the issuing agency's link code for the resident
    criteria: dict[str, str]  # group: the criteria (at least one)

    @classmethod
    def parse(cls, raw: Any) -> NoticePayload:
        if not isinstance(raw, dict):
            raise MalformedStatement("payload must be a JSON object")
        keys = set(raw)
        missing, extra = REQUIRED_KEYS - keys, keys - REQUIRED_KEYS - OPTIONAL_KEYS
        if missing or extra:
            parts = ([f"missing {sorted(missing)}"] if missing else []) + (
                [f"unknown {sorted(extra)}"] if extra else [])
            raise MalformedStatement(f"notice payload: {'; '.join(parts)}")
        notice_id = raw["notice_id"]
        if not isinstance(notice_id, str) or not 0 < len(notice_id) <= MAX_ID:
            raise MalformedStatement(f"payload.notice_id must be the agency's own id (1-{MAX_ID} "
                                     "characters)")
        if raw["category"] not in CATEGORIES:
            raise NoticeRejected(f"payload.category must be one of {sorted(CATEGORIES)}")
        for name, limit in _TEXT_LIMITS.items():
            _check_text(raw[name], name, limit)
        valid_from = parse_time(raw["valid_from"], field="payload.valid_from")
        valid_until = parse_time(raw["valid_until"], field="payload.valid_until")
        if valid_until <= valid_from:
            raise NoticeRejected("payload.valid_until must be after payload.valid_from")
        if "form" in raw:
            _check_form(raw["form"])
        code, criteria = _parse_target(raw["target"])
        return cls(notice_id, raw["category"], valid_from, valid_until, code, criteria)


def _check_text(value: Any, name: str, limit: int) -> None:
    if not isinstance(value, dict) or "ja" not in value or set(value) - {"ja", "en"}:
        raise MalformedStatement(f"payload.{name} must be {{\"ja\": …}} with an optional \"en\"")
    for language, text in value.items():
        if not isinstance(text, str) or not text.strip() or len(text) > limit:
            raise MalformedStatement(f"payload.{name}.{language} must be a non-empty text of at "
                                     f"most {limit} characters")


def _check_form(form: Any) -> None:
    if not isinstance(form, dict) or not form or set(form) - {"id", "url"}:
        raise MalformedStatement("payload.form must be {\"id\": …} and/or {\"url\": \"https://…\"}")
    if "id" in form and (not isinstance(form["id"], str) or not 0 < len(form["id"]) <= MAX_ID):
        raise MalformedStatement(f"payload.form.id must be 1-{MAX_ID} characters")
    url = form.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith("https://")
                            or len(url) > 2048):
        raise MalformedStatement("payload.form.url must be an https:// address")


def _parse_target(target: Any) -> tuple[str | None, dict[str, str]]:
    if not isinstance(target, dict) or target.get("type") not in ("individual", "group"):
        raise MalformedStatement("payload.target must be {\"type\": \"individual\", \"code\": …} "
                                 "or {\"type\": \"group\", \"criteria\": {…}}")
    if target["type"] == "individual":
        if set(target) != {"type", "code"}:
            raise MalformedStatement("an individual target has exactly \"type\" and \"code\"")
        code = target["code"]
        if not isinstance(code, str) or not _LINK_CODE.fullmatch(code):
            raise MalformedStatement("payload.target.code must be the agency's link code for the "
                                     "resident (26 characters A-Z, 2-7), never a pseudonym")
        return code, {}
    if set(target) != {"type", "criteria"}:
        raise MalformedStatement("a group target has exactly \"type\" and \"criteria\"")
    criteria = target["criteria"]
    if not isinstance(criteria, dict) or not criteria or set(criteria) - set(CRITERIA):
        raise MalformedStatement(f"payload.target.criteria names at least one of {list(CRITERIA)}"
                                 " and nothing else")
    for name, value in criteria.items():
        if not isinstance(value, str):
            raise MalformedStatement(f"payload.target.criteria.{name} must be a string")
    if "age_band" in criteria:
        age_band(criteria["age_band"])
    for name in ("municipality", "district"):
        if name in criteria and not _AREA.fullmatch(criteria[name]):
            raise NoticeRejected(f"payload.target.criteria.{name} must be a local government code "
                                 "(6 digits), a district as <code>-<district>")
    if "household_type" in criteria and criteria["household_type"] not in HOUSEHOLD_TYPES:
        raise NoticeRejected(f"payload.target.criteria.household_type must be one of "
                             f"{sorted(HOUSEHOLD_TYPES)}")
    return None, dict(criteria)


def age_band(text: str) -> tuple[int, int]:
    """``"0-5"`` → (0, 5): ages in whole years, both ends included."""
    found = _AGE_BAND.fullmatch(text)
    if found is None or int(found[1]) > int(found[2]):
        raise NoticeRejected("payload.target.criteria.age_band must be \"<from>-<to>\" in whole "
                             "years, from <= to (e.g. \"0-5\")")
    return int(found[1]), int(found[2])


def birth_bounds(low: int, high: int, today: date) -> tuple[str, str]:
    """Birth dates (YYYY-MM-DD) of people aged ``low``…``high`` on ``today``: those born after
    the first and on or before the second string. One rule for matching a resident and for
    counting a group, so the two always agree."""
    return _years_before(today, high + 1).isoformat(), _years_before(today, low).isoformat()


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year: the day before counts as the birthday
        return day.replace(year=day.year - years, day=28)


def matches(criteria: Mapping[str, Any], attributes: Mapping[str, Any], today: date) -> bool:
    """Whether a resident with ``attributes`` (one agency's row) is in the group."""
    for name in ("municipality", "district", "household_type"):
        wanted = criteria.get(name)
        if wanted is not None and attributes.get(name) != wanted:
            return False
    low, high = criteria.get("age_min"), criteria.get("age_max")
    if low is not None and high is not None:
        born = attributes.get("birth_date")
        after, until = birth_bounds(int(low), int(high), today)
        if born is None or not after < born <= until:
            return False
    return True


# Appending ------------------------------------------------------------------------------------
def append_notice(ledger: Ledger, submission: Any) -> Receipt:
    """Check and append one signed ``notice.issued`` statement; the same statement again gets
    the same receipt, another one reusing its notice id is refused (``duplicate-conflict``)."""
    from ledger.application import Receipt

    check_shape(submission)
    statement = submission["statement"]
    if statement["kind"] != KIND:
        raise MalformedStatement(f"statement.kind must be {KIND!r} here, got "
                                 f"{statement['kind']!r}")
    if statement["v"] != 1:
        raise MalformedStatement("statement.v must be 1 for a notice")
    submitter = statement["agency"]
    if submitter == OPERATOR:
        raise OperatorCannotIssue("notices are issued by agencies, not by the log operator")
    payload = NoticePayload.parse(submission["payload"])
    now = now_utc()
    moment = parse_time(statement["time"], field="statement.time")
    check_agency_statement(ledger, submission, moment, now)
    if payload.code is not None:
        check_own_code(ledger, submitter, payload.code, "payload.target.code")
    ident = notice_uuid(submitter, payload.notice_id)
    event = Notice.Issued(  # type: ignore[call-arg]  # fields come from Logged
        originator_id=ident, originator_version=Notice.INITIAL_VERSION,
        timestamp=Notice.Issued.create_timestamp(), originator_topic=_NOTICE_AGGREGATE_TOPIC,
        statement=statement, signature=submission["signature"], payload=submission["payload"],
        salt=submission["salt"], logged_at=format_time(now))

    def key_still_valid(top: int) -> None:
        ledger.refresh_registry(top=top)
        ledger.registry.key_for(submitter, statement["key_id"], moment, now)

    appended: list[AppendedEntry] = []
    try:
        with ledger.log.write_transaction() as session:
            found = _existing(ledger, session, ident)
            if found is None:
                ledger.log.insert_events([ledger.mapper.to_stored_event(event)], session=session,
                                         log_entries=[event.log_entry()], appended=appended,
                                         precommit=key_still_valid)
    except IntegrityError:
        # Another writer appended this notice id between our read and our insert.
        with ledger.log.transaction(commit=False) as session:
            found = _existing(ledger, session, ident)
        if found is None:
            raise
    if found is not None:
        fields, entry = found
        if (fields["statement"], fields["signature"]) != (statement, submission["signature"]):
            raise DuplicateConflict(
                f"notice id {payload.notice_id!r} of agency {submitter!r} was already used for "
                "another statement; give a new notice_id")
        return Receipt(ident, entry.index, entry.leaf, entry.leaf_hash)
    return Receipt(ident, appended[0].index, appended[0].leaf, appended[0].leaf_hash)


def _existing(ledger: Ledger, session: Any, ident: uuid.UUID
              ) -> tuple[dict[str, Any], AppendedEntry] | None:
    events = ledger.log.events_record_cls.__table__
    row = session.execute(
        select(events.c.id, events.c.state, log_entry.c.idx, log_entry.c.leaf,
               log_entry.c.leaf_hash)
        .join(log_entry, log_entry.c.notification_id == events.c.id)
        .where(events.c.originator_id == ident, events.c.originator_version == 1)).first()
    if row is None:
        return None
    return json.loads(row.state), AppendedEntry(int(row.idx), int(row.id), bytes(row.leaf),
                                                bytes(row.leaf_hash))


def check_own_code(ledger: Ledger, agency: str, code: str, field: str) -> str:
    """The pseudonym behind ``agency``'s own link code. The refusals name neither the resident
    nor the agency a misplaced code belongs to (as ledger.linkcodes.resolve)."""
    hit = ledger.link_codes.lookup([code]).get(code)
    if hit is None:
        raise UnknownLinkCode(f"{field} is not a link code issued to agency {agency!r}; use the "
                              "code the network operator issued for this resident")
    if hit[0] != agency:
        raise LinkCodeOfAnotherAgency(f"{field} was issued to another agency; an agency names a "
                                      "resident only by its own link code")
    return hit[1]


# Attributes -----------------------------------------------------------------------------------
def set_attributes(ledger: Ledger, agency: str, code: str, attributes: Mapping[str, Any]
                   ) -> dict[str, Any]:
    """Replace what ``agency`` holds about the resident behind its own link code ``code``
    (absent keys become unknown). Returns the stored row without the pseudonym."""
    row = parse_attributes(attributes)
    subject = check_own_code(ledger, agency, code, "the link code")
    stamp = format_time(now_utc())
    table = resident_attribute
    with writing(), ledger.log.transaction(commit=True) as session:
        session.execute(table.delete().where(table.c.agency == agency,
                                             table.c.subject == subject))
        session.execute(table.insert().values(agency=agency, subject=subject, updated_at=stamp,
                                              **row))
    return {**row, "updated_at": stamp}


def parse_attributes(raw: Mapping[str, Any]) -> dict[str, str | None]:
    extra = set(raw) - set(ATTRIBUTES)
    if extra:
        raise InvalidRequest(f"unknown attributes {sorted(extra)}; known: {list(ATTRIBUTES)}")
    row: dict[str, str | None] = {}
    for name in ATTRIBUTES:
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name} must be a string or null")
        row[name] = value
    born = row["birth_date"]
    if born is not None:
        try:
            if date.fromisoformat(born).isoformat() != born:
                raise ValueError
        except ValueError:
            raise InvalidRequest("birth_date must be a date YYYY-MM-DD") from None
    for name in ("municipality", "district"):
        value = row[name]
        if value is not None and not _AREA.fullmatch(value):
            raise InvalidRequest(f"{name} must be a local government code (6 digits), a district "
                                 "as <code>-<district>")
    household = row["household_type"]
    if household is not None and household not in HOUSEHOLD_TYPES:
        raise InvalidRequest(f"household_type must be one of {sorted(HOUSEHOLD_TYPES)}")
    return row
