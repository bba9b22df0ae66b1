"""``kiroku``: the command line. Exit codes: 0 success, 1 refused or failed check, 2 unusable
input or set-up (bad arguments, unreadable file, missing key or database)."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from ledger.config import Settings
from ledger.errors import BatchRejected, ConfigurationError, LedgerError

EXIT_REFUSED = 1
EXIT_UNUSABLE = 2


def _fail(message: str, code: int) -> None:
    click.echo(f"kiroku: {message}", err=True)
    sys.exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except BatchRejected as exc:
        for position, error in exc.errors:
            click.echo(f"kiroku: statement #{position}: {error.code}: {error}", err=True)
        _fail(f"{len(exc.errors)} statement(s) refused; nothing was appended", EXIT_REFUSED)
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_UNUSABLE)
    except LedgerError as exc:
        _fail(f"{exc.code}: {exc}", EXIT_REFUSED)


def _settings() -> Settings:
    return Settings.from_env()


def _open_ledger(settings: Settings, *, check: bool = True) -> Any:
    from ledger.opening import open_ledger

    try:
        return open_ledger(settings, check=check)
    except ConfigurationError as exc:
        _fail(str(exc), EXIT_UNUSABLE)


def _read_json_documents(source: IO[str]) -> list[Any]:
    """A JSON object, a JSON array of objects, or JSON Lines."""
    text = source.read()
    stripped = text.strip()
    if not stripped:
        raise click.UsageError("the input is empty")
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        value = None
        documents = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    documents.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    _fail(f"line {number}: not JSON ({exc.msg})", EXIT_UNUSABLE)
        return documents
    return value if isinstance(value, list) else [value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kiroku")
def main() -> None:
    """kiroku: a verifiable record of which agency provided whose information, and why.

    Data lives in $KIROKU_HOME (default ./var): the SQLite database kiroku.sqlite3 and keys/.
    Set KIROKU_DATABASE_URL=postgresql+psycopg://… for PostgreSQL.
    """


# -- set-up -----------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database schema (managed by Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the schema of $KIROKU_DATABASE_URL."""
    from ledger.db import upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database {settings.database_url} is at revision {revision}")


@db.command("backup")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The backup file to create (never overwritten).")
def db_backup(out: Path) -> None:
    """Copy the SQLite database while the service runs (SQLite's online backup API): one
    consistent snapshot that does not block appends. Copying the file itself is unsafe in WAL
    mode. For PostgreSQL use pg_basebackup with WAL archiving (docs/backup.md)."""
    from ledger.restore import backup_sqlite

    settings = _settings()
    with _errors():
        size = backup_sqlite(settings.database_url, out)
    click.echo(f"wrote {out} ({size:,} bytes); restore by putting it at the database's path "
               "with the service stopped")


@main.command()
def init() -> None:
    """Create the operator key (0600), the schema, and load the legal-basis catalog. Idempotent."""
    from ledger.catalog import load_catalog
    from ledger.db import upgrade
    from ledger.keys import load_or_create
    from ledger.linkcodes import key_path, load_or_create_key

    settings = _settings()
    _, created = load_or_create(settings.operator_key_path)
    upgrade(settings.database_url)
    with _errors():
        # The link-code key K_link (ledger/linkcodes.py): beside the operator key, 0600.
        link_key = key_path(settings.key_dir)
        _, link_created = load_or_create_key(link_key)
        ledger = _open_ledger(settings)
        loaded = ledger.load_catalog(load_catalog())
        click.echo(("created" if created else "found") + f" operator key {settings.operator_key_path}")
        click.echo(("created" if link_created else "found") + f" link-code key {link_key}")
        click.echo(f"catalog {'loaded at index ' + str(loaded.index) if loaded else 'already loaded'}")
        click.echo(f"vkey: {ledger.vkey}")
        ledger.close()


