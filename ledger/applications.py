"""E-applications (電子申請, one-stop): notice → signed application → provisions → decision.

A resident answers the form a notice invites and signs the answers with their own credential
(the card key that also signs their log-in). The log keeps one **application** per submission,
an aggregate whose events are log entries (docs/applications.md, docs/log-format.md):

- ``application.submitted``: signed by the operator as registrar (residents hold card keys, not
  statement keys, as for proxies) after it checked the resident's signature; the committed
  payload carries the resident's signed request, their certificate and signature, so the
  receiving agency or an auditor can check the resident's signature again. The answers are
  personal data: they live only in the payload (salted commitment in the leaf, erased at the end
  of retention like a provision's payload); the applicant is named by the receiving agency's own
  link code (符号), never by the internal pseudonym.
- ``application.received`` and ``application.decided``: signed by the receiving agency (the
  notice's issuer).
- ``application.forwarded``: signed by a partner organisation (an agency registered with kind
  ``partner``) when it received the address change it was forwarded, only for partners the
  resident consented to one by one.

Provisions the application causes (the agency asks other agencies for the data instead of the
resident attaching certificates, 添付書類の削減) name it in the optional payload key
``application``; the ledger refuses one that names an application of another agency or another
resident. The operator table ``kiroku_application`` (migration 0012, written in the same
transaction as each entry) maps an application to its resident and state; it is never exported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)

from ledger.domain import NAMESPACE, OPERATOR, Logged, LoggedAggregate
from ledger.encoding import canonical_json, format_time, now_utc, parse_time
from ledger.errors import (
    DuplicateConflict,
    MalformedStatement,
    NotFound,
    StatementRejected,
    SubmitterNotParty,
)
from ledger.notices import KIND as NOTICE_KIND
from ledger.notices import age_band, matches, notice_uuid, resident_attribute
from ledger.signing import check_shape
from ledger.storage import AppendedEntry
from ledger.submitters import check_agency_statement

if TYPE_CHECKING:
    from ledger.application import Ledger, Receipt
    from ledger.provision import ProvisionPayload

SUBMITTED = "application.submitted"
RECEIVED = "application.received"
DECIDED = "application.decided"
FORWARDED = "application.forwarded"
AGENCY_KINDS = (RECEIVED, DECIDED, FORWARDED)
KINDS = (SUBMITTED, *AGENCY_KINDS)
#: What the resident's card signs: a context line, the log's origin, then JCS(request).
SIGNING_CONTEXT = "kiroku-application/v1"
OUTCOMES = frozenset({"approved", "rejected"})
DECISION_REASONS = frozenset({"not_eligible", "incomplete", "withdrawn", "duplicate", "other"})
PARTNER_KIND = "partner"  # agency.registered "kind" of a utility, bank, … (docs/applications.md)
MAX_ANSWER = 400
MAX_FORWARD = 20
_CUSTOMER_NUMBER = re.compile(r"[0-9A-Za-z-]{1,32}")


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # "text" or "date"
    required: bool = True
    label_ja: str = ""
    label_en: str = ""


@dataclass(frozen=True)
class Form:
    """A form kiroku can take in: its fields and whether it may be forwarded to partners."""

    id: str
    title_ja: str
    title_en: str
    fields: tuple[Field, ...]
    forwardable: tuple[str, ...] = ()  # the answers a consented partner receives

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": {"ja": self.title_ja, "en": self.title_en},
                "fields": [{"name": f.name, "type": f.type, "required": f.required,
                            "label": {"ja": f.label_ja, "en": f.label_en}} for f in self.fields],
                "forwardable": bool(self.forwardable)}


#: The forms a notice may invite by ``form.id`` (a notice with only a ``url`` points elsewhere).
FORMS: dict[str, Form] = {form.id: form for form in (
    Form("address-change", "転居届", "Change of address", (
        Field("new_address", "text", label_ja="新しい住所", label_en="New address"),
        Field("moved_on", "date", label_ja="転居日", label_en="Date of moving"),
    ), forwardable=("new_address", "moved_on")),
    Form("childcare-enrolment", "保育所入所申込", "Childcare enrolment", (
        Field("child_name", "text", label_ja="お子さまの氏名", label_en="Child's name"),
        Field("preferred_start", "date", label_ja="希望入所日", label_en="Preferred start"),
        Field("note", "text", required=False, label_ja="備考", label_en="Note"),
    )),
    Form("general", "申請", "Application", (
        Field("details", "text", label_ja="申請内容", label_en="Details"),
    )),
)}

metadata = MetaData()
_BigInt = BigInteger().with_variant(Integer(), "sqlite")

#: The operator's table of applications (migration 0012): who applied (the internal pseudonym,
#: never exported), to which agency, and where the application stands.
application_table = Table(
    "kiroku_application",
    metadata,
    Column("id", Text, primary_key=True),
    Column("subject", Text, nullable=False),
    Column("agency", Text, nullable=False),
    Column("applicant_code", Text, nullable=False),  # the receiving agency's link code
    Column("notice", Text, nullable=False),
    Column("form", Text, nullable=False),
    Column("status", Text, nullable=False),  # submitted, received, approved, rejected
    Column("submitted_idx", _BigInt, nullable=False),
    Column("submitted_at", Text, nullable=False),
    Column("received_idx", _BigInt, nullable=True),
    Column("decided_idx", _BigInt, nullable=True),
    Index("kiroku_application_subject_idx", "subject"),
    Index("kiroku_application_agency_idx", "agency"),
)
#: One row per consented partner of an application: forwarded once the partner acknowledged.
application_forward = Table(
    "kiroku_application_forward",
    metadata,
    Column("application", Text, primary_key=True),
    Column("partner", Text, primary_key=True),
    Column("received_idx", _BigInt, nullable=True),
    Column("received_at", Text, nullable=True),
    Index("kiroku_application_forward_partner_idx", "partner"),
)


# Errors ----------------------------------------------------------------------------------------
class ApplicationRefused(StatementRejected):
    """The application breaks a rule of its form or notice."""

    code = "invalid-application"


class UnknownNotice(NotFound):
    """No notice with that id applies to the resident now (the same answer for one that exists
    for someone else, so it reveals nothing)."""

    code = "unknown-notice"


class UnknownForm(ApplicationRefused):
    code = "unknown-form"


class ConsentMissing(ApplicationRefused):
    """A partner without the resident's explicit consent for it (per recipient)."""

    code = "consent-missing"


