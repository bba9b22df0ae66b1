"""``kiroku agency rotate-key`` and ``kiroku operator …``: key rotation (docs/key-rotation.md).

Mounted on the main command line by ``kiroku/cli.py``. Exit codes as there: 0 success, 1 refused,
2 unusable input or set-up.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from pathlib import Path

import click

_DURATION = re.compile(r"(0|[1-9][0-9]{0,5})([dhms]?)")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "seconds"}


def parse_duration(value: str, option: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``45s`` or ``0``."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration such as 7d, 12h, 30m or 0",
                                 param_hint=option)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _new_key(generate: Path | None, key_file: Path | None) -> object:
    """The new private key: generated into GENERATE (0600, never over an existing file) or
    read from KEY_FILE."""
    from kiroku.cli import EXIT_UNUSABLE, _fail
    from ledger.keys import SigningKey

    if (generate is None) == (key_file is None):
        raise click.UsageError("give exactly one of --generate PATH or --key PATH")
    if generate is not None:
        if generate.exists():
            _fail(f"{generate} exists; refusing to overwrite a key", EXIT_UNUSABLE)
        key = SigningKey.generate()
        key.save(generate)
        return key
    assert key_file is not None
    return SigningKey.load(key_file)


@click.command("rotate-key")
@click.argument("code")
@click.option("--generate", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate the new key, write it here (0600) and register it.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Register the public half of this PEM private key file instead.")
@click.option("--old", "old_key_id", metavar="KEY_ID",
              help="The key to retire (default: the agency's only key without a revocation).")
@click.option("--overlap", default="7d", show_default=True,
              help="How long both keys are accepted (d, h, m or s).")
@click.option("--valid-from", help="RFC 3339 time from which the new key is valid (default: now).")
def agency_rotate_key(code: str, generate: Path | None, key_file: Path | None,
                      old_key_id: str | None, overlap: str, valid_from: str | None) -> None:
    """Rotate agency CODE's statement key: add the new key from --valid-from and revoke the old
    one at the end of --overlap, in one transaction. During the overlap statements signed by
    either key are accepted; after it the old key's are refused, and entries it signed before
    stay valid. Prints the new key id and both receipts."""
    from kiroku.cli import _errors, _open_ledger, _settings
    from ledger.encoding import parse_time
    from ledger.keys import SigningKey

    window = parse_duration(overlap, "--overlap")
    with _errors():
        since = parse_time(valid_from, field="--valid-from") if valid_from else None
        key = _new_key(generate, key_file)
        assert isinstance(key, SigningKey)
        ledger = _open_ledger(_settings())
        added, revoked = ledger.rotate_agency_key(code, key.public_bytes, old_key_id=old_key_id,
                                                  overlap=window, valid_from=since)
        click.echo(json.dumps({"key_id": key.key_id,
                               "retired_key_id": _revoked_key(ledger, revoked.index),
                               "key_added": added.to_json(), "key_revoked": revoked.to_json()},
                              ensure_ascii=False))
        ledger.close()


def _revoked_key(ledger: object, index: int) -> str | None:
    for line in ledger.export_entries([index]):  # type: ignore[attr-defined]
        payload = line["payload"]
        return str(payload["key_id"]) if payload else None
    return None


# -- the operator's key ---------------------------------------------------------------------------
@click.group()
def operator() -> None:
    """The log operator's own key: rotation with a window of dual-signed checkpoints
    (docs/key-rotation.md)."""


@operator.command("new-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def operator_new_key(path: Path) -> None:
    """Generate the next operator key into PATH (0600) and print its vkey, to announce out of
    band before 'kiroku operator rotate-key --key PATH'. Changes nothing in the log."""
    from kiroku.cli import EXIT_UNUSABLE, _fail, _settings
    from ledger.keys import SigningKey, vkey

    if path.exists():
        _fail(f"{path} exists; refusing to overwrite a key", EXIT_UNUSABLE)
    key = SigningKey.generate()
    key.save(path)
    click.echo(vkey(_settings().origin, key.public_bytes))


@operator.command("rotate-key")
@click.option("--generate", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate the new key and write it here (0600) first.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The new key, generated and announced beforehand (PEM private key).")
@click.option("--window", default="30d", show_default=True,
              help="How long checkpoints carry both keys' signatures (d, h, m or s).")
def operator_rotate_key(generate: Path | None, key_file: Path | None, window: str) -> None:
    """Replace the operator key. Appends an operator.key_rotated entry signed by the current
    key with the new key's proof of possession; from it on registrar entries are signed by the
    new key, and checkpoints by both keys until the window ends, then by the new key alone.
    The current key is kept as operator.retiring.pem for the window and the new key becomes
    operator.pem (restart or let running services pick it up at their next registry refresh).
    Announce the new vkey out of band before; run 'kiroku operator finish-rotation' after."""
    from kiroku.cli import EXIT_REFUSED, _errors, _fail, _open_ledger, _settings
    from ledger.keys import RETIRING_KEY_FILE, SigningKey, vkey

    length = parse_duration(window, "--window")
    settings = _settings()
    with _errors():
        new = _new_key(generate, key_file)
        assert isinstance(new, SigningKey)
        ledger = _open_ledger(settings)
        current = ledger.registry.operator_key_id
        if current == new.key_id:
            # A rotation already in the log (a run interrupted before the key files were
            # replaced): only the files are left to do.
            if ledger.operator_key.key_id != new.key_id:
                new.save(settings.operator_key_path)
            click.echo(f"the log already rotated to {new.key_id}; operator.pem holds it now")
            return
        old = ledger.operator_key
        retiring = settings.key_dir / RETIRING_KEY_FILE
        if retiring.exists() and SigningKey.load(retiring).key_id != old.key_id:
            _fail(f"{retiring} holds another key: a rotation is not finished; run "
                  "'kiroku operator finish-rotation' once its window has ended", EXIT_REFUSED)
        # Keep the old key beside the new one before the log names the new key, so that a
        # crash leaves both available (docs/key-rotation.md, "If a step fails").
        old.save(retiring)
        receipt = ledger.rotate_operator_key(new, window=length)
        new.save(settings.operator_key_path)
        click.echo(json.dumps(receipt.to_json(), ensure_ascii=False))
        click.echo(f"new vkey: {vkey(ledger.origin, new.public_bytes)}", err=True)
        click.echo(f"old vkey: {vkey(ledger.origin, old.public_bytes)} (co-signs checkpoints "
                   f"until {_retired_at(ledger)})", err=True)
        ledger.close()


def _retired_at(ledger: object) -> str:
    from ledger.encoding import format_time

    registry = ledger.registry  # type: ignore[attr-defined]
    ends = [k.retired_at for k in registry.operator_keys.values() if k.retired_at is not None]
    return format_time(max(ends)) if ends else "-"


@operator.command("finish-rotation")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def operator_finish_rotation(yes: bool) -> None:
    """After the rotation window has ended: delete operator.retiring.pem, the old private key.
    Verifiers holding only the old vkey would still accept anything it signs, so it must not
    outlive the window (destroy its backups too). Refused while the window is open."""
    from kiroku.cli import EXIT_REFUSED, _errors, _fail, _open_ledger, _settings
    from ledger.encoding import format_time, now_utc
    from ledger.keys import RETIRING_KEY_FILE

    settings = _settings()
    retiring = settings.key_dir / RETIRING_KEY_FILE
    with _errors():
        ledger = _open_ledger(settings)
        open_windows = ledger.registry.co_signing_keys(now_utc())
        if open_windows:
            ends = format_time(max(k.retired_at for k in open_windows if k.retired_at))
            _fail(f"the rotation window is open until {ends}; checkpoints still need the old "
                  "key's signature", EXIT_REFUSED)
        if not retiring.exists():
            click.echo("no retiring operator key: nothing to finish")
            return
        if not yes:
            click.confirm(f"delete the old operator key {retiring}?", abort=True)
        retiring.unlink()
        ledger.close()
    click.echo(f"deleted {retiring}; the log signs with {settings.operator_key_path} alone")
    sys.stdout.flush()
