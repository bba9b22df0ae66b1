"""Sharded logs (docs/shards.md): two shards, each on its own database (two PostgreSQL databases,
or two SQLite files), served by one deployment.

A year's shard is frozen (its final checkpoint covers shard.frozen, and the database refuses
anything after it), the next one opens self-describing and linked to it; appends go to the open
shard; the frozen one still serves checkpoints and proofs; a resident's records and an agency's
report span both; the verifier checks both exports and the link; Go's note package accepts each
shard's checkpoint.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi.testclient import TestClient

from api.app import create_app
from api.demo import ensure_ca, issue_resident
from api.request_signing import sign_request
from api.residents import CredentialStore
from api.settings import ApiSettings
from kiroku.client import sign_login
from ledger import shards
from ledger.application import Ledger
from ledger.config import Settings
from ledger.keys import SigningKey
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database, sqlite_database
from tests.interop.gobuild import build, go_available
from tests.ledger.fixtures import World, make_world
from verifier.checkpoint import open_checkpoint
from verifier.merkle import verify_inclusion
from verifier.note import NoteVerifier
from verifier.shards import shards_command

SUBJECT_A = "subj-AAAAAAAAAAAAAAAAAAAA"
SUBJECT_B = "subj-BBBBBBBBBBBBBBBBBBBB"
NEW_ORIGIN = "test.kiroku/2027"


@dataclass
class Deployment:
    world: World  # agencies and their keys; world.ledger is the first (2026) shard
    first: Ledger
    second: Ledger
    client: TestClient
    auditor: SigningKey
    residents: dict[str, tuple[str, rsa.RSAPrivateKey]]
    home: Path

    def login(self, who: str) -> dict[str, str]:
        certificate, key = self.residents[who]
        challenge = self.client.post("/v1/auth/challenge").json()
        signature = sign_login(key, challenge["message"].encode())
        answer = self.client.post("/v1/auth/session", json={
            "certificate": certificate, "challenge": challenge["challenge"],
            "signature": base64.b64encode(signature).decode()})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def signed(self, who: str, target: str) -> Any:
        if who == "auditor":
            header = sign_request(self.auditor, "auditor:test-auditor", "GET", target, b"")
        else:
            header = sign_request(self.world.keys[who], f"agency:{who}", "GET", target, b"")
        return self.client.get(target, headers={"Authorization": header})


Databases = Callable[[], AbstractContextManager[str]]


def _deploy(databases: Databases) -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="kiroku-shards-"))
    with databases() as first_url, databases() as second_url:
        world = make_world(first_url, home)
        first = world.ledger
        first.operator_key.save(first.settings.operator_key_path)
        ca_key, ca, ca_path = ensure_ca(home / "ca")
        residents: dict[str, tuple[str, rsa.RSAPrivateKey]] = {}
        store = CredentialStore(first)
        for who, subject in (("A", SUBJECT_A), ("B", SUBJECT_B)):
            cert, cert_path, key_path = issue_resident(ca_key, ca, home / "residents", who)
            store.register(cert, subject)  # registered while 2026 was open: must carry over
            key = load_pem_private_key(key_path.read_bytes(), password=None)
            assert isinstance(key, rsa.RSAPrivateKey)
            residents[who] = (cert_path.read_text(), key)
        # 2026: A has two records, B one.
        for subject in (SUBJECT_A, SUBJECT_A, SUBJECT_B):
            first.append(world.statement(subject=subject))
        shards.freeze(first)
        second = Ledger(Settings(home=home, database_url=second_url, key_dir=home / "keys",
                                 origin=NEW_ORIGIN), first.operator_key)
        shards.open_shard(second, first)
        config = home / "shards.toml"
        shards.write_config(config, [shards.ShardSpec(first.origin, first_url),
                                     shards.ShardSpec(NEW_ORIGIN, second_url)])
        auditor = SigningKey.generate()
        settings = ApiSettings(
            home=home, database_url=second_url, log_origin=NEW_ORIGIN, demo=False,
            session_secret="s" * 40, resident_ca=ca_path,  # type: ignore[arg-type]
            auditor_keys=f"test-auditor={base64.b64encode(auditor.public_bytes).decode()}",
            background=False, shards=config)
        app = create_app(settings, second)
        try:
            with TestClient(app) as client:
                yield Deployment(world, first, second, client, auditor, residents, home)
        finally:
            second.close()
            first.close()


@pytest.fixture
def sqlite_deployment() -> Iterator[Deployment]:
    yield from _deploy(sqlite_database)


@pytest.fixture
def pg_deployment() -> Iterator[Deployment]:
    if not postgres_available():
        pytest.skip(PG_SKIP_REASON)
    yield from _deploy(postgres_database)


@pytest.fixture(params=["sqlite", "postgresql"])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    name = "sqlite_deployment" if request.param == "sqlite" else "pg_deployment"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _settle(d: Deployment) -> None:
    services = d.client.app.state.services  # type: ignore[attr-defined]
    services.housekeeper.checkpoint_if_behind()
    services.housekeeper.project(force=True)


def test_appends_go_to_the_open_shard_and_the_frozen_one_refuses_them(
        deployment: Deployment) -> None:
    d = deployment
    frozen_size = d.first.tree_size()
    answer = d.client.post("/v1/provisions", json=d.world.statement(subject=SUBJECT_A))
    assert answer.status_code == 201, answer.text
    assert d.second.get_leaf(answer.json()["index"])[0] == base64.b64decode(answer.json()["leaf"])
    assert d.first.tree_size() == frozen_size
    # The frozen database refuses any entry, whoever writes it.
    with pytest.raises(shards.ShardFrozen, match="frozen"):
        shards.refusing_when_frozen(d.first, lambda: d.first.append(d.world.statement()))
    with pytest.raises(Exception):  # noqa: B017 -- the driver's error, from the trigger
        d.first.append(d.world.statement())
    assert d.first.tree_size() == frozen_size
    listed = d.client.get("/v1/shards").json()
    assert listed["open"] == NEW_ORIGIN
    states = {s["origin"]: s for s in listed["shards"]}
    assert [s["origin"] for s in listed["shards"]] == [d.first.origin, NEW_ORIGIN]
    assert states[d.first.origin]["state"] == "frozen"
    assert states[NEW_ORIGIN]["state"] == "open"
    final = d.first.latest_checkpoint()
    assert final is not None and final.size == frozen_size
    assert states[NEW_ORIGIN]["previous"] == {
        "origin": d.first.origin, "size": final.size,
        "root": base64.b64encode(final.root).decode()}
    assert d.client.get("/v1/log").json()["origin"] == NEW_ORIGIN


def test_freezing_the_serving_shard_turns_appends_into_a_problem(deployment: Deployment) -> None:
    d = deployment
    assert d.client.post("/v1/provisions", json=d.world.statement()).status_code == 201
    shards.freeze(d.second)  # e.g. 'kiroku shard freeze' while the service runs
    size = d.second.tree_size()
    for path, body in (("/v1/provisions", d.world.statement()),
                       ("/v1/provisions/batch", [d.world.statement(), d.world.statement()])):
        answer = d.client.post(path, json=body)
        assert answer.status_code == 409, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["type"] == "urn:kiroku:problem:shard-frozen"
    assert d.second.tree_size() == size
    assert shards.freeze(d.second).size == size  # freezing again changes nothing


def test_the_frozen_shard_serves_its_final_checkpoint_and_proofs(deployment: Deployment) -> None:
    d = deployment
    slug = shards.slug_of(d.first.origin)
    vkey = NoteVerifier.from_vkey(d.first.vkey)
    note = d.client.get(f"/v1/shards/{slug}/log/checkpoint")
    assert note.status_code == 200
    final = open_checkpoint(note.text, vkey, origin=d.first.origin)
    assert final.size == d.first.tree_size()
    for index in range(final.size):
        proof = d.client.get(f"/v1/shards/{slug}/log/proof/inclusion?index={index}").json()
        verify_inclusion(base64.b64decode(proof["leaf_hash"]), index, final.size,
                         [base64.b64decode(p) for p in proof["proof"]], final.root)
    consistency = d.client.get(f"/v1/shards/{slug}/log/proof/consistency?old=1")
    assert consistency.status_code == 200
    assert d.client.get(f"/v1/shards/{slug}/log").json()["vkey"] == d.first.vkey
    assert d.client.get("/v1/shards/nope/log/checkpoint").status_code == 404
    # Entries: auditors only, as /v1/log/entries.
    assert d.client.get(f"/v1/shards/{slug}/log/entries").status_code == 401
    lines = d.signed("auditor", f"/v1/shards/{slug}/log/entries").text.splitlines()
    assert len(lines) == final.size
    assert json.loads(base64.b64decode(json.loads(lines[-1])["leaf"]))["kind"] == "shard.frozen"


def test_a_residents_records_span_both_shards(deployment: Deployment) -> None:
    d = deployment
    for _ in range(2):
        assert d.client.post("/v1/provisions",
                             json=d.world.statement(subject=SUBJECT_A)).status_code == 201
    _settle(d)
    headers = d.login("A")
    page = d.client.get("/v1/me/provisions", headers=headers).json()
    logs = [item["log"] for item in page["items"]]
    assert sorted(logs) == sorted([d.first.origin] * 2 + [NEW_ORIGIN] * 2)
    # Page by page, one at a time: every record once, in the same order.
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/me/provisions?limit=1" + (f"&cursor={cursor}" if cursor else "")
        answer = d.client.get(query, headers=headers).json()
        seen += [item["id"] for item in answer["items"]]
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in page["items"]]
    # A record of the frozen shard comes with that shard's proof and vkey.
    old = next(item for item in page["items"] if item["log"] == d.first.origin)
    detail = d.client.get(f"/v1/me/provisions/{old['id']}", headers=headers).json()
    assert detail["vkey"] == d.first.vkey
    checkpoint = open_checkpoint(detail["checkpoint"], NoteVerifier.from_vkey(d.first.vkey),
                                 origin=d.first.origin)
    inclusion = detail["inclusion"]
    verify_inclusion(base64.b64decode(detail["leaf_hash"]), inclusion["leaf_index"],
                     checkpoint.size, [base64.b64decode(p) for p in inclusion["proof"]],
                     checkpoint.root)
    proof = d.client.get(f"/v1/me/provisions/{old['id']}/proof", headers=headers)
    assert proof.status_code == 200 and d.first.origin in proof.text
    # B sees only B's one record, from 2026; A's record ids are not B's.
    other = d.login("B")
    assert [i["log"] for i in d.client.get("/v1/me/provisions", headers=other).json()["items"]] \
        == [d.first.origin]
    assert d.client.get(f"/v1/me/provisions/{old['id']}", headers=other).status_code == 404


def test_an_agency_report_spans_both_shards(deployment: Deployment) -> None:
    d = deployment
    d.client.post("/v1/provisions", json=d.world.statement(subject=SUBJECT_B))
    _settle(d)
    code = d.world.provider
    report = d.signed(code, f"/v1/agencies/{code}/report")
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["totals"]["as_provider"] == 4  # three in 2026, one in 2027
    assert sum(row["n"] for row in body["counts"]) == 4
    assert body["logs"] == [d.first.origin, NEW_ORIGIN]
    # Another agency cannot read it.
    assert d.signed(d.world.requester, f"/v1/agencies/{code}/report").status_code == 403


def _dump(ledger: Ledger, folder: Path) -> tuple[str, str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    export = folder / "export.jsonl"
    with export.open("w") as out:
        for line in ledger.export():
            out.write(json.dumps(line) + "\n")
    checkpoint = ledger.latest_checkpoint()
    assert checkpoint is not None
    (folder / "checkpoint").write_text(checkpoint.note)
    (folder / "vkey").write_text(ledger.vkey)
    return str(export), str(folder / "checkpoint"), str(folder / "vkey")


def test_the_verifier_checks_both_exports_and_their_link(deployment: Deployment,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d = deployment
    d.client.post("/v1/provisions", json=d.world.statement())
    d.second.checkpoint()
    old, new = _dump(d.first, d.home / "v2026"), _dump(d.second, d.home / "v2027")
    assert shards_command([old, new], workers=0) == 0
    assert "2 shard(s) verified and linked" in capsys.readouterr().out
    # Out of order: the newer is not frozen, the older does not start with shard.opened.
    assert shards_command([new, old], workers=0) == 1
    assert "shard-chain" in capsys.readouterr().out
    # A shard that does not continue the given one: a second, unrelated frozen log.
    with sqlite_database() as url:
        stranger = make_world(url, d.home / "stranger").ledger
        try:
            shards.freeze(stranger)
            other = _dump(stranger, d.home / "vstranger")
        finally:
            stranger.close()
    assert shards_command([other, new], workers=0) == 1
    assert "continues" in capsys.readouterr().out


def test_each_shards_export_imports_as_a_backup_and_the_frozen_one_stays_frozen(
        deployment: Deployment) -> None:
    """``kiroku log import`` restores each shard from its export (docs/backup.md): same size
    and root, the frozen shard refuses appends like its source, the open one continues."""
    from click.testing import CliRunner

    from kiroku.cli import main as cli_main

    d = deployment
    d.client.post("/v1/provisions", json=d.world.statement())
    d.second.checkpoint()
    fresh = sqlite_database if d.first.settings.database_url.startswith("sqlite") \
        else postgres_database
    for source, name in ((d.first, "r2026"), (d.second, "r2027")):
        export, _, vkey_file = _dump(source, d.home / f"export-{name}")
        home = d.home / name
        (home / "keys").mkdir(parents=True)
        source.operator_key.save(home / "keys" / "operator.pem")
        with fresh() as url:
            result = CliRunner().invoke(cli_main, [
                "log", "import", export, "--vkey", Path(vkey_file).read_text().strip(),
                "--workers", "0"], env={"KIROKU_HOME": str(home), "KIROKU_DATABASE_URL": url,
                                        "KIROKU_LOG_ORIGIN": source.origin})
            assert result.exit_code == 0, result.output
            restored = Ledger(Settings(home=home, database_url=url, key_dir=home / "keys",
                                       origin=source.origin), source.operator_key)
            try:
                size = source.tree_size()
                assert restored.tree_size() == size
                assert restored.get_root(size) == source.get_root(size)
                assert shards.state_of(restored).previous == shards.state_of(source).previous
                if source is d.first:
                    assert shards.is_frozen(restored)
                    with pytest.raises(shards.ShardFrozen):
                        shards.refusing_when_frozen(
                            restored, functools.partial(restored.append, d.world.statement()))
                    assert restored.tree_size() == size
                else:
                    assert not shards.is_frozen(restored)
                    assert restored.append(d.world.statement()).index == size
            finally:
                restored.close()


def test_kiroku_append_on_a_frozen_shard_says_so(sqlite_deployment: Deployment) -> None:
    from click.testing import CliRunner

    from kiroku.cli import main as cli_main

    d = sqlite_deployment
    size = d.first.tree_size()
    result = CliRunner().invoke(cli_main, ["append", "-"], input=json.dumps(d.world.statement()),
                                env={"KIROKU_HOME": str(d.home),
                                     "KIROKU_DATABASE_URL": d.first.settings.database_url,
                                     "KIROKU_KEY_DIR": str(d.first.settings.key_dir),
                                     "KIROKU_LOG_ORIGIN": d.first.origin})
    assert result.exit_code == 1, result.output
    assert "shard-frozen" in result.stderr and "open shard" in result.stderr
    assert d.first.tree_size() == size


GO_NOTE = Path(__file__).parent.parent / "interop" / "note_cosigned.go"


@pytest.mark.skipif(not go_available(), reason="Go with golang.org/x/mod is not installed")
def test_go_sumdb_note_accepts_each_shards_checkpoint(sqlite_deployment: Deployment,
                                                      tmp_path: Path) -> None:
    program = build(GO_NOTE, tmp_path / "go")
    for ledger in (sqlite_deployment.first, sqlite_deployment.second):
        checkpoint = ledger.latest_checkpoint()
        assert checkpoint is not None
        note = tmp_path / f"{shards.slug_of(ledger.origin)}.note"
        note.write_text(checkpoint.note)
        done = subprocess.run([str(program), str(note), f"log={ledger.vkey}"], check=False,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"verified {ledger.origin}" in done.stdout
