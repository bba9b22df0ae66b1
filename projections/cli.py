"""``kiroku projections …`` and ``kiroku report``: keep the views current, rebuild them from the
log, show where they stand, and export an agency's audit report.

Exit codes (as the rest of kiroku): 0 success, 1 a failed check (rebuilt views differ),
2 unusable input or set-up (bad arguments, no database, schema not upgraded).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ledger.errors import ConfigurationError, LedgerError
from projections.errors import ProjectionError, ViewsMissing

EXIT_FAILED = 1
EXIT_UNUSABLE = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"kiroku: {message}", err=True)
    sys.exit(code)


@contextmanager
def _opened() -> Iterator[Any]:
    """The ledger of $KIROKU_HOME / $KIROKU_DATABASE_URL, with user-facing errors."""
    from ledger.config import Settings
    from ledger.opening import open_ledger

    ledger = None
    try:
        ledger = open_ledger(Settings.from_env())
        yield ledger
    except (ViewsMissing, ConfigurationError) as exc:
        _fail(str(exc), EXIT_UNUSABLE)
    except ProjectionError as exc:
        _fail(f"{exc.code}: {exc}", EXIT_UNUSABLE)
    except LedgerError as exc:
        _fail(f"{exc.code}: {exc}", EXIT_FAILED)
    finally:
        if ledger is not None:
            ledger.close()


def _as_of(ledger: Any, text: str | None) -> int | None:
    from projections.history import resolve_as_of

    return None if text is None else resolve_as_of(ledger, text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def projections() -> None:
    """Read models built from the log: the residents' records and the agencies' audit views.

    Views live in the ledger's database (tables created by 'kiroku db upgrade') and are written
    exactly once: each batch of rows commits together with the view's position in the log.
    """


@projections.command()
@click.option("--as-of", "as_of", metavar="INDEX|TIME",
              help="Replay only up to this log index (inclusive) or RFC 3339 time, so the views "
                   "show what they showed then; 'kiroku projections run' continues from there.")
def rebuild(as_of: str | None) -> None:
    """Rebuild every view from log index 0 and check it against the incremental one.

    Without --as-of, the views are first brought up to date and digested (SHA-256 over every
    row); the rebuild replays to the same position and must end with identical digests, else the
    exit code is 1.
    """
    from projections.history import notification_of
    from projections.runner import runner_for

    with _opened() as ledger:
        runner = runner_for(ledger)
        index = _as_of(ledger, as_of)
        stop = None if index is None else notification_of(runner.store, index)
        with click.progressbar(length=ledger.log.max_notification_id() or 0,
                               label="rebuilding views", file=sys.stderr) as bar:
            result = runner.rebuild(stop=stop, progress=bar.update)
        rate = result.entries / result.seconds if result.seconds else 0.0
        click.echo(f"replayed {result.entries} entries in {result.seconds:.2f} s "
                   f"({rate:,.0f} entries/s)" + ("" if index is None else f", up to index {index}"))
        for name, digest in result.after.items():
            before = result.before.get(name) if result.before else None
            verdict = "" if before is None else (" identical" if before == digest else
                                                 f" DIFFERS from incremental {before}")
            click.echo(f"{name}: rebuilt {digest}{verdict}")
        if result.identical is False:
            _fail(f"rebuilt views differ from the incremental ones: {result.mismatched()}",
                  EXIT_FAILED)


@projections.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(as_json: bool) -> None:
    """Each view's position in the log and how far it lags behind."""
    from projections.runner import runner_for

    with _opened() as ledger:
        rows = runner_for(ledger).status()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'view':<10} {'position':>10} {'index':>10} {'lag':>8} {'lag (s)':>9}")
    for row in rows:
        index = "-" if row["index"] is None else row["index"]
        click.echo(f"{row['name']:<10} {row['position']:>10} {index:>10} {row['lag']:>8} "
                   f"{row['lag_seconds']:>9.3f}")


@projections.command()
@click.option("--once", is_flag=True, help="Catch up with everything committed, then exit.")
@click.option("--interval", default=0.1, show_default=True,
              help="Seconds between polls when the views are current.")
def run(once: bool, interval: float) -> None:
    """Follow the log and keep the views current (stop with Ctrl-C or SIGTERM).

    Safe to run several at once: a batch another runner committed first is not applied twice.
    """
    from projections.runner import runner_for

    with _opened() as ledger:
        runner = runner_for(ledger)
        if once:
            click.echo(f"applied {runner.catch_up()} entries")
            return
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        click.echo("following the log; Ctrl-C to stop", err=True)
        runner.follow(stopping, interval=interval)


@click.command()
@click.argument("agency")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the CSV and SVG files (default: ./report-AGENCY).")
@click.option("--as-of", "as_of", metavar="INDEX|TIME",
              help="The report as it stood at this log index (inclusive) or RFC 3339 time.")
@click.option("--json", "as_json", is_flag=True, help="Also print the whole report as JSON.")
def report(agency: str, out: Path | None, as_of: str | None, as_json: bool) -> None:
    """Audit report of AGENCY: counts per month × affair × outcome, per staff operator,
    refusals with reasons, and flagged anomalies; written as CSV files and SVG charts."""
    from projections.report import AgencyReport, write_charts, write_csv
    from projections.runner import catch_up

    with _opened() as ledger:
        index = _as_of(ledger, as_of)
        catch_up(ledger)
        data = AgencyReport.for_ledger(ledger).get(agency, as_of=index)
    folder = out or Path(f"report-{agency}")
    paths = write_csv(data, folder) + write_charts(data, folder)
    totals, found = data["totals"], data["anomalies"]
    click.echo(f"{data['agency']['name_en']} ({agency})"
               + ("" if index is None else f", as of index {index}"))
    click.echo(f"  as requester {totals['as_requester']}, as provider {totals['as_provider']}, "
               f"not provided {totals['not_provided']}, non-disclosed {totals['non_disclosed']}")
    click.echo(f"  anomalies: {found['off_hours']['count']} off-hours, "
               f"{len(found['operator_outliers'])} operator outliers, {len(found['bursts'])} "
               f"bursts, {len(found['repeated_lookups'])} repeated lookups")
    for path in paths:
        click.echo(f"  wrote {path}")
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
