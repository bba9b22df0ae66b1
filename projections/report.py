"""Per-agency audit reports: counts per month × affair × outcome, per staff operator, refusals
with reasons, non-disclosed records, the flag history of the agency's records (``flags``; how
many are withheld now: ``withheld``), and the anomalies of projections.anomalies.

Without ``as_of`` the counts come from the incrementally kept counters; with ``as_of`` (a log
index) they are recomputed from the detail rows up to that entry by the same function the
projection uses, so a report as of the last index equals the current one.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from ledger.application import Ledger
from projections.anomalies import Rules, detect
from projections.errors import InvalidQuery, UnknownAgency
from projections.flags import agency_flags, now_micros
from projections.labels import Labels
from projections.schema import audit_count, audit_operator, audit_provision
from projections.store import ViewStore
from projections.views import CountKey, OperatorKey, aggregate

__all__ = ["AgencyReport", "write_charts", "write_csv"]


DEFAULT_RULES = Rules()


class AgencyReport:
    def __init__(self, store: ViewStore, labels: Labels, rules: Rules = DEFAULT_RULES) -> None:
        self.store = store
        self.labels = labels
        self.rules = rules

    @classmethod
    def for_ledger(cls, ledger: Ledger, rules: Rules = DEFAULT_RULES) -> AgencyReport:
        from projections.runner import runner_for

        return cls(runner_for(ledger).store, Labels.for_ledger(ledger), rules)

    def get(self, code: str, *, as_of: int | None = None) -> dict[str, Any]:
        """The JSON-ready report of agency ``code`` (as of log index ``as_of``, inclusive)."""
        if as_of is not None and as_of < 0:
            raise InvalidQuery(f"as_of must be a log index (≥ 0), got {as_of}")
        self.store.check_schema()
        a = audit_provision.c
        with self.store.read() as session:
            if as_of is None:
                counts, hidden, operators = self._counters(session, code)
            else:
                rows = session.execute(
                    select(a.requester, a.provider, a.affair, a.outcome, a.reason, a.operator,
                           a.requested_at, a.non_disclosure)
                    .where(or_(a.requester == code, a.provider == code), a.idx <= as_of)
                ).all()
                counts, hidden, operators = aggregate(rows)
            lookups = select(a.idx, a.subject, a.affair, a.operator, a.requested_at).where(
                a.requester == code)
            if as_of is not None:
                lookups = lookups.where(a.idx <= as_of)
            requests = session.execute(lookups).all()
            # Auditors see withheld records with their history: who set or lifted which flag,
            # when and why (projections.flags).
            flags, withheld = agency_flags(session, code, as_of, now_micros())
        label = self.labels.agency(code)
        if label.name_ja == code and not counts:
            raise UnknownAgency(f"agency {code!r} is not registered in this log")
        report = _assemble(code, label.to_json(), as_of, counts, hidden, operators,
                           detect(requests, self.rules), self.rules, self.labels)
        report["withheld"] = withheld
        report["flags"] = flags
        return report

    @staticmethod
    def _counters(session: Any, code: str) -> tuple[Counter[CountKey], Counter[CountKey],
                                                     Counter[OperatorKey]]:
        c, o = audit_count.c, audit_operator.c
        counts: Counter[CountKey] = Counter()
        hidden: Counter[CountKey] = Counter()
        for row in session.execute(select(audit_count).where(c.agency == code)):
            key = (row.agency, row.role, row.month, row.affair, row.outcome, row.reason)
            counts[key] = int(row.n)
            hidden[key] = int(row.non_disclosed)
        operators: Counter[OperatorKey] = Counter({
            (row.agency, row.month, row.operator): int(row.n)
            for row in session.execute(select(audit_operator).where(o.agency == code))
        })
        return counts, hidden, operators


def _assemble(code: str, agency: dict[str, Any], as_of: int | None, counts: Counter[CountKey],
              hidden: Counter[CountKey], operators: Counter[OperatorKey],
              anomalies: dict[str, Any], rules: Rules, labels: Labels) -> dict[str, Any]:
    mine = sorted(k for k in counts if k[0] == code and counts[k])
    rows = [{"role": k[1], "month": k[2], "affair": k[3], "outcome": k[4],
             "reason": k[5] or None, "n": counts[k], "non_disclosed": hidden[k]} for k in mine]
    refusals: Counter[tuple[str, str]] = Counter()
    for k in mine:
        if k[4] != "provided":
            refusals[(k[1], k[5])] += counts[k]
    affairs = sorted({k[3] for k in mine})
    return {
        "agency": agency,
        "as_of": as_of,
        "totals": {
            "as_requester": sum(counts[k] for k in mine if k[1] == "requester"),
            "as_provider": sum(counts[k] for k in mine if k[1] == "provider"),
            "not_provided": sum(counts[k] for k in mine if k[4] != "provided"),
            "non_disclosed": sum(hidden[k] for k in mine),
        },
        "affairs": {a: {"ja": labels.affair(a).ja, "en": labels.affair(a).en} for a in affairs},
        "counts": rows,
        "operators": [{"month": k[1], "operator": k[2], "n": n}
                      for k, n in sorted(operators.items()) if k[0] == code and n],
        "refusals": [{"role": role, "reason": reason or None, "n": n}
                     for (role, reason), n in sorted(refusals.items())],
        "anomalies": anomalies,
        "rules": rules.to_json(),
    }


# Exports --------------------------------------------------------------------------------------
def write_csv(report: dict[str, Any], out: Path) -> list[Path]:
    """counts.csv, operators.csv, refusals.csv and anomalies.csv of one report into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    code = report["agency"]["code"]
    written = [
        _write(out / f"{code}-counts.csv",
               ["role", "month", "affair", "outcome", "reason", "n", "non_disclosed"],
               report["counts"]),
        _write(out / f"{code}-operators.csv", ["month", "operator", "n"], report["operators"]),
        _write(out / f"{code}-refusals.csv", ["role", "reason", "n"], report["refusals"]),
        _write(out / f"{code}-anomalies.csv", ["kind", "detail"], _anomaly_lines(report)),
    ]
    return written