class ReplayedApplication(DuplicateConflict):
    """The same signed application again: it was taken once."""

    code = "replayed-application"


class UnknownApplication(StatementRejected):
    code = "unknown-application"


class ApplicationOfAnother(SubmitterNotParty):
    """The application was made to another agency, or a provision names another resident's."""

    code = "application-of-another"


class ApplicationState(StatementRejected):
    """The step does not follow from where the application stands (e.g. decided before it was
    received, forwarded before it was approved)."""

    code = "application-state"


# Domain ----------------------------------------------------------------------------------------
class Application(LoggedAggregate):
    """A resident's application; each step is one log entry."""

    class Submitted(Aggregate.Created, Logged):
        pass

    class Received(Logged):
        pass

    class Decided(Logged):
        pass

    class Forwarded(Logged):
        pass


SUBMITTED_TOPIC = get_topic(Application.Submitted)
_AGGREGATE_TOPIC = get_topic(Application)
EVENTS: dict[str, type[Logged]] = {SUBMITTED: Application.Submitted,
                                   RECEIVED: Application.Received,
                                   DECIDED: Application.Decided,
                                   FORWARDED: Application.Forwarded}


def application_uuid(signature: str) -> uuid.UUID:
    """One application per resident signature: the same signed request again is a replay."""
    digest = hashlib.sha256(signature.encode()).hexdigest()
    return uuid.uuid5(NAMESPACE, f"application:{digest}")


def signing_message(origin: str, request: dict[str, Any]) -> bytes:
    """The bytes the resident's card signs for ``request`` (docs/applications.md)."""
    return f"{SIGNING_CONTEXT}\n{origin}\n".encode() + canonical_json(request)


