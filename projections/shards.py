"""Read views across shards (docs/shards.md): each shard keeps its own views in its own database;
these readers ask every shard and merge the answers.

Why merge at read time rather than project every shard into one views database: a frozen
shard's views never change again, each shard's views stay beside the log they were built from
(rebuilt and checked with the same commands), and a resident's page asks each shard one indexed
query (a few milliseconds each; a deployment holds a handful of shards, one per period).

Records are ordered newest first by (requested time, shard, log index), so a record's position
never depends on which shards answered first; the page cursor carries the shard's position.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from projections.decode import micros
from projections.errors import InvalidQuery, UnknownAgency
from projections.report import AgencyReport
from projections.resident import MAX_LIMIT, Page, ResidentRecord, ResidentRecords, _encode_cursor

_AFTER_EVERY_INDEX = 1 << 62


@dataclass(frozen=True)
class ShardRecord(ResidentRecord):
    """A resident's record and the shard (log) that holds it: its proofs come from that log."""

    origin: str = ""
    ledger: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "log": self.origin}


@dataclass(frozen=True)
class ShardViews:
    """One shard's readers, and its ledger (for proofs and exports)."""

    origin: str
    ledger: Any
    residents: ResidentRecords | None
    reports: AgencyReport | None


def _moment(value: datetime) -> int:
    return micros(value.isoformat())


def _encode(at: int, shard: int, index: int) -> str:
    return base64.urlsafe_b64encode(f"{at}:{shard}:{index}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[int, int, int]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, shard, index = (int(part) for part in text.split(":"))
        return at, shard, index
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor is not one this service issued; "
                           "start again without a cursor") from None


class ShardedResidentRecords:
    """``ResidentRecords`` over every shard, oldest first in ``shards``; the open shard is last.

    Attributes other than the queries below (``labels``, ``store``) are the open shard's.
    """

    def __init__(self, shards: Sequence[ShardViews]) -> None:
        self.shards = [s for s in shards if s.residents is not None]
        if not self.shards:
            raise ValueError("no shard has a resident view")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shards[-1].residents, name)

    def _tag(self, record: ResidentRecord, position: int) -> ShardRecord:
        shard = self.shards[position]
        return ShardRecord(**{**record.__dict__, "origin": shard.origin, "ledger": shard.ledger})

    def list(self, subject: str, *, since: datetime | None = None, until: datetime | None = None,
             agency: str | None = None, affair: str | None = None, cursor: str | None = None,
             limit: int = 50, as_of: int | None = None) -> Page:
        """Newest first across shards; ``as_of`` (a log index) applies to the open shard."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        after = _decode(cursor) if cursor is not None else None
        found: list[tuple[int, int, int, ShardRecord]] = []
        more = False
        applied: int | None = None
        last = len(self.shards) - 1
        for position, shard in enumerate(self.shards):
            native = None
            if after is not None:
                at, where, index = after
                # Records after (at, where, index) in (time, shard, index) order, descending.
                native = _encode_cursor(at, 0 if position > where else
                                        index if position == where else _AFTER_EVERY_INDEX)
            assert shard.residents is not None
            page = shard.residents.list(subject, since=since, until=until, agency=agency,
                                        affair=affair, cursor=native, limit=limit,
                                        as_of=as_of if position == last else None)
            more = more or page.next_cursor is not None
            if position == last:
                applied = page.as_of
            found += [(_moment(r.requested_at), position, r.index, self._tag(r, position))
                      for r in page.items]
        found.sort(key=lambda item: item[:3], reverse=True)
        more = more or len(found) > limit
        found = found[:limit]
        next_cursor = _encode(*found[-1][:3]) if more and found else None
        return Page([item[3] for item in found], next_cursor, applied)

    def count(self, subject: str, **filters: Any) -> int:
        return sum(s.residents.count(subject, **filters) for s in self.shards
                   if s.residents is not None)

    def facets(self, subject: str) -> tuple[Sequence[Any], Sequence[Any]]:
        agencies: dict[str, Any] = {}
        affairs: dict[str, Any] = {}
        for shard in self.shards:
            assert shard.residents is not None
            found, kinds = shard.residents.facets(subject)
            agencies.update({a.code: a for a in found})
            affairs.update({a.id: a for a in kinds})
        return ([agencies[k] for k in sorted(agencies)], [affairs[k] for k in sorted(affairs)])

    def get(self, subject: str, provision_id: UUID) -> ShardRecord | None:
        """The subject's record with this id, looked up newest shard first."""
        for position in range(len(self.shards) - 1, -1, -1):
            residents = self.shards[position].residents
            assert residents is not None
            record = residents.get(subject, provision_id)
            if record is not None:
                return self._tag(record, position)
        return None


