"""After retention, a guessed payload cannot be confirmed from anything kiroku left behind.

The operator runs the real commands (init, appends, views, checkpoint, ``retention apply``,
export, verify, views rebuild) and then everything that remains is searched: every table of the
database through SQL, the database's own files byte for byte (SQLite's file and write-ahead log;
PostgreSQL's relation files, which keep rewritten rows until they are compacted), every file
under the home directory, the export, what each command printed and what kiroku logged.

"Confirm" is taken literally: the erased record's true payload is known to the test; its
commitment is recomputed with every 32-byte value still stored anywhere that could be a salt,
and none gives the signed commitment; the payload's distinctive values (request id, staff
operator id, pseudonym) appear nowhere, and neither does the completeness index key an index
secret holder would derive from the pseudonym. SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from kiroku.cli import main
from ledger import retention
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres",
                 marks=pytest.mark.skipif(not postgres_available(), reason=PG_SKIP_REASON)),
]
SUBJECT = "subj-QZ7PRIVACYKEEPSAFE9"
ERASED = [{"request_id": f"RQ-7f3a9c-{n}-UNIQUE", "operator": f"OPR-ZX81-{n}-UNIQUE"}
          for n in range(3)]
_B64_32 = re.compile(rb"[A-Za-z0-9+/]{43}=")


class Transcript:
    """Every byte the commands printed, and every record kiroku's loggers emitted."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.printed: list[bytes] = []

    def run(self, *args: str, input: str | None = None) -> str:
        result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
        self.printed += [result.stdout_bytes, result.stderr_bytes or b""]
        assert result.exit_code == 0, result.output
        return result.stdout

    def logged(self) -> bytes:
        return "\n".join(r.getMessage() + repr(r.args) for r in self.caplog.records).encode()


def payload(n: int, subject: str = SUBJECT) -> dict[str, Any]:
    values = ERASED[n] if n < len(ERASED) else {"request_id": f"later-{n}", "operator": "op-x"}
    return {"request_id": values["request_id"], "subject": subject, "requester": "JHIA",
            "provider": "131121", "basis": "2-4", "affair": "2", "items": ["住民票関係情報"],
            "requested_at": "2026-01-05T01:00:00Z", "provided_at": "2026-01-05T01:01:00Z",
            "outcome": "provided", "reason": None, "non_disclosure": False,
            "operator": values["operator"]}


def commitment(salt: bytes, body: dict[str, Any]) -> str:
    """docs/log-format.md: b64(SHA-256("kiroku/commitment/v1\\n" ‖ salt ‖ JCS(payload)))."""
    digest = hashlib.sha256(b"kiroku/commitment/v1\n" + salt + rfc8785.dumps(body)).digest()
    return base64.b64encode(digest).decode()


def table_dump(url: str) -> tuple[bytes, list[bytes]]:
    """Every value of every table (SQL), and every 32-byte binary value among them."""
    engine = create_engine(url)
    parts: list[bytes] = []
    blobs: list[bytes] = []
    with engine.connect() as connection:
        for name in inspect(engine).get_table_names():
            # Raw rows, no type processing: what is stored, whatever the column claims.
            for row in connection.exec_driver_sql(f'SELECT * FROM "{name}"'):
                for value in row:
                    if isinstance(value, memoryview | bytes):
                        raw = bytes(value)
                        parts.append(raw)
                        if len(raw) == 32:
                            blobs.append(raw)
                    else:
                        parts.append(str(value).encode())
    engine.dispose()
    return b"\n".join(parts), blobs