# The resident's request ------------------------------------------------------------------------
@dataclass(frozen=True)
class ApplicationRequest:
    notice: uuid.UUID
    form: Form
    answers: dict[str, str]
    forward: tuple[tuple[str, str], ...]  # (partner, customer number), consented
    challenge: str

    @classmethod
    def parse(cls, raw: Any) -> ApplicationRequest:
        if not isinstance(raw, dict):
            raise MalformedStatement("the application request must be a JSON object")
        keys = set(raw)
        required = {"notice", "form", "answers", "challenge"}
        if not required <= keys <= required | {"forward"}:
            raise MalformedStatement(f"the application request has the keys {sorted(required)}"
                                     " and optionally 'forward'")
        try:
            notice = uuid.UUID(str(raw["notice"]))
        except ValueError:
            raise UnknownNotice("no such notice for you") from None
        form = FORMS.get(raw["form"]) if isinstance(raw["form"], str) else None
        if form is None:
            raise UnknownForm(f"form must be one of {sorted(FORMS)}")
        if not isinstance(raw["challenge"], str) or not 0 < len(raw["challenge"]) <= 4096:
            raise MalformedStatement("challenge must be the one-time challenge the service gave")
        answers = _answers(form, raw["answers"])
        forward = _forward(form, raw.get("forward", []))
        return cls(notice, form, answers, forward, raw["challenge"])