def _anomaly_lines(report: dict[str, Any]) -> Iterable[dict[str, Any]]:
    found = report["anomalies"]
    for item in found["off_hours"]["items"]:
        yield {"kind": "off_hours",
               "detail": f"index {item['index']} at {item['requested_at']} by {item['operator']}"}
    for item in found["operator_outliers"]:
        yield {"kind": "operator_outlier",
               "detail": f"{item['operator']} made {item['requests']} requests in {item['month']}"
                         f" (peer median {item['peer_median']})"}
    for kind, key in (("burst", "bursts"), ("repeated_lookup", "repeated_lookups")):
        for item in found[key]:
            what = f" for affair {item['affair']}" if "affair" in item else ""
            yield {"kind": kind,
                   "detail": f"{item['requests']} requests about resident {item['resident']}{what} from "
                             f"{item['first_at']} to {item['last_at']}"}


CSV_PARTS: dict[str, list[str]] = {
    "counts": ["role", "month", "affair", "outcome", "reason", "n", "non_disclosed"],
    "operators": ["month", "operator", "n"],
    "refusals": ["role", "reason", "n"],
    "anomalies": ["kind", "detail"],
}


def csv_text(report: dict[str, Any], part: str) -> str:
    """One of the report's CSV files as text (what ``write_csv`` writes), for a download."""
    rows = _anomaly_lines(report) if part == "anomalies" else report[part]
    handle = io.StringIO(newline="")
    _write_rows(handle, CSV_PARTS[part], rows)
    return handle.getvalue()


def _write(path: Path, header: list[str], rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        _write_rows(handle, header, rows)
    return path


def _write_rows(handle: Any, header: list[str], rows: Iterable[dict[str, Any]]) -> None:
    writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in header})


def write_charts(report: dict[str, Any], out: Path) -> list[Path]:
    """SVG charts of one report: requests per month by outcome, and requests per operator."""
    from projections.charts import monthly_chart, operator_chart

    out.mkdir(parents=True, exist_ok=True)
    code = report["agency"]["code"]
    paths = [out / f"{code}-monthly.svg", out / f"{code}-operators.svg"]
    paths[0].write_text(monthly_chart(report), encoding="utf-8")
    paths[1].write_text(operator_chart(report), encoding="utf-8")
    return paths
