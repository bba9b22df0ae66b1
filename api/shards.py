"""The service over a sharded deployment (docs/shards.md).

With ``KIROKU_SHARDS`` (a TOML file listing the shards, oldest first) the service opens every
shard's ledger; the open shard (the last) is the one every existing route writes to and reads
(``/v1/log/…`` = the open shard, so nothing existing changes), each shard is also served under
``/v1/shards/{slug}/log/…``, and the resident view and agency reports span all shards. Without
it the deployment is one log, served as before, and ``/v1/shards`` lists that one log.

In both cases appends are guarded: an append that fails because the log was frozen meanwhile
(``kiroku shard freeze`` while the service runs) answers ``shard-frozen`` instead of an error
about the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.services import Services
from api.settings import ApiSettings
from ledger.application import Ledger, Receipt
from ledger.shards import ShardSet, load_config, refusing_when_frozen


def open_shards(settings: ApiSettings, ledger: Ledger | None) -> ShardSet | None:
    """Every configured shard's ledger (``ledger``, when given, serves as the shard it is)."""
    if settings.shards is None:
        return None
    return ShardSet(load_config(settings.shards), settings.ledger_settings(), reuse=ledger)


class GuardedAppender:
    """The service's appender, answering ``shard-frozen`` for appends to a frozen log."""

    def __init__(self, inner: Any, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    def one(self, submission: Any) -> Receipt:
        return refusing_when_frozen(self.ledger, lambda: self.inner.one(submission))  # type: ignore[no-any-return]

    def batch(self, submissions: Sequence[Any]) -> list[Receipt]:
        return refusing_when_frozen(self.ledger, lambda: self.inner.batch(submissions))  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def attach(services: Services, shard_set: ShardSet | None) -> None:
    """Guard appends; over several shards, bring the frozen shards' views up to date once (they
    never change again) and read residents' records and reports across every shard."""
    services.appender = GuardedAppender(services.appender, services.ledger)  # type: ignore[assignment]
    if shard_set is None or len(shard_set.shards) < 2:
        return
    from api.services import Projections
    from projections.shards import ShardedReports, ShardedResidentRecords, ShardViews

    views = []
    for shard in shard_set.shards:
        if shard.ledger is services.ledger:
            found = services.projections
        else:
            found = Projections.load(shard.ledger)
            if found.catch_up is not None:
                found.catch_up(shard.ledger)
        views.append(ShardViews(shard.origin, shard.ledger, found.residents, found.reports))
    if all(v.residents is not None for v in views):
        services.projections.residents = ShardedResidentRecords(views)
    if all(v.reports is not None for v in views):
        services.projections.reports = ShardedReports(views)