@main.command()
@click.option("--provisions", "-n", default=1000, show_default=True, help="Provisions to append.")
@click.option("--seed", default=1, show_default=True, help="Seed of the synthetic data.")
@click.option("--residents", default=2000, show_default=True, help="Size of the population.")
@click.option("--serve/--no-serve", default=True, show_default=True,
              help="Then serve the API with demo credentials (printed) until Ctrl-C.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=8000, show_default=True, help="Port to serve on.")
def demo(provisions: int, seed: int, residents: int, serve: bool, host: str, port: int) -> None:
    """Register real-looking agencies, append N signed provisions (N more on every run), then
    serve the API with a test resident CA, demo residents' certificates and an auditor key."""
    from ledger.catalog import load_catalog
    from ledger.db import upgrade
    from ledger.demo import run_demo
    from ledger.keys import load_or_create

    settings = _settings()
    load_or_create(settings.operator_key_path)
    upgrade(settings.database_url)
    with _errors():
        ledger = _open_ledger(settings)
        ledger.load_catalog(load_catalog())
        with click.progressbar(length=provisions, label="appending provisions",
                               file=sys.stderr) as bar:
            result = run_demo(ledger, provisions=provisions, seed=seed, residents=residents,
                              progress=bar.update)
        checkpoint = ledger.latest_checkpoint()
        click.echo(f"appended {result.appended} provisions; the log holds {result.tree_size} "
                   f"entries from {result.agencies} agencies")
        click.echo(f"database: {settings.database_url}")
        click.echo(f"operator vkey: {ledger.vkey}")
        if checkpoint is not None:
            click.echo("latest checkpoint:\n" + checkpoint.note)
        if serve:
            from api.serve import demo_banner, prepare_demo

            creds, agency_keys = prepare_demo(ledger, result.residents)
            banner = demo_banner(f"http://{host}:{port}", creds, agency_keys, ledger.vkey)
        ledger.close()
    if serve:
        from api.serve import run

        click.echo(banner)
        run(host, port, workers=1)


# -- agencies ---------------------------------------------------------------------------------
@main.group()
def agency() -> None:
    """Register agencies and their keys (operator only; each is a signed log entry)."""


@agency.command("register")
@click.argument("code")
@click.option("--name-ja", required=True)
@click.option("--name-en", required=True)
@click.option("--kind", required=True, help="municipality, ministry, insurer, pension, …")
@click.option("--role", "roles", multiple=True,
              help="A requester/provider role exactly as in the catalog (repeatable); "
              "required except for kind 'authority' (flags) and 'partner' (organisations an "
              "address change is forwarded to, docs/applications.md), which have none.")
@click.option("--registered-at", help="RFC 3339 time from which the agency's statements count "
              "(default: now).")
def agency_register(code: str, name_ja: str, name_en: str, kind: str, roles: tuple[str],
                    registered_at: str | None) -> None:
    """Register agency CODE."""
    from ledger.encoding import parse_time

    if not roles and kind not in ("authority", "partner"):
        _fail("give at least one --role (only authorities and partners have none)",
              EXIT_UNUSABLE)
    with _errors():
        since = parse_time(registered_at, field="--registered-at") if registered_at else None
        receipt = _open_ledger(_settings()).register_agency(
            code, name_ja=name_ja, name_en=name_en, kind=kind, roles=roles, registered_at=since)
        click.echo(json.dumps(receipt.to_json(), ensure_ascii=False))


@agency.command("add-key")
@click.argument("code")
@click.option("--generate", "generate", type=click.Path(dir_okay=False, path_type=Path),
              help="Generate a new key, write it here (0600) and register it.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Register the public half of this PEM private key file.")
@click.option("--valid-from", help="RFC 3339 time from which the key is valid (default: now).")
def agency_add_key(code: str, generate: Path | None, public_key: Path | None,
                   valid_from: str | None) -> None:
    """Register a statement key for agency CODE (key rotation: add the new, revoke the old)."""
    from ledger.encoding import parse_time
    from ledger.keys import SigningKey

    if (generate is None) == (public_key is None):
        raise click.UsageError("give exactly one of --generate PATH or --public-key PATH")
    with _errors():
        if generate is not None:
            if generate.exists():
                _fail(f"{generate} exists; refusing to overwrite a key", EXIT_UNUSABLE)
            key = SigningKey.generate()
            key.save(generate)
        else:
            assert public_key is not None
            key = SigningKey.load(public_key)
        since = parse_time(valid_from, field="--valid-from") if valid_from else None
        receipt = _open_ledger(_settings()).add_agency_key(code, key.public_bytes, valid_from=since)
        click.echo(json.dumps({"key_id": key.key_id, **receipt.to_json()}, ensure_ascii=False))


@agency.command("revoke-key")
@click.argument("code")
@click.argument("key_id")
@click.option("--at", "at", help="RFC 3339 effective time (default: now). Statements dated at "
              "or after it, or logged at or after it, are refused; a later time plans the end "
              "(an earlier one brings a planned end forward). At most 5 minutes in the past.")
def agency_revoke_key(code: str, key_id: str, at: str | None) -> None:
    """Revoke KEY_ID of agency CODE from --at on (docs/key-rotation.md). Entries it signed
    that the log holds stay valid; a compromised key is revoked with the default, now."""
    from ledger.encoding import parse_time
    from ledger.provision import CLOCK_SKEW

    with _errors():
        when = parse_time(at, field="--at") if at else None
        receipt = _open_ledger(_settings()).revoke_agency_key(code, key_id, revoked_at=when,
                                                              past_limit=CLOCK_SKEW)
        click.echo(json.dumps(receipt.to_json(), ensure_ascii=False))


# -- residents' credentials -------------------------------------------------------------------
@main.group()
def resident() -> None:
    """Map residents' login certificates to their pseudonyms (operator only; no My Number)."""


@resident.command("register")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subject", required=True, help="The resident's pseudonym (as in provisions).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="KIROKU_RESIDENT_CA", required=True,
              help="Trusted resident CA (PEM); default: $KIROKU_RESIDENT_CA, as the service uses.")
def resident_register(certificate: Path, subject: str, ca: Path) -> None:
    """Let the holder of CERTIFICATE log in as SUBJECT (after checking it against the CA)."""
    from api.errors import Unauthenticated
    from api.residents import (
        CredentialStore,
        check_certificate,
        fingerprint,
        load_trust_anchors,
        parse_certificate,
    )

    with _errors():
        try:
            cert = parse_certificate(certificate.read_text(encoding="ascii"))
            check_certificate(cert, load_trust_anchors(ca))
        except (Unauthenticated, UnicodeDecodeError) as exc:
            _fail(f"{certificate}: {exc}", EXIT_UNUSABLE)
        CredentialStore(_open_ledger(_settings())).register(cert, subject)
        click.echo(f"registered certificate {fingerprint(cert)}")


