"""No personal data where it does not belong: the real ``kiroku serve`` and the command line run
through a whole scenario, and everything they wrote outside the database is searched.

What counts as personal data here: the resident's pseudonym, the link codes agencies hold for
them (read from the link-code registry's tables when that feature is there), and what the
resident's certificate says about them (its subject, common name, the name's parts, its serial
in hex and decimal).

Where it may appear: only in a response to that resident, authenticated as themself, with a
2xx status (their own records, in the API's JSON and the web pages' HTML), and in what an agency
produces on purpose for itself: ``kiroku sign``'s standard output is the signed statement with
its payload, to be piped to ``kiroku append`` (like the payload file it reads).

Where it must not: anything printed by a command (stdout, stderr), the server's output and any
log file under the home directory, ``/metrics``, every response header, every problem+json
body (a refusal must not echo the value that was refused), every other caller's response
(agencies, auditors, anonymous callers: receipts, reports, log routes), and the retention report.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import create_engine, inspect

from api.demo import ensure_ca
from api.request_signing import sign_request
from api.web.sessions import CSRF_COOKIE
from kiroku.client import sign_login
from ledger.keys import SigningKey
from ledger.signing import sign_statement
from tests.dbutil import PG_SKIP_REASON, postgres_available, postgres_database

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "subj-NPDRESIDENT00000001"
FAMILY, GIVEN = "YAMADA", "Hanako"
NAME_JA = "山田花子"


@dataclass
class Seen:
    """Everything written outside the database, by where it was written and who got it."""

    outside: dict[str, bytes] = field(default_factory=dict)  # must hold no personal data
    own: dict[str, bytes] = field(default_factory=dict)  # the resident's own authorized reads

    def response(self, label: str, response: httpx.Response, *, resident_own: bool = False
                 ) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        self.outside[f"{label} headers"] = headers
        problem = response.headers.get("content-type", "").startswith("application/problem")
        if resident_own and response.is_success and not problem:
            self.own[label] = response.content
        else:
            self.outside[f"{label} body ({response.status_code})"] = response.content
        return response


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _named_certificate(folder: Path) -> tuple[x509.Certificate, str, rsa.RSAPrivateKey]:
    """A resident certificate whose subject names the person (some CAs' do; kiroku's demo
    ones do not): the scan must find this name nowhere."""
    ca_key, ca, _ = ensure_ca(folder)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{FAMILY} {GIVEN}"),
                         x509.NameAttribute(NameOID.PSEUDONYM, NAME_JA),
                         x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return cert, cert.public_bytes(serialization.Encoding.PEM).decode(), key


@dataclass
class Scenario:
    home: Path
    env: dict[str, str]
    seen: Seen
    url: str = ""
    db: str = ""  # the database URL the service and the command line use

    def kiroku(self, label: str, *args: str, input: str | None = None, code: int = 0) -> str:
        done = subprocess.run([sys.executable, "-m", "kiroku", *args], env=self.env, cwd=ROOT,
                              input=input.encode() if input else None, capture_output=True,
                              timeout=300, check=False)
        if args[0] == "sign":  # the agency's own statement: see the module's docstring
            self.seen.own[f"kiroku {label} stdout"] = done.stdout
        else:
            self.seen.outside[f"kiroku {label} stdout"] = done.stdout
        self.seen.outside[f"kiroku {label} stderr"] = done.stderr
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout.decode()


@pytest.fixture(params=["sqlite", "postgres"])
def scenario(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Scenario]:
    if not sys.platform.startswith("linux"):
        pytest.skip("kiroku serve's workers need Linux")
    if request.param == "postgres":
        if not postgres_available():
            pytest.skip(PG_SKIP_REASON)
        with postgres_database(migrate=False) as url:
            yield from _scenario(tmp_path, url)
    else:
        yield from _scenario(tmp_path, "")


def _scenario(tmp_path: Path, url: str) -> Iterator[Scenario]:
    home = tmp_path / "home"
    auditor = SigningKey.generate()
    auditor.save(tmp_path / "auditor.key")
    _, _, ca_path = ensure_ca(tmp_path / "ca")
    env = dict(os.environ, KIROKU_HOME=str(home), KIROKU_SESSION_SECRET="n" * 48,
               KIROKU_RESIDENT_CA=str(ca_path),
               KIROKU_AUDITOR_KEYS=f"ppc={base64.b64encode(auditor.public_bytes).decode()}",
               KIROKU_CHECKPOINT_INTERVAL="0.2", KIROKU_PROJECTION_INTERVAL="0.2")
    for name in ("KIROKU_DATABASE_URL", "KIROKU_DEMO", "KIROKU_KEY_DIR"):
        env.pop(name, None)
    if url:
        env["KIROKU_DATABASE_URL"] = url
    yield Scenario(home, env, Seen(), db=url or f"sqlite:///{home / 'kiroku.sqlite3'}")


def _link_codes(url: str) -> list[bytes]:
    """The registry's codes (if the link-code feature is there): every text value of its tables."""
    engine = create_engine(url)
    codes: list[bytes] = []
    try:
        with engine.connect() as connection:
            for table in inspect(engine).get_table_names():
                if "link_code" not in table:
                    continue
                for row in connection.exec_driver_sql(f'SELECT * FROM "{table}"'):
                    codes += [str(v).encode() for v in row._mapping.values()
                              if isinstance(v, str) and len(v) >= 8 and v != SUBJECT]
    finally:
        engine.dispose()
    return codes