_COUNT_KEY = ("role", "month", "affair", "outcome", "reason")


class ShardedReports:
    """An agency's audit report over every shard: counts summed, lists joined (each item names
    its ``log``), anomalies found per shard. ``as_of`` applies to the open shard."""

    def __init__(self, shards: Sequence[ShardViews]) -> None:
        self.shards = [s for s in shards if s.reports is not None]
        if not self.shards:
            raise ValueError("no shard has a report view")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shards[-1].reports, name)

    def get(self, code: str, *, as_of: int | None = None) -> dict[str, Any]:
        parts: list[tuple[str, dict[str, Any]]] = []
        last = len(self.shards) - 1
        for position, shard in enumerate(self.shards):
            assert shard.reports is not None
            try:
                parts.append((shard.origin, shard.reports.get(
                    code, as_of=as_of if position == last else None)))
            except UnknownAgency:
                continue
        if not parts:
            raise UnknownAgency(f"agency {code!r} is not registered in any shard")
        return merge_reports(parts)


def merge_reports(parts: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One report from the shards' reports (oldest first)."""
    merged = dict(parts[-1][1])  # agency labels and rules as the newest shard has them
    counts: Counter[tuple[Any, ...]] = Counter()
    hidden: Counter[tuple[Any, ...]] = Counter()
    operators: Counter[tuple[str, str]] = Counter()
    refusals: Counter[tuple[str, Any]] = Counter()
    totals: Counter[str] = Counter()
    affairs: dict[str, Any] = {}
    anomalies: dict[str, Any] = {"off_hours": {"count": 0, "items": []}, "operator_outliers": [],
                                 "bursts": [], "repeated_lookups": []}
    withheld = 0
    flags: list[Any] = []
    for origin, report in parts:
        for row in report["counts"]:
            key = tuple(row[k] for k in _COUNT_KEY)
            counts[key] += row["n"]
            hidden[key] += row["non_disclosed"]
        for row in report["operators"]:
            operators[(row["month"], row["operator"])] += row["n"]
        for row in report["refusals"]:
            refusals[(row["role"], row["reason"])] += row["n"]
        totals.update(report["totals"])
        affairs.update(report["affairs"])
        found = report.get("anomalies") or {}
        for name, value in found.items():
            if isinstance(value, dict) and name in anomalies:
                anomalies[name]["count"] += value.get("count", 0)
                anomalies[name]["items"] += [_tagged(i, origin) for i in value.get("items", [])]
            elif isinstance(value, list):
                anomalies.setdefault(name, []).extend(_tagged(i, origin) for i in value)
        withheld += report.get("withheld") or 0
        flags += [_tagged(item, origin) for item in report.get("flags") or []]
    merged.update({
        "totals": {name: totals[name] for name in parts[-1][1]["totals"]},
        "affairs": dict(sorted(affairs.items())),
        "counts": [{**dict(zip(_COUNT_KEY, key)), "n": n, "non_disclosed": hidden[key]}
                   for key, n in sorted(counts.items(), key=lambda kv: _sortable(kv[0]))],
        "operators": [{"month": m, "operator": o, "n": n}
                      for (m, o), n in sorted(operators.items())],
        "refusals": [{"role": r, "reason": why, "n": n}
                     for (r, why), n in sorted(refusals.items(), key=lambda kv: _sortable(kv[0]))],
        "anomalies": anomalies, "withheld": withheld, "flags": flags,
        "logs": [origin for origin, _ in parts],
    })
    return merged


def _tagged(item: Any, origin: str) -> Any:
    return {**item, "log": origin} if isinstance(item, dict) else item


def _sortable(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)