@resident.command("link-code")
@click.argument("agency_code", metavar="AGENCY")
@click.option("--subject", "subjects", required=True, multiple=True,
              help="The resident's pseudonym (repeatable for several residents).")
def resident_link_code(agency_code: str, subjects: tuple[str, ...]) -> None:
    """Issue AGENCY's link code (符号) for a resident and print it.

    What the network operator does when an agency enrols a resident: the code is derived from
    the link-code key for that agency alone (docs/log-format.md, "Provision payload, version
    2"), recorded in the registry and never logged. Idempotent: the same resident and agency
    always get the same code. One --subject prints the code; several print one JSON object per
    line, {"subject", "code"}, for delivery to the agency."""
    with _errors():
        codes = _open_ledger(_settings()).issue_link_codes(agency_code, list(subjects))
        if len(subjects) == 1:
            click.echo(codes[subjects[0]])
        else:
            for subject in dict.fromkeys(subjects):
                click.echo(json.dumps({"subject": subject, "code": codes[subject]},
                                      ensure_ascii=False))


@resident.command("revoke")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def resident_revoke(certificate: Path) -> None:
    """Stop CERTIFICATE from logging in; its sessions end within 30 seconds."""
    from api.errors import Unauthenticated
    from api.residents import CredentialStore, fingerprint, parse_certificate

    with _errors():
        try:
            cert = parse_certificate(certificate.read_text(encoding="ascii"))
        except (Unauthenticated, UnicodeDecodeError) as exc:
            _fail(f"{certificate}: {exc}", EXIT_UNUSABLE)
        CredentialStore(_open_ledger(_settings())).revoke(fingerprint(cert))
        click.echo(f"revoked certificate {fingerprint(cert)}")


@resident.command("reissue")
@click.option("--old", "old", required=True,
              help="The certificate to replace: its PEM file, or its SHA-256 fingerprint (hex, "
              "as 'resident register' printed it) when the card is gone.")
