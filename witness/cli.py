"""``kiroku witness``: make a witness key, show its vkey, and run the witness service."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_UNUSABLE = 2


def _fail(message: str) -> None:
    click.echo(f"kiroku witness: {message}", err=True)
    sys.exit(EXIT_UNUSABLE)


@click.group("witness")
def witness() -> None:
    """Run an independent witness (C2SP tlog-witness) that cosigns consistent checkpoints.

    See docs/witness.md: the witness keeps its own key and state and needs nothing of the log
    but the log's origin and vkey.
    """


@witness.command("init")
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new private key (mode 0600; never overwritten).")
@click.option("--name", required=True,
              help="The witness's key name, e.g. witness.example.org/w1 (no spaces or '+').")
def witness_init(key_file: Path, name: str) -> None:
    """Generate a witness key (Ed25519, cosignature/v1) and print its vkey."""
    from witness.keys import WitnessKey, WitnessKeyError

    try:
        key = WitnessKey.generate(name)
        key.save(key_file)
    except WitnessKeyError as exc:
        _fail(str(exc))
    click.echo(key.vkey)


@witness.command("key")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The witness's private key file.")
def witness_key(key_file: Path) -> None:
    """Print the witness's vkey (name+keyid+base64(0x04 || public key)) for log operators."""
    from witness.keys import WitnessKey, WitnessKeyError

    try:
        click.echo(WitnessKey.load(key_file).vkey)
    except WitnessKeyError as exc:
        _fail(str(exc))


@witness.command("serve")
@click.option("--state", "state_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory of the witness's state (latest cosigned checkpoint per log).")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The witness's private key file (from 'kiroku witness init').")
@click.option("--log", "logs", multiple=True, required=True, metavar="ORIGIN=VKEY",
              help="A log to witness: its origin and its operator vkey (repeatable).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8380, show_default=True, help="Port to listen on.")
def witness_serve(state_dir: Path, key_file: Path, logs: tuple[str, ...], host: str,
                  port: int) -> None:
    """Serve POST /add-checkpoint and GET /<origin hash>/checkpoint (C2SP tlog-witness)."""
    from verifier.errors import VerificationError
    from witness.keys import WitnessKeyError
    from witness.server import open_witness, serve

    try:
        instance = open_witness(state_dir, key_file, logs)
    except (WitnessKeyError, VerificationError, ValueError, OSError) as exc:
        _fail(str(exc))
    click.echo(f"witness {instance.key.vkey} on http://{host}:{port} for "
               f"{', '.join(sorted(instance.logs))}", err=True)
    serve(instance, host, port)