def _answers(form: Form, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ApplicationRefused("answers must be an object of the form's fields")
    known = {f.name: f for f in form.fields}
    extra = set(raw) - set(known)
    if extra:
        raise ApplicationRefused(f"answers names fields the form {form.id!r} does not have: "
                                 f"{sorted(extra)}")
    answers: dict[str, str] = {}
    for name, field in known.items():
        value = raw.get(name)
        if value is None or value == "":
            if field.required:
                raise ApplicationRefused(f"answers.{name} is required")
            continue
        if not isinstance(value, str) or len(value) > MAX_ANSWER:
            raise ApplicationRefused(f"answers.{name} must be a text of at most {MAX_ANSWER} "
                                     "characters")
        if field.type == "date":
            try:
                if date.fromisoformat(value).isoformat() != value:
                    raise ValueError
            except ValueError:
                raise ApplicationRefused(f"answers.{name} must be a date YYYY-MM-DD") from None
        answers[name] = value
    return answers


def _forward(form: Form, raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or len(raw) > MAX_FORWARD:
        raise ApplicationRefused(f"forward must be a list of at most {MAX_FORWARD} partners")
    if raw and not form.forwardable:
        raise ApplicationRefused(f"the form {form.id!r} is not forwarded to partners")
    seen: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict) or not set(item) <= {"partner", "consent",
                                                           "customer_number"}:
            raise ApplicationRefused("each forward item is {\"partner\", \"consent\": true, "
                                     "\"customer_number\"}")
        partner = item.get("partner")
        if not isinstance(partner, str) or not partner:
            raise ApplicationRefused("forward[].partner must be a partner's code")
        # Consent is given per recipient and explicitly: anything but true refuses the whole
        # application, so nothing is forwarded by default or by omission.
        if item.get("consent") is not True:
            raise ConsentMissing(f"forwarding to {partner!r} needs your explicit consent "
                                 "(\"consent\": true); remove the partner to not forward")
        number = item.get("customer_number")
        if not isinstance(number, str) or not _CUSTOMER_NUMBER.fullmatch(number):
            raise ApplicationRefused(f"forward to {partner!r}: customer_number must be your "
                                     "customer number there (1-32 letters, digits or '-')")
        if partner in seen:
            raise ApplicationRefused(f"forward names {partner!r} twice")
        seen[partner] = number
    return tuple(seen.items())


# Submitting ------------------------------------------------------------------------------------
def submit(ledger: Ledger, subject: str, request: dict[str, Any], certificate: str,
           signature: str) -> tuple[uuid.UUID, Receipt]:
    """Append the ``application.submitted`` entry of a request the resident ``subject`` signed
    (the caller checked the certificate, that it is the resident's, the signature over
    :func:`signing_message` and the challenge). Returns (application id, receipt)."""
    parsed = ApplicationRequest.parse(request)
    notice = notice_for(ledger, subject, parsed.notice)
    if notice["form"] is None or notice["form"].get("id") != parsed.form.id:
        raise UnknownForm(f"the notice does not invite the form {parsed.form.id!r}")
    agency = notice["agency"]
    ledger.refresh_registry(force=False)
    for partner, _ in parsed.forward:
        state = ledger.registry.agencies.get(partner)
        if state is None or state.kind != PARTNER_KIND:
            raise ApplicationRefused(f"{partner!r} is not a registered partner organisation")
    applicant = ledger.link_codes.issue(agency, subject)
    ident = application_uuid(signature)
    payload = {"application": str(ident), "notice": str(parsed.notice), "agency": agency,
               "form": parsed.form.id, "applicant": applicant, "request": request,
               "resident_signature": {"certificate": certificate, "signature": signature}}
    signed = ledger._operator_sign(SUBMITTED, payload, None)
    fields = ledger._fields(signed)
    event = Application.Submitted(  # type: ignore[call-arg]  # fields come from Logged
        originator_id=ident, originator_version=Application.INITIAL_VERSION,
        timestamp=Application.Submitted.create_timestamp(), originator_topic=_AGGREGATE_TOPIC,
        **fields)
    appended: list[AppendedEntry] = []
    try:
        with ledger.log.write_transaction() as session:
            if session.execute(select(application_table.c.id).where(
                    application_table.c.id == str(ident))).first() is not None:
                raise ReplayedApplication("this signed application was already submitted; sign "
                                          "a new one with a new challenge")
            ledger.log.insert_events([ledger.mapper.to_stored_event(event)], session=session,
                                     log_entries=[event.log_entry()], appended=appended)
            session.execute(insert(application_table).values(
                id=str(ident), subject=subject, agency=agency, applicant_code=applicant,
                notice=str(parsed.notice), form=parsed.form.id, status="submitted",
                submitted_idx=appended[0].index, submitted_at=fields["logged_at"]))
            for partner, _ in parsed.forward:
                session.execute(insert(application_forward).values(
                    application=str(ident), partner=partner))
    except IntegrityError:
        raise ReplayedApplication("this signed application was already submitted") from None
    return ident, _receipt(ident, appended[0])


def notice_for(ledger: Ledger, subject: str, ident: uuid.UUID) -> dict[str, Any]:
    """The notice ``ident`` if it applies to ``subject`` now, else UnknownNotice (read from the
    log itself, so an application never waits for the notices view)."""
    events = ledger.log.events_record_cls.__table__
    with ledger.log.transaction(commit=False) as session:
        row = session.execute(select(events.c.state).where(
            events.c.originator_id == ident, events.c.originator_version == 1)).first()
        state = json.loads(row.state) if row is not None else None
        if state is None or state["statement"]["kind"] != NOTICE_KIND:
            raise UnknownNotice("no such notice for you")
        payload = state["payload"]
        agency = state["statement"]["agency"]
        now = now_utc()
        if not (parse_time(payload["valid_from"], field="valid_from") <= now
                < parse_time(payload["valid_until"], field="valid_until")):
            raise UnknownNotice("no such notice for you (or it is no longer valid)")
        target = payload["target"]
        if target["type"] == "individual":
            hit = ledger.link_codes.lookup([target["code"]]).get(target["code"])
            applies = hit is not None and hit == (agency, subject)
        else:
            found = session.execute(select(resident_attribute).where(
                resident_attribute.c.agency == agency,
                resident_attribute.c.subject == subject)).first()
            criteria: dict[str, Any] = dict(target["criteria"])
            if "age_band" in criteria:
                criteria["age_min"], criteria["age_max"] = age_band(criteria["age_band"])
            # Ages are counted on the resident's calendar day in JST (as the notices view).
            today = (now + timedelta(hours=9)).date()
            applies = found is not None and matches(criteria, dict(found._mapping), today)
    if not applies:
        raise UnknownNotice("no such notice for you")
    assert notice_uuid(agency, payload["notice_id"]) == ident
    return {"agency": agency, "form": payload.get("form"), "payload": payload}


# Agencies' and partners' steps -----------------------------------------------------------------
def append_step(ledger: Ledger, submission: Any) -> Receipt:
    """Check and append one signed ``application.received``, ``application.decided`` or
    ``application.forwarded`` statement. The same statement again gets the same receipt."""
    check_shape(submission)
    statement = submission["statement"]
    kind = statement["kind"]
    if kind not in AGENCY_KINDS:
        raise MalformedStatement(f"statement.kind must be one of {list(AGENCY_KINDS)} here, got "
                                 f"{kind!r}")
    submitter = statement["agency"]
    if submitter == OPERATOR:
        raise ApplicationOfAnother("the operator takes no application step")
    payload = submission["payload"]
    allowed = {"application"} | ({"outcome", "reason"} if kind == DECIDED else set())
    if set(payload) != allowed:
        raise MalformedStatement(f"a {kind} payload has exactly the keys {sorted(allowed)}")
    try:
        ident = uuid.UUID(str(payload["application"]))
    except ValueError:
        raise UnknownApplication("payload.application is not an application id") from None
    if str(ident) != payload["application"]:
        raise MalformedStatement("payload.application must be the id in its lowercase form")
    if kind == DECIDED:
        if payload["outcome"] not in OUTCOMES:
            raise ApplicationRefused(f"payload.outcome must be one of {sorted(OUTCOMES)}")
        reason = payload["reason"]
        if payload["outcome"] == "rejected" and reason not in DECISION_REASONS:
            raise ApplicationRefused(f"a rejection names a reason, one of "
                                     f"{sorted(DECISION_REASONS)}")
        if payload["outcome"] == "approved" and reason is not None:
            raise ApplicationRefused("payload.reason must be null when approved")
    now = now_utc()
    moment = parse_time(statement["time"], field="statement.time")
    check_agency_statement(ledger, submission, moment, now)

    def key_still_valid(top: int) -> None:
        ledger.refresh_registry(top=top)
        ledger.registry.key_for(submitter, statement["key_id"], moment, now)

    appended: list[AppendedEntry] = []
    with ledger.log.write_transaction() as session:
        row = session.execute(select(application_table).where(
            application_table.c.id == str(ident))).first()
        if row is None:
            raise UnknownApplication(f"the log holds no application {ident}")
        steps = _steps(ledger, session, ident)
        same = [(fields, entry) for fields, entry in steps
                if fields["statement"]["kind"] == kind
                and fields["statement"]["agency"] == submitter]
        if same:
            fields, entry = same[0]
            if (fields["statement"], fields["signature"]) == (statement,
                                                               submission["signature"]):
                return _receipt(ident, entry)
            raise DuplicateConflict(f"{kind} of application {ident} was already recorded with "
                                    "another statement")
        values = _check_step(ledger, session, row, kind, submitter, payload)
        event = EVENTS[kind](  # type: ignore[call-arg]  # fields come from Logged
            originator_id=ident, originator_version=len(steps) + 1,
            timestamp=Application.Submitted.create_timestamp(), statement=statement,
            signature=submission["signature"], payload=payload, salt=submission["salt"],
            logged_at=format_time(now))
        ledger.log.insert_events([ledger.mapper.to_stored_event(event)], session=session,
                                 log_entries=[event.log_entry()], appended=appended,
                                 precommit=key_still_valid)
        index = appended[0].index
        if kind == FORWARDED:
            session.execute(update(application_forward).where(
                application_forward.c.application == str(ident),
                application_forward.c.partner == submitter).values(
                received_idx=index, received_at=format_time(now)))
        else:
            values = {k: (index if v is None else v) for k, v in values.items()}
            session.execute(update(application_table).where(
                application_table.c.id == str(ident)).values(**values))
    return _receipt(ident, appended[0])


def _check_step(ledger: Ledger, session: Any, row: Any, kind: str, submitter: str,
                payload: dict[str, Any]) -> dict[str, Any]:
    """The rule of each step; returns the table values it sets (None: this entry's index)."""
    if kind == FORWARDED:
        consented = session.execute(select(application_forward.c.partner).where(
            application_forward.c.application == row.id,
            application_forward.c.partner == submitter)).first()
        if consented is None:
            raise ConsentMissing("the resident did not consent to forwarding this application "
                                 "to you")
        if row.status != "approved":
            raise ApplicationState("an application is forwarded only once it is approved")
        return {}
    if submitter != row.agency:
        raise ApplicationOfAnother("the application was made to another agency")
    if kind == RECEIVED:
        return {"status": "received", "received_idx": None}
    if row.status != "received":
        raise ApplicationState("decide an application after recording that it was received")
    return {"status": payload["outcome"], "decided_idx": None}


def _steps(ledger: Ledger, session: Any, ident: uuid.UUID
           ) -> list[tuple[dict[str, Any], AppendedEntry]]:
    from ledger.schema import log_entry

    events = ledger.log.events_record_cls.__table__
    rows = session.execute(
        select(events.c.id, events.c.state, log_entry.c.idx, log_entry.c.leaf,
               log_entry.c.leaf_hash)
        .join(log_entry, log_entry.c.notification_id == events.c.id)
        .where(events.c.originator_id == ident).order_by(events.c.originator_version)).all()
    return [(json.loads(r.state), AppendedEntry(int(r.idx), int(r.id), bytes(r.leaf),
                                                bytes(r.leaf_hash))) for r in rows]


def _receipt(ident: uuid.UUID, entry: AppendedEntry) -> Receipt:
    from ledger.application import Receipt

    return Receipt(ident, entry.index, entry.leaf, entry.leaf_hash)


# Provisions naming an application --------------------------------------------------------------
def check_provision(ledger: Ledger, payload: ProvisionPayload) -> None:
    """A provision's ``application``: an application the log holds, made to the provision's
    requester (the agency that asks others for the data), received, and about the same resident.
    The refusals name no resident."""
    assert payload.application is not None
    with ledger.log.transaction(commit=False) as session:
        row = session.execute(select(application_table).where(
            application_table.c.id == payload.application)).first()
    if row is None:
        raise UnknownApplication(f"payload.application {payload.application} is not an "
                                 "application the log holds")
    if row.agency != payload.requester:
        raise ApplicationOfAnother("payload.application was made to another agency than the "
                                   "provision's requester")
    same = (payload.requester_code == row.applicant_code if payload.version == 2
            else payload.subject == row.subject)
    if not same:
        raise ApplicationOfAnother("payload.application is another resident's application")
    if row.status == "submitted":
        raise ApplicationState("record that the application was received before the provisions "
                               "it causes")


# Queries ---------------------------------------------------------------------------------------
def get_row(ledger: Ledger, ident: str) -> Any:
    with ledger.log.transaction(commit=False) as session:
        return session.execute(select(application_table).where(
            application_table.c.id == ident)).first()


def list_rows(ledger: Ledger, *, subject: str | None = None, agency: str | None = None
              ) -> list[Any]:
    query = select(application_table).order_by(application_table.c.submitted_idx.desc())
    if subject is not None:
        query = query.where(application_table.c.subject == subject)
    if agency is not None:
        query = query.where(application_table.c.agency == agency)
    with ledger.log.transaction(commit=False) as session:
        return list(session.execute(query.limit(500)).all())


def steps(ledger: Ledger, ident: str) -> list[tuple[dict[str, Any], AppendedEntry]]:
    """The application's entries in log order: (event fields, appended entry)."""
    with ledger.log.transaction(commit=False) as session:
        return _steps(ledger, session, uuid.UUID(ident))


def forwards(ledger: Ledger, ident: str) -> list[Any]:
    with ledger.log.transaction(commit=False) as session:
        return list(session.execute(select(application_forward).where(
            application_forward.c.application == ident).order_by(
            application_forward.c.partner)).all())


def partner_forwards(ledger: Ledger, partner: str) -> list[dict[str, Any]]:
    """What a partner organisation receives: approved applications whose resident consented to
    it, with only the form's forwardable answers and the customer number given for it."""
    with ledger.log.transaction(commit=False) as session:
        rows = session.execute(
            select(application_table.c.id, application_forward.c.received_idx)
            .join(application_forward, application_forward.c.application == application_table.c.id)
            .where(application_forward.c.partner == partner,
                   application_table.c.status == "approved")
            .order_by(application_table.c.decided_idx)).all()
        out = []
        for row in rows:
            first = _steps(ledger, session, uuid.UUID(row.id))[0][0]
            request = (first.get("payload") or {}).get("request")
            if request is None:  # erased at the end of retention: nothing left to forward
                continue
            form = FORMS[request["form"]]
            number = next(f["customer_number"] for f in request.get("forward", [])
                          if f["partner"] == partner)
            out.append({"application": row.id, "form": form.id,
                        "data": {k: v for k, v in request["answers"].items()
                                 if k in form.forwardable},
                        "customer_number": number, "received_index": row.received_idx})
    return out


def decode_signature(signature: str) -> bytes:
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise ApplicationRefused("signature is not base64") from None