@click.option("--new", "new", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The new certificate (PEM) for the same resident.")
@click.option("--reason", type=click.Choice(["emigrated", "renewed", "lost", "other"]),
              default="emigrated", show_default=True,
              help="Why (kept in the operator's table, not in the log).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              envvar="KIROKU_RESIDENT_CA", required=True,
              help="Trusted resident CA (PEM); default: $KIROKU_RESIDENT_CA, as the service uses.")
def resident_reissue(old: str, new: Path, reason: str, ca: Path) -> None:
    """Replace a resident's certificate: revoke OLD, let NEW log in as the same resident.

    For a resident who emigrates (国外転出, docs/residents.md): the card's certificate is
    revoked, the new credential sees every record before and after, and provisions still
    recorded (pensions, for example) keep appearing. Sessions of OLD end within 30 seconds.
    """
    import re

    from api.errors import Unauthenticated
    from api.residents import (
        CredentialStore,
        check_certificate,
        fingerprint,
        load_trust_anchors,
        parse_certificate,
    )

    with _errors():
        if re.fullmatch(r"[0-9a-f]{64}", old):
            old_sha256 = old
        else:
            try:
                old_sha256 = fingerprint(parse_certificate(Path(old).read_text(encoding="ascii")))
            except (OSError, Unauthenticated, UnicodeDecodeError) as exc:
                _fail(f"--old: {exc}", EXIT_UNUSABLE)
        try:
            cert = parse_certificate(new.read_text(encoding="ascii"))
            check_certificate(cert, load_trust_anchors(ca))
        except (Unauthenticated, UnicodeDecodeError) as exc:
            _fail(f"{new}: {exc}", EXIT_UNUSABLE)
        new_sha256 = CredentialStore(_open_ledger(_settings())).reissue(old_sha256, cert, reason)
        click.echo(f"revoked certificate {old_sha256}")
        click.echo(f"registered certificate {new_sha256} to the same resident ({reason})")


# -- statements -------------------------------------------------------------------------------
@main.command()
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The agency's PEM private key.")
@click.option("--agency", "agency_code", help="Submitting agency code (default: the document's "
              "'agency', else the payload's provider).")
@click.option("--payload-version", type=click.Choice(["1", "2"]),
              help="Statement version: 2 (payloads name requester_code and provider_code) is "
              "the default; a payload that still names 'subject' is signed as 1 unless 2 is "
              "forced here.")
@click.option("--kind", default="provision", show_default=True,
              type=click.Choice(["provision", "provision.flagged", "application.received",
                                 "application.decided", "application.forwarded"]),
              help="provision.flagged: set or lift a flag (不開示, 自己情報提供不可) on a "
              "provision; payload {provision, flag, set, reason[, disclose_after]} "
              "(docs/log-format.md); pass --agency. application.*: a step of a resident's "
              "application, payload {application[, outcome, reason]}, to POST to "
              "/v1/applications/steps (docs/applications.md); pass --agency.")
@click.argument("source", type=click.File("r"), default="-")
def sign(key_file: Path, agency_code: str | None, payload_version: str | None,
         source: IO[str], kind: str = "provision") -> None:
    """Sign provision payloads as an agency; prints statements ready for 'kiroku append'.

    SOURCE (a file or - for stdin) holds a payload, a {"agency", "payload"} object, a JSON array
    of them, or JSON Lines. The procedure is documented in docs/signing.md.
    """
    from ledger.keys import SigningKey
    from ledger.signing import sign_statement

    with _errors():
        key = SigningKey.load(key_file)
        for document in _read_json_documents(source):
            if not isinstance(document, dict):
                _fail("each document must be a JSON object", EXIT_UNUSABLE)
            payload = document.get("payload", document)
            submitter = agency_code or document.get("agency") or payload.get("provider")
            if not isinstance(submitter, str):
                _fail("cannot tell the submitting agency; pass --agency", EXIT_UNUSABLE)
            if not isinstance(payload, dict):
                _fail("each payload must be a JSON object", EXIT_UNUSABLE)
            if kind != "provision":  # statement version 1: flags and applications are new
                click.echo(json.dumps(sign_statement(payload, kind=kind, agency=submitter,
                                                     key=key), ensure_ascii=False))
                continue
            # Version 2 unless the payload is a version-1 one (existing clients keep working).
            version = int(payload_version) if payload_version else (
                1 if "subject" in payload and "requester_code" not in payload else 2)
            if version == 2 and "subject" in payload:
                _fail("a version-2 payload names requester_code and provider_code, not "
                      "'subject' (docs/signing.md); or pass --payload-version 1", EXIT_UNUSABLE)
            signed = sign_statement(payload, kind="provision", agency=submitter, key=key,
                                    version=version)
            click.echo(json.dumps(signed, ensure_ascii=False))


@main.command()
@click.argument("source", type=click.File("r"), default="-")
def append(source: IO[str]) -> None:
    """Append signed statements from SOURCE (JSON, JSON array or JSON Lines; - for stdin).

    All provision statements are appended together or none is; flag statements
    (provision.flagged) follow them one by one, in order. Prints one receipt per line.
    """
    documents = _read_json_documents(source)

    def is_flag(document: Any) -> bool:
        statement = document.get("statement") if isinstance(document, dict) else None
        return isinstance(statement, dict) and statement.get("kind") == "provision.flagged"

    from ledger.shards import refusing_when_frozen

    with _errors():
        ledger = _open_ledger(_settings())
        # A frozen shard's database refuses the insert; say so instead of the database's words.
        receipts = refusing_when_frozen(ledger, functools.partial(
            ledger.append_batch, [d for d in documents if not is_flag(d)]))
        for receipt in receipts:
            click.echo(json.dumps(receipt.to_json(), ensure_ascii=False))
        for document in filter(is_flag, documents):
            flagged = refusing_when_frozen(ledger, functools.partial(ledger.append_flag, document))
            click.echo(json.dumps(flagged.to_json(), ensure_ascii=False))


# -- proxies (代理人; ledger/proxies.py) ---------------------------------------------------------
@main.group()
def proxy() -> None:
    """Proxy registrations: cancel one on an authority's decision (residents use the API)."""


@proxy.command("cancel")
@click.argument("registration_id")
@click.option("--reason", required=True,
              type=click.Choice(["court_order", "representation_ended", "principal_deceased",
                                 "set_in_error"]),
              help="Why the authority ends the representation (logged).")
def proxy_cancel(registration_id: str, reason: str) -> None:
    """Cancel proxy registration REGISTRATION_ID as an authority: a proxy.cancelled entry signed
    by the operator; the proxy loses access at once. Prints the receipt; exit 1 if there is no
    such registration in force."""
    with _errors():
        receipt = _open_ledger(_settings()).cancel_proxy(registration_id, by="authority",
                                                          reason=reason)
        click.echo(json.dumps(receipt.to_json(), ensure_ascii=False))


# -- the log ----------------------------------------------------------------------------------
@main.group()
def log() -> None:
    """Checkpoints, proofs and exports of the Merkle log."""


@log.command("key")
@click.option("--all", "every", is_flag=True, help="Every operator vkey the log has had, oldest "
              "first (a verifier starting from entry 0 needs the first).")
def log_key(every: bool) -> None:
    """Print the operator's verifier key (C2SP vkey) for checkpoints and registrar entries;
    during a key rotation window, one line per key whose signature checkpoints carry (the new
    key first). docs/key-rotation.md."""
    from ledger.keys import SigningKey, vkey
    from ledger.opening import open_ledger

    settings = _settings()
    with _errors():
        key = SigningKey.load(settings.operator_key_path)
        keys = [vkey(settings.origin, key.public_bytes)]
        try:
            ledger = open_ledger(settings, check=False)
        except ConfigurationError:
            pass  # no log yet: the key file is all there is
        else:
            keys = ledger.vkeys
            if every:
                keys = [vkey(settings.origin, k.public_key)
                        for k in ledger.registry.operator_keys.values()] or keys
            ledger.close()
        for line in keys:
            click.echo(line)


@log.command("checkpoint")
def log_checkpoint() -> None:
    """Sign and store a checkpoint of the current tree; print it (C2SP signed note)."""
    with _errors():
        click.echo(_open_ledger(_settings()).checkpoint().note, nl=False)


@log.command("completeness-note")
def log_completeness_note() -> None:
    """Print the latest signed completeness index note (docs/completeness.md)."""
    with _errors():
        note = _open_ledger(_settings()).completeness.latest_note()
        if note is None:
            _fail("no completeness index yet; run 'kiroku log checkpoint' first", EXIT_REFUSED)
        click.echo(note.note, nl=False)


@log.command("completeness-dump")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
def log_completeness_dump(out: Path | None) -> None:
    """Write the latest completeness index for auditors (JSON Lines: the signed note, then one
    line per resident index key with its value and records; no pseudonyms)."""
    with _errors():
        lines = _open_ledger(_settings()).completeness.dump()
        with (out.open("w") if out else contextlib.nullcontext(sys.stdout)) as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")


@log.command("completeness-key")
def log_completeness_key() -> None:
    """Print the completeness index secret (hex) to hand to an auditor: with it and an export,
    'kiroku verify EXPORT --completeness-key FILE --index-note FILE' recomputes the index.
    Anyone holding it can link index keys to pseudonyms they know: give it to auditors only."""
    from ledger.completeness import load_or_create_secret, secret_path

    with _errors():
        settings = _settings()
        _open_ledger(settings, check=False).close()
        click.echo(load_or_create_secret(secret_path(settings.key_dir)).hex())


@log.command("link-code-dump")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (created or replaced with mode 0600).")
def log_link_code_dump(out: Path) -> None:
    """Write the link-code registry for an auditor (JSON Lines {"agency", "code", "subject"}):
    with it, 'kiroku verify EXPORT --completeness-key FILE --link-codes FILE …' resolves the
    export's version-2 provisions. Personal data: it links every agency's codes to pseudonyms.
    Give it to auditors only and handle it like the completeness key (docs/completeness.md)."""
    import os

    with _errors():
        ledger = _open_ledger(_settings())
        tmp = out.with_name(out.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover temporary file keeps its own mode otherwise
        count = 0
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for row in ledger.link_codes.dump():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += 1
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        click.echo(f"wrote {count} link codes to {out} (mode 0600; for auditors only)", err=True)


@log.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@click.option("--start", default=0, show_default=True)
@click.option("--end", type=int, help="Exclusive end index (default: tree size).")
def log_export(out: Path | None, start: int, end: int | None) -> None:
    """Export entries as JSON Lines (docs/log-format.md) for offline verification."""
    with _errors():
        ledger = _open_ledger(_settings())
        end = ledger.tree_size() if end is None else end
        handle = out.open("w", encoding="utf-8") if out else sys.stdout
        try:
            with click.progressbar(length=max(end - start, 0), label="exporting", file=sys.stderr,
                                   ) as bar:
                for line in ledger.export(start, end):
                    # Canonical (sorted, compact) lines let verifiers hash payloads straight
                    # from the text instead of re-serialising them.
                    handle.write(json.dumps(line, ensure_ascii=False, sort_keys=True,
                                            separators=(",", ":")) + "\n")
                    bar.update(1)
        finally:
            if out:
                handle.close()


@log.command("tiles")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write (created if missing; may hold an earlier run's tiles).")
def log_tiles(out: Path) -> None:
    """Write the log as static C2SP tlog-tiles files for the latest signed checkpoint.

    OUT gets checkpoint, tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>] (docs/log-format.md,
    "Tiles"), ready for any static web server or object store. Incremental: only tiles that are
    new or grew since the last run are written, each atomically, and the checkpoint last.
    """
    from ledger.tiles import write_tiles

    with _errors():
        ledger = _open_ledger(_settings())
        latest = ledger.latest_checkpoint()
        with click.progressbar(length=latest.size if latest else 0, label="writing tiles", file=sys.stderr) as bar:
            report = write_tiles(ledger, out, progress=bar.update)
        since = "" if report.previous_size is None else f" (was {report.previous_size})"
        click.echo(f"checkpoint size {report.tree_size}{since}: wrote {report.tiles_written} "
                   f"tiles ({report.tile_bytes:,} bytes) and {report.bundles_written} entry "
                   f"bundles ({report.bundle_bytes:,} bytes); {report.already_present} already "
                   f"present; checkpoint {'written' if report.checkpoint_written else 'unchanged'}")
        ledger.close()


@log.group("prove")
def log_prove() -> None:
    """RFC 9162 proofs as JSON."""


@log_prove.command("inclusion")
@click.argument("index", type=int)
@click.option("--size", type=int, help="Tree size (default: current).")
def prove_inclusion(index: int, size: int | None) -> None:
    """Inclusion proof of leaf INDEX (0-based)."""
    with _errors():
        click.echo(json.dumps(_open_ledger(_settings()).prove_inclusion(index, size)))


@log_prove.command("consistency")
@click.argument("old", type=int)
@click.argument("new", type=int)
def prove_consistency(old: int, new: int) -> None:
    """Consistency proof between tree sizes OLD and NEW."""
    with _errors():
        click.echo(json.dumps(_open_ledger(_settings()).prove_consistency(old, new)))


@log_prove.command("record")
@click.argument("record_id")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: stdout); by convention NAME.tlog-proof.")
def prove_record(record_id: str, out: Path | None) -> None:
    """Offline proof of one record (C2SP tlog-proof): RECORD_ID is a provision id (or a log
    index). The file holds the entry's leaf, payload and salt, its inclusion proof and the
    checkpoint; with KIROKU_WITNESSES set, the newest checkpoint cosigned by
    KIROKU_WITNESS_QUORUM of them (refused until there is one). Check it with no network:
    'kiroku verify proof FILE --vkey … [--witness … --quorum K]'. It carries the record's
    payload: keep it as private as the record."""
    import os
    from uuid import UUID

    from api.settings import parse_witnesses
    from api.witnessing import checkpoint_for_proof
    from ledger.tlogproof import entry_index, entry_proof

    try:
        witnesses = parse_witnesses(os.environ.get("KIROKU_WITNESSES", ""))
        quorum = int(os.environ.get("KIROKU_WITNESS_QUORUM") or len(witnesses))
    except ValueError as exc:
        _fail(f"KIROKU_WITNESSES / KIROKU_WITNESS_QUORUM: {exc}", EXIT_UNUSABLE)
    with _errors():
        ledger = _open_ledger(_settings())
        if record_id.isdigit():
            index = int(record_id)
        else:
            try:
                index = entry_index(ledger, UUID(record_id))
            except ValueError:
                _fail(f"{record_id!r} is neither a provision id nor a log index", EXIT_UNUSABLE)
        if index >= ledger.tree_size():
            _fail(f"the log has no entry {index}", EXIT_REFUSED)
        covering = checkpoint_for_proof(ledger, witnesses, quorum, index)
        if covering is None:
            what = (f"cosigned by {quorum} witness(es)" if witnesses else "signed")
            _fail(f"no checkpoint {what} covers entry {index} yet; try again shortly",
                  EXIT_REFUSED)
            return
        text = entry_proof(ledger, index, covering[0], covering[1])
        if out is None:
            click.echo(text, nl=False)
        else:
            out.write_text(text, encoding="utf-8")
            click.echo(f"wrote the proof of entry {index} at size {covering[1]} to {out}",
                       err=True)
        ledger.close()


@log.command("erase")
@click.option("--before", required=True, help="Erase payloads of provisions logged before this "
              "RFC 3339 time (retention under the Act: 7 years).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def log_erase(before: str, yes: bool) -> None:
    """Erase payloads (personal data) past retention; leaves, proofs and signatures stay valid.

    The same as 'kiroku retention apply --before TIME'."""
    _apply_retention(before, dry_run=False, yes=yes, compact=None, as_json=False)


@log.command("fsck")
def log_fsck() -> None:
    """Rebuild the tree from every stored leaf and compare with stored nodes and checkpoints."""
    from ledger.fsck import fsck

    with _errors():
        ledger = _open_ledger(_settings(), check=False)
        with click.progressbar(length=ledger.tree_size(), label="checking", file=sys.stderr) as bar:
            problems = fsck(ledger, progress=bar.update)
        for problem in problems:
            click.echo(problem)
        if problems:
            sys.exit(EXIT_REFUSED)
        click.echo(f"ok: {ledger.tree_size()} entries, chain and tree intact")


@log.command("import")
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vkey", "vkeys", multiple=True, required=True,
              help="The operator's vkey the log started with (or a file holding it); repeat "
              "for several keys of one log. The operator key in $KIROKU_KEY_DIR must be the "
              "log's current one: this key, or the one the last operator.key_rotated entry "
              "brought in.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A checkpoint the source log signed (e.g. its latest): the export must hold "
              "exactly its entries and give its root.")
@click.option("--workers", type=int, help="Verifier processes (default: one per core).")
def log_import(export: Path, vkeys: tuple[str, ...], checkpoint: Path | None,
               workers: int | None) -> None:
    """Rebuild the log from an export (a logical backup, docs/backup.md) into an empty database.

    The export is first verified in full by the independent verifier (chain, signatures,
    commitments, key validity; the checkpoint's signature, size and root when given): a bad
    entry is refused with its index (exit 1) and nothing is written. Then every entry is
    written again with its exact leaf bytes, one transaction for all of it, and a checkpoint
    of the imported size is signed: the same root as the source, so verifiers and witnesses
    see the same log continue. Erased payloads stay erased. Run 'kiroku db upgrade' on a new
    database first (not 'kiroku init': it appends the catalog), with the operator key in
    $KIROKU_KEY_DIR. Not in an export: resident credentials, link codes, proxies' table,
    witness state (docs/backup.md).
    """
    from ledger.restore import RestoreError, TargetNotEmpty, import_export, log_is_empty
    from verifier.cli import load_vkeys
    from verifier.errors import UnusableInput, VerificationError

    settings = _settings()
    try:
        verifiers = load_vkeys(list(vkeys))
    except UnusableInput as exc:
        _fail(str(exc), EXIT_UNUSABLE)
    if verifiers[0].name != settings.origin:
        _fail(f"the vkey names the log {verifiers[0].name!r}, this home's origin is "
              f"{settings.origin!r}; set KIROKU_LOG_ORIGIN={verifiers[0].name}", EXIT_UNUSABLE)
    with _errors():
        ledger = _open_ledger(settings)
        if not log_is_empty(ledger):
            _fail("the database already holds a log; import into a new, empty database "
                  "('kiroku db upgrade' on a fresh one, without 'kiroku init')", EXIT_UNUSABLE)
        try:
            root = _verify_for_import(export, checkpoint, verifiers, workers)
        except UnusableInput as exc:
            _fail(str(exc), EXIT_UNUSABLE)
        except VerificationError as exc:
            where = f"index {exc.index}: " if exc.index is not None else ""
            _fail(f"refused: {where}{exc.kind}: {exc}; nothing was imported", EXIT_REFUSED)
        try:
            with export.open("rb") as handle:
                lines = sum(1 for _ in handle)
            with click.progressbar(length=lines, label="importing", file=sys.stderr) as bar:
                report = import_export(ledger, export, root, verifiers[0].public_key,
                                       progress=bar.update)
        except TargetNotEmpty as exc:
            _fail(str(exc), EXIT_UNUSABLE)
        except RestoreError as exc:
            _fail(f"{exc.code}: {exc}", EXIT_REFUSED)
        click.echo(f"imported {report.entries} entries ({report.erased} erased by retention); "
                   f"root {report.root.hex()}, the verified one")
        ledger.close()
        if report.checkpoint_note is None:
            _fail(f"no checkpoint signed yet: {report.checkpoint_problem}; restore it (see "
                  "docs/backup.md), then run 'kiroku log checkpoint'", EXIT_REFUSED)
        click.echo(report.checkpoint_note, nl=False)


def _verify_for_import(export: Path, checkpoint: Path | None, verifiers: list[Any],
                       workers: int | None) -> bytes:
    """Verify the export with the independent verifier; return its root (VerificationError on
    the first bad entry)."""
    from verifier.errors import UnusableInput
    from verifier.export import export_lines, read_checkpoint, verify_export_file
    from verifier.keys import KeyRegistry
    from verifier.progress import Progress
    from verifier.sequence import LogState, Lookahead, check_run

    if checkpoint is not None:
        try:
            text = checkpoint.read_bytes()
        except OSError as exc:
            raise UnusableInput(f"cannot read checkpoint {checkpoint}: {exc}") from None
        size = read_checkpoint(text, verifiers)[0].size
        progress = Progress(size)
        try:
            return verify_export_file(str(export), text, verifiers, workers=workers,
                                      progress=progress).checkpoint.root
        finally:
            progress.close()
    # No checkpoint: the reference check in order (chain, keys, signatures, commitments); the
    # root it computes is what the import must reproduce.
    state = LogState(KeyRegistry(verifiers[0].public_key, [v.public_key for v in verifiers[1:]]))
    progress = Progress(None)

    def counted(lines: Iterator[bytes]) -> Iterator[bytes]:
        for number, line in enumerate(lines, 1):
            if number % 1000 == 0:
                progress(number)
            yield line

    try:
        with export.open("rb") as handle:
            check_run(state, Lookahead(counted(export_lines(handle))), check_signatures=True)
    finally:
        progress.close()
    return state.compact.root()


# -- retention --------------------------------------------------------------------------------
@main.group()
def retention() -> None:
    """Erase provision payloads at the end of the retention period (docs/residents.md)."""


@retention.command("apply")
@click.option("--before", help="Erase payloads of entries logged before this RFC 3339 time "
              "(default: now minus $KIROKU_RETENTION_YEARS, 7 years by default).")
@click.option("--dry-run", is_flag=True, help="Report what would be erased; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--compact/--no-compact", default=None,
              help="Rewrite the database's storage so no old copy of an erased payload stays in "
              "free space (default: when this run erased something; SQLite VACUUM, PostgreSQL "
              "VACUUM FULL, which locks the tables while it runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def retention_apply(before: str | None, dry_run: bool, yes: bool, compact: bool | None,
                    as_json: bool) -> None:
    """Erase the payloads and salts of provisions logged before the cut-off, rebuild the views
    without them and compact the storage. Entries, chain, proofs and signatures stay valid;
    'kiroku verify' reports the entries as erased by retention. Idempotent: a second run erases
    nothing and finishes what an interrupted run left (views, compaction). The report holds
    counts and log indices only, never personal data."""
    _apply_retention(before, dry_run=dry_run, yes=yes, compact=compact, as_json=as_json)


@contextmanager
def _terminal_progress(length: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; silent otherwise, so that scripts and
    log files get only the report."""
    if sys.stderr.isatty():
        with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
            yield bar.update
    else:
        yield lambda _n: None


def _apply_retention(before: str | None, *, dry_run: bool, yes: bool, compact: bool | None,
                     as_json: bool) -> None:
    from ledger.encoding import format_time, parse_time
    from ledger.retention import (
        compact_storage,
        erase,
        retention_cutoff,
        retention_years,
        views_hold_erased,
    )

    with _errors():
        years = retention_years()
        period_cutoff = retention_cutoff(years)
        cutoff = parse_time(before, field="--before") if before else period_cutoff
        early = cutoff > period_cutoff
        warning = (f"{format_time(cutoff)} is within the {years}-year retention period: records "
                   f"logged after {format_time(period_cutoff)} are still to be kept"
                   if early else "")
        if not yes and not dry_run:
            click.confirm(("warning: " + warning + "; " if early else "")
                          + f"erase every provision payload logged before {format_time(cutoff)}?",
                          abort=True, err=True)
        from projections.schema import metadata as views

        # Every view table is rewritten by the rebuild; those with an ``idx`` hold records.
        view_tables = sorted(views.tables)
        record_tables = [name for name, table in sorted(views.tables.items())
                         if "idx" in table.c]
        ledger = _open_ledger(_settings())
        with _terminal_progress(ledger.tree_size(), "erasing payloads") as step:
            report = erase(ledger, cutoff, dry_run=dry_run, progress=step)
        rebuilt = False
        compacted: list[str] = []
        if not dry_run:
            if report.erased or views_hold_erased(ledger, report.horizon, record_tables):
                from projections.runner import runner_for

                # The views held those records too: rebuild them from the erased log.
                with _terminal_progress(ledger.tree_size(), "rebuilding views") as step:
                    runner_for(ledger).reproject(progress=step)
                rebuilt = True
            # Rebuilt views mean payloads were erased, by this run or an interrupted one.
            if compact if compact is not None else (bool(report.erased) or rebuilt):
                if sys.stderr.isatty():
                    click.echo("compacting storage", err=True)
                compacted = compact_storage(ledger, view_tables)
        # The completeness index lists records by log index and keyed pseudonym until the next
        # checkpoint over new entries moves it past the erased ones (docs/residents.md).
        note = ledger.completeness.latest_note()
        index_pending = (report.horizon is not None and note is not None
                         and note.retained_from <= report.horizon)
        ledger.close()
    if as_json:
        click.echo(json.dumps({**report.to_json(), "retention_years": years,
                               "within_period": early, "views_rebuilt": rebuilt,
                               "compacted": compacted,
                               "completeness_index_pending": index_pending}))
        return
    verb = "would erase" if dry_run else "erased"
    click.echo(f"{verb} {report.erased} payload(s)")
    click.echo(f"  logged before {format_time(cutoff)} (retention period {years} years)")
    for kind, count in sorted(report.kinds.items()):
        click.echo(f"  {kind}: {count}")
    if report.ranges:
        click.echo("  log indices: " + ", ".join(
            str(a) if a == b else f"{a}-{b}" for a, b in report.ranges))
    if report.already_erased:
        click.echo(f"{report.already_erased} payload(s) were already erased")
    if rebuilt:
        click.echo("views rebuilt without the erased records")
    if compacted:
        click.echo("storage compacted: " + ", ".join(compacted))
    if index_pending:
        click.echo("the completeness index still lists the erased records until the next "
                   "checkpoint over new entries; then run 'kiroku retention apply --compact'")
    if early:
        click.echo(f"kiroku: warning: {warning}", err=True)


# -- the service ------------------------------------------------------------------------------
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, help="Worker processes (uvicorn).")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (docs/api.md). Outside demo mode (KIROKU_DEMO=1) it refuses to start
    without KIROKU_SESSION_SECRET, KIROKU_RESIDENT_CA and KIROKU_AUDITOR_KEYS."""
    from pydantic import ValidationError

    from api.serve import check_settings, run

    try:
        check_settings()
    except ValidationError as exc:
        _fail("; ".join(str(e["msg"]) for e in exc.errors()), EXIT_UNUSABLE)
    settings = _settings()
    with _errors():
        _open_ledger(settings).close()  # schema present, key readable, checkpoint re-verified
    run(host, port, workers)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                "help_option_names": []}, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def client(args: tuple[str, ...]) -> None:
    """Call the API as a resident, an agency or an auditor (see 'kiroku client --help')."""
    from kiroku.client import main as client_main

    sys.exit(client_main(list(args)))


# -- independent verification -----------------------------------------------------------------
_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@main.command(context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def verify(args: tuple[str, ...]) -> None:
    """Verify an export, a proof or checkpoints offline (see 'kiroku verify --help')."""
    from verifier.cli import main as verifier_main

    sys.exit(verifier_main(list(args)))


@main.command(context_settings=_PASSTHROUGH, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def monitor(args: tuple[str, ...]) -> None:
    """Watch a log's checkpoints for rollback, forks and staleness (see 'kiroku monitor --help')."""
    from verifier.cli import main as verifier_main

    sys.exit(verifier_main(["monitor", *args]))


# -- projections (read models) ----------------------------------------------------------------
from projections.cli import projections as _projections
from projections.cli import report as _report

main.add_command(_projections)
main.add_command(_report)

# -- witnessing (C2SP tlog-witness; the witness is an independent party) -----------------------
from witness.cli import witness as _witness

main.add_command(_witness)

# -- key rotation (docs/key-rotation.md) -------------------------------------------------------
from kiroku.keys_cli import agency_rotate_key as _agency_rotate_key
from kiroku.keys_cli import operator as _operator

agency.add_command(_agency_rotate_key)
main.add_command(_operator)

# -- alerts on provisions (docs/alerts.md) -----------------------------------------------------
from api.alerts_cli import alerts as _alerts

main.add_command(_alerts)

# -- sharded logs (docs/shards.md) ---------------------------------------------------------------
from kiroku.shard_cli import shard as _shard

main.add_command(_shard)
