"""Crafted logs: provisions with chosen subjects, times, operators and outcomes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.encoding import format_time
from tests.ledger.fixtures import World

JST_OFFSET = timedelta(hours=9)
#: A Wednesday well inside the fixtures' registration window; 10:00 JST is business hours.
WEDNESDAY_10_JST = datetime(2025, 6, 11, 1, 0, tzinfo=UTC)


def provision(world: World, at: datetime, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"requested_at": format_time(at),
                              "provided_at": format_time(at + timedelta(seconds=30))}
    if overrides.get("outcome") == "not_provided":
        fields.update(provided_at=None, reason=overrides.pop("reason", "no-record"))
    fields.update(overrides)
    return world.statement(time=at + timedelta(minutes=1), **fields)


def normal_log(world: World, n: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    """Weekday business-hours requests by four operators about many residents."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        day = WEDNESDAY_10_JST + timedelta(weeks=i % 8, days=rng.randrange(3))
        at = day + timedelta(minutes=rng.randrange(0, 6 * 60))
        out.append(provision(world, at, subject=f"subj-{i:04d}",
                             operator=f"op-KYOKAI-{i % 4 + 1:02d}"))
    return out


def random_log(world: World, n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        at = WEDNESDAY_10_JST + timedelta(minutes=rng.randrange(0, 60 * 24 * 90))
        refused = rng.random() < 0.2
        out.append(provision(
            world, at, subject=f"subj-{rng.randrange(12):04d}",
            operator=f"op-KYOKAI-{rng.randrange(1, 6):02d}",
            non_disclosure=rng.random() < 0.1,
            **({"outcome": "not_provided", "reason": rng.choice(["no-record", "system-error"])}
               if refused else {}),
        ))
    return out