def test_a_whole_scenario_writes_no_personal_data_outside_the_database(
        scenario: Scenario, tmp_path: Path) -> None:
    run, seen = scenario.kiroku, scenario.seen
    run("init", "init")
    for code, name, role in (("JHIA", "全国健康保険協会", "全国健康保険協会"),
                             ("131121", "世田谷区", "市町村長")):
        run("agency register", "agency", "register", code, "--name-ja", name, "--name-en", code,
            "--kind", "insurer", "--role", role, "--registered-at", "2025-01-01T00:00:00Z")
    key_path = tmp_path / "setagaya.pem"
    run("add-key", "agency", "add-key", "131121", "--generate", str(key_path), "--valid-from",
        "2025-01-01T00:00:00Z")
    agency_key = SigningKey.load(key_path)
    cert, pem, resident_key = _named_certificate(tmp_path / "ca")
    (tmp_path / "resident.crt").write_text(pem)
    run("resident register", "resident", "register", str(tmp_path / "resident.crt"),
        "--subject", SUBJECT)
    stranger, stranger_pem, stranger_key = _named_certificate(tmp_path / "ca")

    def payload(n: int, **overrides: Any) -> dict[str, Any]:
        body = {"request_id": f"npd-{n}", "subject": SUBJECT, "requester": "JHIA",
                "provider": "131121", "basis": "2-4", "affair": "2", "items": ["住民票関係情報"],
                "requested_at": "2026-01-05T01:00:00Z", "provided_at": "2026-01-05T01:01:00Z",
                "outcome": "provided", "reason": None, "non_disclosure": False,
                "operator": "op-JHIA-1"}
        return {**body, **overrides}

    def statement(n: int, **overrides: Any) -> dict[str, Any]:
        return sign_statement(payload(n, **overrides), kind="provision", agency="131121",
                              key=agency_key)

    # The command line signs and appends too (its output is searched).
    signed = run("sign", "sign", "--key", str(key_path), "-", input=json.dumps(payload(0)))
    run("append", "append", "-", input=signed)
    refused = statement(90, items=["戸籍関係情報"])
    run("append refused", "append", "-", input=json.dumps(refused), code=1)
    run("append unusable", "append", "-", input="{" + SUBJECT, code=2)

    port = _free_port()
    scenario.url = url = f"http://127.0.0.1:{port}"
    out, err = (tmp_path / "serve.out").open("wb"), (tmp_path / "serve.err").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "kiroku", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2"], env=scenario.env, cwd=ROOT, stdout=out, stderr=err,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        http = httpx.Client(base_url=url, timeout=30)

        def agency(method: str, target: str, body: Any = None) -> httpx.Response:
            content = b"" if body is None else json.dumps(body).encode()
            auth = sign_request(agency_key, "agency:131121", method, target, content)
            return http.request(method, target, content=content or None, headers={
                "Authorization": auth, "Content-Type": "application/json"})

        # Appends: one, a batch, and refusals whose statements carry the resident's data.
        seen.response("append one", http.post("/v1/provisions?wait=true", json=statement(1)))
        seen.response("append batch", http.post("/v1/provisions/batch",
                                                json=[statement(2), statement(3)]))
        for label, bad in (("items", statement(91, items=["戸籍関係情報"])),
                           ("subject", statement(92, subject=f"{FAMILY} {GIVEN} {NAME_JA}",
                                                 items=["戸籍関係情報"])),
                           ("operator", statement(93, operator=SUBJECT + "/" + NAME_JA,
                                                  basis="9-9")),
                           ("unknown agency", statement(95, requester=SUBJECT)),
                           ("duplicate", statement(1, items=["住民票関係情報", "地方税関係情報"]))):
            got = seen.response(f"refused {label}", http.post("/v1/provisions", json=bad))
            assert got.status_code >= 400, (label, got.text)
            seen.response(f"refused batch {label}",
                          http.post("/v1/provisions/batch", json=[statement(94), bad]))
        seen.response("not json", http.post("/v1/provisions", content=b'{"subject": "'
                                            + SUBJECT.encode(), headers={
                                                "Content-Type": "application/json"}))

        # The resident logs in (API and pages) and reads; a stranger's card is refused.
        def login_body(client: httpx.Client, certificate: str, key: rsa.RSAPrivateKey
                       ) -> dict[str, str]:
            got = client.post("/v1/auth/challenge").json()
            return {"certificate": certificate, "challenge": got["challenge"], "signature":
                    base64.b64encode(sign_login(key, got["message"].encode())).decode()}

        session = seen.response("login", http.post("/v1/auth/session",
                                                   json=login_body(http, pem, resident_key)))
        assert session.status_code == 200, session.text
        bearer = {"Authorization": f"Bearer {session.json()['access_token']}"}
        time.sleep(1.0)  # the housekeeper projects every 0.2 s
        listed = seen.response("my records", http.get("/v1/me/provisions", headers=bearer),
                               resident_own=True)
        assert listed.status_code == 200 and listed.json()["items"], listed.text
        record = listed.json()["items"][0]["id"]
        seen.response("my record", http.get(f"/v1/me/provisions/{record}", headers=bearer),
                      resident_own=True)
        seen.response("stranger login", http.post(
            "/v1/auth/session", json=login_body(http, stranger_pem, stranger_key)))
        seen.response("bad certificate", http.post("/v1/auth/session", json={
            "certificate": f"-----BEGIN CERTIFICATE-----\n{SUBJECT}\n", "challenge": "x",
            "signature": "AAAA"}))
        browser = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        seen.response("login page", browser.get("/login"))
        csrf = {"X-CSRF-Token": str(browser.cookies[CSRF_COOKIE])}
        landed = seen.response("web login", browser.post(
            "/login/resident", json=login_body(browser, pem, resident_key), headers=csrf))
        assert landed.status_code == 200, landed.text
        seen.response("my page", browser.get("/me"), resident_own=True)
        seen.response("my record page", browser.get(f"/me/records/{record}"), resident_own=True)
        seen.response("web stranger", browser.post(
            "/login/resident", json=login_body(browser, stranger_pem, stranger_key),
            headers=csrf))

        # Agencies and auditors read; anonymous callers read the log.
        seen.response("agency report", agency("GET", "/v1/agencies/131121/report"))
        seen.response("agency other report", agency("GET", "/v1/agencies/JHIA/report"))
        auditor = SigningKey.load(tmp_path / "auditor.key")
        for target in ("/v1/agencies/131121/report", "/v1/agencies/JHIA/report",
                       "/v1/log/checkpoints"):
            seen.response(f"auditor {target}", http.get(target, headers={
                "Authorization": sign_request(auditor, "auditor:ppc", "GET", target)}))
        for target in ("/metrics", "/healthz", "/v1/log", "/v1/log/checkpoint",
                       "/v1/log/entries?start=0&end=8", "/v1/me/provisions"):
            seen.response(f"anonymous {target}", http.get(target))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        out.close()
        err.close()
    seen.outside["server stdout"] = (tmp_path / "serve.out").read_bytes()
    seen.outside["server stderr"] = (tmp_path / "serve.err").read_bytes()

    # The operator's and auditor's commands.
    (tmp_path / "cp.txt").write_text(run("checkpoint", "log", "checkpoint"))
    run("export", "log", "export", "--out", str(tmp_path / "export.jsonl"))
    run("verify", "verify", str(tmp_path / "export.jsonl"), "--checkpoint",
        str(tmp_path / "cp.txt"), "--vkey", run("key", "log", "key").strip())
    run("report", "report", "131121", "--out", str(tmp_path / "reports"))
    run("projections rebuild", "projections", "rebuild")
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run("retention apply", "retention", "apply", "--before", tomorrow, "--yes")
    run("retention json", "retention", "apply", "--json", "--yes")
    for path in scenario.home.rglob("*.log"):
        seen.outside[f"log file {path.name}"] = path.read_bytes()

    needles = {"pseudonym": SUBJECT.encode(), "common name": f"{FAMILY} {GIVEN}".encode(),
               "family name": FAMILY.encode(), "given name": GIVEN.encode(),
               "name (ja)": NAME_JA.encode(),
               "certificate subject": cert.subject.rfc4514_string().encode(),
               "serial (hex)": format(cert.serial_number, "x").encode(),
               "serial (HEX)": format(cert.serial_number, "X").encode(),
               "serial (decimal)": str(cert.serial_number).encode(),
               "stranger's subject": stranger.subject.rfc4514_string().encode(),
               "stranger's serial": format(stranger.serial_number, "x").encode()}
    for n, link in enumerate(_link_codes(scenario.db)):
        needles[f"link code {n}"] = link
    leaks = {f"{what} in {where}" for where, found in seen.outside.items()
             for what, value in needles.items() if value in found}
    assert not leaks, "\n".join(sorted(leaks))
    # The search sees what it should: the resident's own reads hold their records.
    assert seen.own and any(b"npd-" in body for body in seen.own.values())
    assert len(seen.outside) > 60
