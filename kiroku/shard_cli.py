"""``kiroku shard``: list, freeze and open the deployment's logs (docs/shards.md).

The shard list is the TOML file named by ``KIROKU_SHARDS``. Without it the deployment is the one
log of ``KIROKU_DATABASE_URL``/``KIROKU_LOG_ORIGIN``; ``kiroku shard open`` then writes the file,
listing that log first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ledger.config import Settings
from ledger.errors import ConfigurationError, LedgerError

if TYPE_CHECKING:
    from ledger.shards import ShardSpec

EXIT_REFUSED, EXIT_UNUSABLE = 1, 2


def _fail(message: str, code: int) -> None:
    click.echo(f"kiroku: {message}", err=True)
    sys.exit(code)


def _config_path() -> Path | None:
    value = os.environ.get("KIROKU_SHARDS")
    return Path(value) if value else None


def _specs(base: Settings) -> list[ShardSpec]:
    from ledger.shards import ShardSpec, load_config

    path = _config_path()
    if path is None or not path.exists():
        return [ShardSpec(base.origin, base.database_url)]
    return list(load_config(path))


@click.group()
def shard() -> None:
    """The deployment's logs (shards): one per period, each with its own origin (docs/shards.md).

    KIROKU_SHARDS names the TOML file listing them, oldest first; the last one takes appends."""


@shard.command("list")
def shard_list() -> None:
    """Each shard's origin, state (open/frozen), size and database."""
    from ledger.shards import opened, state_of

    base = Settings.from_env()
    try:
        for spec in _specs(base):
            with opened(spec.settings(base)) as ledger:
                state = state_of(ledger)
                click.echo(f"{state.origin}\t{'frozen' if state.frozen else 'open'}\t"
                           f"{state.size}\t{spec.database_url}")
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_UNUSABLE)


@shard.command("freeze")
@click.argument("origin", required=False)
@click.option("--yes", is_flag=True, help="Confirm: a frozen shard never takes another entry.")
def shard_freeze(origin: str | None, yes: bool) -> None:
    """Freeze ORIGIN (default: the open shard): append shard.frozen, seal its database against
    any later entry and sign the final checkpoint, printed on stdout. Then open the next shard
    ('kiroku shard open'). Running it again only prints the final checkpoint."""
    from ledger.shards import freeze, opened

    if not yes:
        _fail("freezing is final: run again with --yes", EXIT_UNUSABLE)
    base = Settings.from_env()
    try:
        specs = _specs(base)
        chosen = [s for s in specs if origin in (None, s.origin)]
        if not chosen:
            _fail(f"no shard {origin!r} in the shard list", EXIT_UNUSABLE)
        with opened(chosen[-1].settings(base)) as ledger:
            final = freeze(ledger)
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_UNUSABLE)
    except LedgerError as exc:
        _fail(f"{exc.code}: {exc}", EXIT_REFUSED)
    click.echo(final.note, nl=False)


@shard.command("open")
@click.argument("origin")
@click.option("--database-url", required=True,
              help="The new shard's own, empty database (migrated here).")
@click.option("--key-dir", type=click.Path(path_type=Path), default=None,
              help="The new shard's operator key directory (default: KIROKU_KEY_DIR).")
def shard_open(origin: str, database_url: str, key_dir: Path | None) -> None:
    """Open ORIGIN (e.g. kiroku.example/2027) as the shard after the last one listed, which must
    be frozen. The new log starts with shard.opened (naming the frozen shard's final
    checkpoint), the catalog, the agencies and their keys in force; residents' credentials,
    link codes, notice attributes and alert subscriptions are copied. Then the shard list
    (KIROKU_SHARDS) names it last: restart the service to serve it. Safe to run again."""
    from ledger.db import upgrade
    from ledger.keys import load_or_create
    from ledger.shards import ShardSpec, open_shard, opened, write_config

    path = _config_path()
    if path is None:
        _fail("set KIROKU_SHARDS to the shard list file (it is created if missing)", EXIT_UNUSABLE)
        return
    base = Settings.from_env()
    try:
        specs = _specs(base)
        if any(s.origin == origin for s in specs[:-1]):
            _fail(f"{origin} is already a shard", EXIT_UNUSABLE)
        again = specs[-1].origin == origin
        previous = specs[-2] if again else specs[-1]
        spec = ShardSpec(origin, database_url, key_dir)
        settings = spec.settings(base)
        upgrade(database_url)
        key, _ = load_or_create(settings.operator_key_path)
        with opened(previous.settings(base)) as before, \
                opened(settings, key) as new:
            report = open_shard(new, before)
        if not again:
            write_config(path, [*specs, spec])
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_UNUSABLE)
    except LedgerError as exc:
        _fail(f"{exc.code}: {exc}", EXIT_REFUSED)
    click.echo(f"opened {origin} after {report.previous['origin'] if report.previous else '-'} "
               f"(size {report.previous['size'] if report.previous else 0}): "
               f"{report.agencies} agencies, {report.keys} keys carried; copied "
               + ", ".join(f"{n} {t}" for t, n in report.copied.items()))
    click.echo(f"{path} lists it last; restart 'kiroku serve' to take appends there")
