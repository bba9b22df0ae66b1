"""A resident's application as one thread (docs/applications.md): the notice that invited it,
the signed application, the provisions it caused (those naming its id that the resident's view
shows: a non-disclosed one stays out of the thread as it stays out of the view), the receiving
agency's decision and, for an address change, each partner's receipt.

Read at request time from the log (the application's own entries, the notice entry), the
operator's application tables and the resident view, so the thread needs no view of its own;
its cost grows with the resident's records logged after the application, not with the log.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from sqlalchemy import select

from ledger import applications as la
from ledger.application import Ledger
from projections.flags import now_micros, visible_condition
from projections.resident import ResidentRecords
from projections.schema import resident_record as rr

STEP_NAMES = {la.SUBMITTED: "submitted", la.RECEIVED: "received", la.DECIDED: "decided",
              la.FORWARDED: "forwarded"}


class ApplicationThreads:
    """Queries for residents (their own applications only) and agencies (their inbox)."""

    def __init__(self, ledger: Ledger, residents: ResidentRecords) -> None:
        self.ledger = ledger
        self.residents = residents

    @classmethod
    def for_ledger(cls, ledger: Ledger) -> ApplicationThreads:
        return cls(ledger, ResidentRecords.for_ledger(ledger))

    # Residents ----------------------------------------------------------------------------------
    def of_resident(self, subject: str) -> list[dict[str, Any]]:
        """The resident's applications, newest first."""
        labels = self.residents.labels
        return [_summary(row, labels) for row in la.list_rows(self.ledger, subject=subject)]

    def thread(self, subject: str, ident: str) -> dict[str, Any] | None:
        """notice → application → provisions → decision; None when the application is not the
        resident's (or does not exist), so callers answer both alike."""
        try:
            ident = str(UUID(ident))
        except ValueError:
            return None
        row = la.get_row(self.ledger, ident)
        if row is None or row.subject != subject:
            return None
        labels = self.residents.labels
        steps = la.steps(self.ledger, ident)
        first = steps[0][0]
        request = (first.get("payload") or {}).get("request")
        out = _summary(row, labels)
        out["notice"] = self._notice(row.notice)
        out["answers"] = None if request is None else request["answers"]
        out["steps"] = [_step(fields, entry.index, labels) for fields, entry in steps]
        out["provisions"] = self._provisions(subject, ident, int(row.submitted_idx))
        decided = [s for s in out["steps"] if s["step"] == "decided"]
        out["decision"] = decided[0] if decided else None
        out["forwards"] = [{"partner": labels.agency(f.partner).to_json(),
                            "received_index": f.received_idx, "received_at": f.received_at}
                           for f in la.forwards(self.ledger, ident)]
        return out

    def _notice(self, notice: str) -> dict[str, Any] | None:
        events = self.ledger.log.events_record_cls.__table__
        with self.ledger.log.transaction(commit=False) as session:
            found = session.execute(select(events.c.state).where(
                events.c.originator_id == UUID(notice),
                events.c.originator_version == 1)).first()
        if found is None:
            return None
        state = json.loads(found.state)
        payload = state["payload"]
        return {"id": notice, "agency": self.residents.labels.agency(
                    state["statement"]["agency"]).to_json(),
                "category": payload["category"], "title": payload["title"],
                "issued_at": state["logged_at"]}

    def _provisions(self, subject: str, ident: str, after: int) -> list[dict[str, Any]]:
        """The records of the resident's view after the application that name it, in log order.
        A provision naming an application comes after it (the log refuses one before the
        application is received), so only those records are read."""
        with self.residents.store.read() as session:
            ids = [row.id for row in session.execute(
                select(rr.c.id).where(rr.c.subject == subject, rr.c.idx > after,
                                      visible_condition(None, now_micros()))
                .order_by(rr.c.idx))]
        if not ids:
            return []
        events = self.ledger.log.events_record_cls.__table__
        named: set[UUID] = set()
        with self.ledger.log.transaction(commit=False) as session:
            for start in range(0, len(ids), 500):
                for row in session.execute(select(events.c.originator_id, events.c.state).where(
                        events.c.originator_id.in_(ids[start:start + 500]),
                        events.c.originator_version == 1)):
                    payload = json.loads(row.state).get("payload") or {}
                    if payload.get("application") == ident:
                        named.add(row.originator_id)
        records = []
        for uid in ids:
            if uid in named:
                record = self.residents.get(subject, uid)
                if record is not None:
                    records.append(record.to_json())
        return records

    # Agencies -----------------------------------------------------------------------------------
    def inbox(self, agency: str) -> list[dict[str, Any]]:
        """The applications made to ``agency``, newest first, with the answers and the applicant
        as the agency's own link code (never the internal pseudonym)."""
        labels = self.residents.labels
        out = []
        for row in la.list_rows(self.ledger, agency=agency):
            item = _summary(row, labels)
            item["applicant"] = row.applicant_code
            first = la.steps(self.ledger, row.id)[0][0]
            request = (first.get("payload") or {}).get("request")
            item["answers"] = None if request is None else request["answers"]
            item["forward_to"] = [f.partner for f in la.forwards(self.ledger, row.id)]
            out.append(item)
        return out


def _summary(row: Any, labels: Any) -> dict[str, Any]:
    form = la.FORMS.get(row.form)
    return {"id": row.id, "status": row.status, "form": row.form,
            "form_title": None if form is None else {"ja": form.title_ja, "en": form.title_en},
            "agency": labels.agency(row.agency).to_json(), "notice": row.notice,
            "submitted_index": int(row.submitted_idx), "submitted_at": row.submitted_at}


def _step(fields: dict[str, Any], index: int, labels: Any) -> dict[str, Any]:
    statement = fields["statement"]
    payload = fields.get("payload") or {}
    step: dict[str, Any] = {"step": STEP_NAMES[statement["kind"]], "index": index,
                            "logged_at": fields["logged_at"],
                            "by": labels.agency(statement["agency"]).to_json()}
    if statement["kind"] == la.DECIDED:
        step["outcome"], step["reason"] = payload.get("outcome"), payload.get("reason")
    return step