def storage_files(url: str) -> dict[str, bytes]:
    """The database's files as stored, by name: SQLite's file, WAL and shared memory;
    PostgreSQL's relation files (tables, their TOAST and indexes) read by the server
    (the tests' user is a superuser)."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*")}
    engine = create_engine(url)
    found = {}
    with engine.connect() as connection:
        connection.execute(text("CHECKPOINT"))  # dirty pages reach the files
        for name, path in connection.execute(text(
                "SELECT c.relname, pg_relation_filepath(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND c.relkind IN ('r', 't', 'i') AND pg_relation_filepath(c.oid) IS NOT NULL")):
            size = connection.execute(text("SELECT (pg_stat_file(:p, true)).size"),
                                      {"p": path}).scalar()
            if size:
                found[name] = bytes(connection.execute(
                    text("SELECT pg_read_binary_file(:p)"), {"p": path}).scalar_one())
    engine.dispose()
    return found


def home_files(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    make = sqlite_database if request.param == "sqlite" else postgres_database
    with make() as url:
        yield url


def test_an_erased_payload_cannot_be_confirmed_from_anything_left(
        database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    home = tmp_path / "var"
    monkeypatch.setenv("KIROKU_HOME", str(home))
    monkeypatch.setenv("KIROKU_DATABASE_URL", database)
    monkeypatch.chdir(tmp_path)
    for name in ("kiroku", "ledger", "projections", "api", "verifier"):
        caplog.set_level(logging.DEBUG, logger=name)
    cli = Transcript(caplog)
    cli.run("init")
    for code, name, role in (("JHIA", "全国健康保険協会", "全国健康保険協会"),
                             ("131121", "世田谷区", "市町村長")):
        cli.run("agency", "register", code, "--name-ja", name, "--name-en", code, "--kind",
                "insurer", "--role", role, "--registered-at", "2025-01-01T00:00:00Z")
    key = tmp_path / "setagaya.pem"
    cli.run("agency", "add-key", "131121", "--generate", str(key), "--valid-from",
            "2025-01-01T00:00:00Z")
    signed_text = cli.run("sign", "--key", str(key), "-",
                          input="\n".join(json.dumps(payload(n)) for n in range(3)))
    signed = [json.loads(line) for line in signed_text.splitlines()]
    receipts = [json.loads(line) for line in cli.run("append", "-", input=signed_text).splitlines()]
    cli.run("projections", "run", "--once")
    cli.run("log", "checkpoint")
    distinctive = [SUBJECT.encode()] + [v.encode() for values in ERASED for v in values.values()]
    salts = [base64.b64decode(s["salt"]) for s in signed]
    dump, _ = table_dump(database)
    assert all(value in dump for value in distinctive)  # they were there: the search can hit
    assert all(commitment(salt, payload(n)) == signed[n]["statement"]["commitment"]
               for n, salt in enumerate(salts))
    # Keep nothing of the appends' transcript: only what is written from here on is searched.
    cli.printed.clear()
    caplog.clear()

    # Seven years and a day later, the operator applies retention.
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 7) + timedelta(days=1)
    monkeypatch.setattr(retention, "now_utc", lambda: later)
    report = json.loads(cli.run("retention", "apply", "--yes", "--json"))
    assert report["erased"] == 3
    assert report["ranges"] == [[receipts[0]["index"], receipts[-1]["index"]]]
    # The service goes on: a record of someone else, a checkpoint (which also moves the
    # completeness index past the erased records), exports, a rebuild, an independent check.
    cli.run("append", "-", input=cli.run("sign", "--key", str(key), "-",
                                        input=json.dumps(payload(9, "subj-SOMEONEELSE0000000"))))
    (tmp_path / "cp.txt").write_text(cli.run("log", "checkpoint"))
    # As the report asked: compact again once the index has moved past the erased records.
    assert report["completeness_index_pending"]
    monkeypatch.setattr(retention, "now_utc", lambda: datetime.now(UTC))  # back to today
    follow_up = json.loads(cli.run("retention", "apply", "--yes", "--json", "--compact"))
    assert follow_up["erased"] == 0 and follow_up["compacted"]
    assert not follow_up["completeness_index_pending"]
    cli.run("log", "export", "--out", str(tmp_path / "export.jsonl"))
    cli.run("projections", "rebuild")
    cli.run("verify", str(tmp_path / "export.jsonl"), "--checkpoint", str(tmp_path / "cp.txt"),
            "--vkey", cli.run("log", "key").strip())

    dump, blobs = table_dump(database)
    export = (tmp_path / "export.jsonl").read_bytes()
    places = {"tables": dump, "home directory": home_files(home), "export": export,
              "printed": b"".join(cli.printed), "logged": cli.logged()}
    places.update({f"database file {name}": content
                   for name, content in storage_files(database).items()})
    for where, found in places.items():
        for value in distinctive:
            assert value not in found, f"{value!r} is still in the {where}"
        for salt in salts:
            assert salt not in found and base64.b64encode(salt) not in found, \
                f"a salt is still in the {where}"
    # Every 32-byte value left that could be a salt (binary columns, base64 text anywhere):
    # none turns the true payload into the commitment its agency signed.
    candidates = set(blobs)
    for found in places.values():
        candidates.update(base64.b64decode(m) for m in _B64_32.findall(found))
    assert len(candidates) > 10  # leaf hashes, commitments, signatures' halves: the search ran
    for n, receipt in enumerate(receipts):
        signed_commitment = receipt["entry"]["commitment"]
        assert not any(commitment(c, payload(n)) == signed_commitment for c in candidates)
    # Whoever holds the completeness index secret (the operator, auditors) derives the index
    # key of a guessed pseudonym: once the index has moved past the erased records, that key
    # is in no table either (docs/residents.md "Retention" says when it moves).
    from ledger.completeness import IndexSecret, load_or_create_secret, secret_path

    index_key, blind = IndexSecret(load_or_create_secret(secret_path(home / "keys"))).derive(SUBJECT)
    for where, found in places.items():
        assert index_key not in found and blind not in found, f"index key in the {where}"
    exported = [json.loads(line) for line in export.splitlines()]
    assert [e["erased"] for e in exported[receipts[0]["index"]:receipts[-1]["index"] + 1]] == \
        [True, True, True]
