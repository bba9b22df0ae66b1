"""What an auditor wants flagged in one requesting agency's lookups.

Each rule is a pure function over the agency's audit rows (fields ``idx``, ``subject``,
``affair``, ``operator``, ``requested_at`` in µs UTC) and the thresholds in ``Rules``:

- ``off_hours``: requests outside business hours (Mon–Fri 08:30–17:45 JST, fixed-date national
  holidays and the 12/29–1/3 closure excluded; moving holidays are not modelled);
- ``operator_outliers``: a staff operator whose monthly requests are ``operator_factor`` times the
  median of their peers' (and at least ``operator_min``);
- ``bursts``: ``burst_count`` or more requests about one resident within ``burst_window``;
- ``repeated_lookups``: the same resident looked up for the same affair ``repeat_count`` or more
  times within ``repeat_window`` — again and again without a new affair.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import time, timedelta
from typing import Any

from projections.decode import JST, format_micros, from_micros, month_jst

_FIXED_HOLIDAYS = frozenset(
    {(1, 1), (1, 2), (1, 3), (2, 11), (2, 23), (4, 29), (5, 3), (5, 4), (5, 5), (8, 11), (11, 3),
     (11, 23), (12, 29), (12, 30), (12, 31)}
)


@dataclass(frozen=True)
class Rules:
    business_start: time = time(8, 30)
    business_end: time = time(17, 45)
    holidays: frozenset[tuple[int, int]] = field(default=_FIXED_HOLIDAYS)
    operator_factor: float = 10.0
    operator_min: int = 40
    operator_min_peers: int = 2
    burst_count: int = 5
    burst_window: timedelta = timedelta(hours=1)
    repeat_count: int = 4
    repeat_window: timedelta = timedelta(days=30)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["business_start"] = self.business_start.strftime("%H:%M")
        out["business_end"] = self.business_end.strftime("%H:%M")
        out["holidays"] = [f"{m:02d}-{d:02d}" for m, d in sorted(self.holidays)]
        out["burst_window"] = int(self.burst_window.total_seconds())
        out["repeat_window"] = int(self.repeat_window.total_seconds())
        return out


def detect(rows: Sequence[Any], rules: Rules = Rules(), limit: int = 100) -> dict[str, Any]:
    """Every anomaly of the agency's requests; lists capped at ``limit`` (counts are not)."""
    off = off_hours(rows, rules)
    return {
        "off_hours": {"count": len(off), "items": off[:limit]},
        "operator_outliers": operator_outliers(rows, rules)[:limit],
        "bursts": bursts(rows, rules)[:limit],
        "repeated_lookups": repeated_lookups(rows, rules)[:limit],
    }


def is_business_hours(at_us: int, rules: Rules = Rules()) -> bool:
    local = from_micros(at_us) + JST
    if local.weekday() >= 5 or (local.month, local.day) in rules.holidays:
        return False
    return rules.business_start <= local.time() < rules.business_end


def off_hours(rows: Iterable[Any], rules: Rules = Rules()) -> list[dict[str, Any]]:
    return [
        {"index": int(r.idx), "requested_at": format_micros(r.requested_at),
         "operator": r.operator, "affair": r.affair}
        for r in sorted(rows, key=lambda r: r.idx)
        if not is_business_hours(r.requested_at, rules)
    ]


def operator_outliers(rows: Iterable[Any], rules: Rules = Rules()) -> list[dict[str, Any]]:
    per_month: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per_month[month_jst(r.requested_at)][r.operator] += 1
    found = []
    for month in sorted(per_month):
        counts = per_month[month]
        for operator, n in sorted(counts.items()):
            peers = [c for other, c in counts.items() if other != operator]
            if len(peers) < rules.operator_min_peers:
                continue
            median = statistics.median(peers)
            if n >= rules.operator_min and n >= rules.operator_factor * max(median, 1):
                found.append({"month": month, "operator": operator, "requests": n,
                              "peer_median": median, "peers": len(peers)})
    return found


def bursts(rows: Iterable[Any], rules: Rules = Rules()) -> list[dict[str, Any]]:
    by_subject: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        by_subject[r.subject].append(r)
    window = int(rules.burst_window.total_seconds() * 1_000_000)
    found = []
    for subject, group in by_subject.items():
        for run in _dense_runs(group, rules.burst_count, window):
            found.append({"resident": resident_ref(subject), **_describe(run)})
    return sorted(found, key=lambda f: (f["first_at"], f["resident"]))


def repeated_lookups(rows: Iterable[Any], rules: Rules = Rules()) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in rows:
        by_key[(r.subject, r.affair)].append(r)
    window = int(rules.repeat_window.total_seconds() * 1_000_000)
    found = []
    for (subject, affair), group in by_key.items():
        for run in _dense_runs(group, rules.repeat_count, window):
            found.append({"resident": resident_ref(subject), "affair": affair,
                          **_describe(run)})
    return sorted(found, key=lambda f: (f["first_at"], f["resident"], f["affair"]))


def resident_ref(subject: str) -> str:
    """How a report names the resident an anomaly is about: not the identifier itself (the
    pseudonym, or the requesting agency's own link code) but the first 16 hex digits of its
    SHA-256, so the report carries no resident identifier while an auditor holding the
    export, or the agency holding its own codes, can still find the records it points to."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def _dense_runs(group: list[Any], count: int, window: int) -> list[list[Any]]:
    """Maximal runs of requests in which every ``count`` consecutive ones fit in ``window``."""
    if len(group) < count:
        return []
    ordered = sorted(group, key=lambda r: (r.requested_at, r.idx))
    runs: list[tuple[int, int]] = []
    start = 0
    for end in range(len(ordered)):
        while ordered[end].requested_at - ordered[start].requested_at > window:
            start += 1
        if end - start + 1 >= count:
            if runs and start <= runs[-1][1]:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((start, end))
    return [ordered[a:b + 1] for a, b in runs]


def _describe(run: list[Any]) -> dict[str, Any]:
    return {
        "requests": len(run),
        "first_at": format_micros(run[0].requested_at),
        "last_at": format_micros(run[-1].requested_at),
        "operators": sorted({r.operator for r in run}),
        "indexes": [int(r.idx) for r in run][:20],
    }
