"""``kiroku alerts``: run the alert sender, list and replay dead letters (api/alerts.py)."""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from ledger.application import Ledger


def _open() -> Ledger:
    from ledger.config import Settings
    from ledger.errors import ConfigurationError
    from ledger.opening import open_ledger

    try:
        return open_ledger(Settings.from_env(), check=False)
    except ConfigurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@click.group()
def alerts() -> None:
    """Alerts to residents on each provision (docs/alerts.md)."""


@alerts.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def run(once: bool) -> None:
    """Follow the log into the outbox and deliver it (e-mail, webhooks) until SIGTERM/SIGINT.

    The same loop runs inside 'kiroku serve'; running both is safe (claims are exclusive)."""
    from api.alerts import Sender

    ledger = _open()
    sender = Sender(ledger)
    try:
        if once:
            click.echo(f"delivered {sender.run_once()}")
            return
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        sender.follow(stopping)
    finally:
        sender.close()
        ledger.close()


@alerts.command("dead-letters")
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def dead_letters(as_json: bool) -> None:
    """Messages that failed ALERT_MAX_ATTEMPTS times: id, channel, attempts, last error (no
    address, URL or resident)."""
    from projections import alerts as pa
    from projections.store import ViewStore

    ledger = _open()
    store = ViewStore(ledger.settings.database_url)
    try:
        with store.read() as session:
            rows = pa.dead_letters(session)
    finally:
        store.close()
        ledger.close()
    if as_json:
        click.echo(json.dumps({"dead_letters": rows}, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['channel']:7}  {row['kind']:7}  attempts={row['attempts']}"
                   f"  {row['created_at']}  {row['last_error'] or ''}")
    click.echo(f"{len(rows)} dead letter(s)", err=True)


@alerts.command("replay")
@click.argument("ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
def replay(ids: tuple[str, ...], everything: bool) -> None:
    """Queue dead letters again (same delivery id, fresh attempts). Exit 1 if an ID is not a
    dead letter."""
    from projections import alerts as pa
    from projections.errors import ProjectionError
    from projections.store import ViewStore

    if everything == bool(ids):
        click.echo("error: give dead-letter IDs or --all", err=True)
        sys.exit(2)
    ledger = _open()
    store = ViewStore(ledger.settings.database_url)
    try:
        with store.write() as session:
            count = pa.replay(session, None if everything else list(ids))
    except ProjectionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        store.close()
        ledger.close()
    click.echo(f"replayed {count}")
    if not everything and count < len(set(ids)):
        click.echo("error: some IDs are not dead letters", err=True)
        sys.exit(1)
