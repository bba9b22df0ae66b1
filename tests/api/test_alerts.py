"""Alerts on provisions, with real transports: a local SMTP server (aiosmtpd) and a local HTTP
receiver, both on 127.0.0.1. Subscriptions over the API, e-mail confirmation, signed webhooks,
no personal data in messages, non-disclosed records held until disclosed, retries → dead letter
→ replay, and a SIGKILLed ``kiroku alerts run`` that neither loses nor duplicates (beyond the one
message in flight, which carries the same Message-ID). SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from api.alerts import ALERT_SUBJECT, TEXT_EN, TEXT_JA, AlertSettings, Sender
from ledger.flags import KIND, flag_payload
from ledger.signing import sign_statement
from projections import alerts as pa
from projections.store import ViewStore
from tests.api.conftest import SUBJECT_A, SUBJECT_B, Env

BACKENDS = ["env", "pg_env"]


@pytest.fixture(params=BACKENDS)
def api(request: pytest.FixtureRequest) -> Env:
    env: Env = request.getfixturevalue(request.param)
    return env


# Real receivers -----------------------------------------------------------------------------------
@dataclass
class Mailbox:
    messages: list[Any] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        if self.delay:
            await asyncio.sleep(self.delay)  # a slow server: the client waits for the 250 reply
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [str(m["Message-ID"]) for m in self.messages]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


@dataclass
class Hook:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail: int = 0  # answer 500 to this many requests first


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state.fail > 0:
                state.fail -= 1
                self.send_response(500)
            else:
                state.received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# Helpers ----------------------------------------------------------------------------------------
def _sender(env: Env, smtp_url: str | None = None, **overrides: Any) -> Sender:
    settings = AlertSettings(smtp_url=smtp_url, public_url="https://portal.example.jp",
                             alert_from="alerts@kiroku.example.jp", alert_backoff=0.05,
                             alert_max_attempts=3, **overrides)
    return Sender(env.world.ledger, settings)


def _until(condition: Callable[[], bool], step: Callable[[], Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        step()
        time.sleep(0.05)


def _post(env: Env, who: str, path: str, body: dict[str, Any]) -> Any:
    return env.client.post(path, json=body, headers=env.headers(who, "POST", path))


def _subscribe_email(env: Env, sender: Sender, box: Mailbox, who: str = "A",
                     address: str = "hanako@example.jp") -> str:
    answer = _post(env, who, "/v1/me/subscriptions", {"channel": "email", "target": address})
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["status"] == "pending_confirmation" and "secret" not in created
    before = len(box.messages)
    _until(lambda: len(box.messages) > before, sender.run_once)
    mail = box.messages[-1]
    assert mail["To"] == address
    token = re.search(r"code: (\S+)", mail.get_content()).group(1)  # type: ignore[union-attr]
    path = f"/v1/me/subscriptions/{created['id']}/confirm"
    assert _post(env, who, path, {"token": token + "x"}).json()["type"].endswith(
        "invalid-confirmation")
    confirmed = _post(env, who, path, {"token": token})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "active"
    return str(created["id"])


def _append(env: Env, subject: str = SUBJECT_A, **overrides: Any) -> str:
    receipt = env.client.post("/v1/provisions", json=env.world.statement(subject=subject,
                                                                         **overrides))
    assert receipt.status_code == 201, receipt.text
    return str(receipt.json()["id"])


def _alerts(box: Mailbox) -> list[Any]:
    return [m for m in box.messages if "Kiroku-Delivery" in m and "code:" not in m.get_content()]


def _flag(env: Env, provision: str, *, set: bool) -> None:
    statement = sign_statement(flag_payload(provision, "non_disclosure", set=set,
                                            reason="dv_support_measure"),
                               kind=KIND, agency=env.x, key=env.world.keys[env.x])
    answer = env.client.post("/v1/flags", json=statement)
    assert answer.status_code == 201, answer.text


# Tests ------------------------------------------------------------------------------------------
def test_alert_by_mail_and_signed_webhook_without_personal_data(
        api: Env, smtp: tuple[Mailbox, str], hook: Hook) -> None:
    env, (box, url) = api, smtp
    sender = _sender(env, url)
    try:
        email = _subscribe_email(env, sender, box)
        created = _post(env, "A", "/v1/me/subscriptions", {"channel": "webhook",
                                                           "target": hook.url}).json()
        assert created["status"] == "active" and created["secret"]
        listed = env.get("A", "/v1/me/subscriptions").json()["subscriptions"]
        assert {s["id"] for s in listed} == {email, created["id"]}
        assert all("secret" not in s for s in listed)
        assert env.get("B", "/v1/me/subscriptions").json()["subscriptions"] == []
        sender.run_once()
        assert _alerts(box) == [] and hook.received == []  # records before subscribing: none

        provision = _append(env)
        _append(env, subject=SUBJECT_B)  # B subscribed to nothing
        env.world.version = 2  # a v2 payload names link codes: resolved to A all the same
        provision_v2 = _append(env)
        env.settle()
        _until(lambda: len(_alerts(box)) == 2 and len(hook.received) == 2, sender.run_once)
        sender.run_once()
        assert len(_alerts(box)) == 2 and len(hook.received) == 2

        expected = {str(pa.delivery_id(uuid.UUID(email), uuid.UUID(p)))
                    for p in (provision, provision_v2)}
        assert {m["Kiroku-Delivery"] for m in _alerts(box)} == expected
        assert {m["Message-ID"] for m in _alerts(box)} == {f"<{i}@kiroku.example.jp>"
                                                           for i in expected}
        for headers, body in hook.received:
            mac = hmac.new(created["secret"].encode(),
                           headers["Kiroku-Timestamp"].encode() + b"." + body,
                           hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["Kiroku-Signature"], "v1=" + mac)
            assert abs(int(headers["Kiroku-Timestamp"]) - time.time()) < 300
            document = json.loads(body)
            assert document["link"] == "https://portal.example.jp/me"
            assert document["id"] == headers["Kiroku-Delivery"]
        # Nothing beyond "a new record" and the link: no pseudonym, agency, affair or item.
        # The body is fixed text and the link (so no item code, however short, can be in it).
        for mail in _alerts(box):
            assert mail.get_content().replace("\r\n", "\n") \
                == f"{TEXT_JA}\n{TEXT_EN}\n\nhttps://portal.example.jp/me\n"
            assert str(mail["Subject"]) == ALERT_SUBJECT and mail["To"] == "hanako@example.jp"
            assert mail["From"] == "alerts@kiroku.example.jp" and mail["Date"]
            assert mail["Message-ID"] == f"<{mail['Kiroku-Delivery']}@kiroku.example.jp>"
        for _, body in hook.received:
            assert set(json.loads(body)) == {"id", "type", "message", "link"}
            assert json.loads(body)["message"] == TEXT_EN
        secrets = {SUBJECT_A, env.x, env.y, "世田谷区", "Setagaya",
                   "全国健康保険協会", provision, provision_v2}
        texts = [m.as_string() for m in _alerts(box)] + [b.decode() for _, b in hook.received]
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"an alert carries {secret!r}"

        # Unsubscribing stops alerts; another resident cannot delete it (404, like a missing one).
        path = f"/v1/me/subscriptions/{created['id']}"
        assert env.client.delete(path, headers=env.headers("B", "DELETE", path)).status_code \
            == 404
        assert env.client.delete(path, headers=env.headers("A", "DELETE", path)).status_code \
            == 200
        _append(env)
        env.settle()
        _until(lambda: len(_alerts(box)) == 3, sender.run_once)
        assert len(hook.received) == 2
    finally:
        sender.close()


def test_a_log_nobody_subscribed_to_is_passed_over_unread(api: Env, hook: Hook) -> None:
    """The first start of the sender on a large log with no subscriber reads no entry (an
    alert is only for records logged after its subscription was confirmed)."""
    env = api
    for _ in range(5):
        _append(env)
    env.settle()
    sender = _sender(env)
    try:
        reads: list[int] = []
        read = sender.projection.reader.read

        def counting(after: int, stop: int | None = None) -> Any:
            reads.append(after)
            return read(after, stop)

        sender.projection.reader.read = counting  # type: ignore[method-assign]
        sender.run_once()
        assert reads == []
        assert sender.projection.position() == env.world.ledger.log.max_notification_id()
        created = _post(env, "A", "/v1/me/subscriptions", {"channel": "webhook",
                                                           "target": hook.url})
        assert created.status_code == 201, created.text
        sender.run_once()
        assert hook.received == []  # the records before the subscription raise nothing
        provision = _append(env)
        env.settle()
        _until(lambda: len(hook.received) == 1, sender.run_once)
        assert reads, "with a subscriber the projection reads the log again"
        body = json.loads(hook.received[0][1])
        assert body["type"] == "record.new" and provision not in hook.received[0][1].decode()
    finally:
        sender.close()


def test_bad_subscriptions_are_refused_and_change_nothing(env: Env) -> None:
    for body in ({"channel": "email", "target": "not an address"},
                 {"channel": "webhook", "target": "http://example.jp/hook"},
                 {"channel": "webhook", "target": "https://user:pw@example.jp/hook"},
                 {"channel": "webhook", "target": "ftp://example.jp/"}):
        answer = _post(env, "A", "/v1/me/subscriptions", body)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"] == "urn:kiroku:problem:invalid-subscription"
        assert body["target"] not in answer.text  # never echoed
    unknown = _post(env, "A", "/v1/me/subscriptions", {"channel": "sms", "target": "090"})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert env.get("A", "/v1/me/subscriptions").json()["subscriptions"] == []
    for n in range(pa.MAX_SUBSCRIPTIONS):
        assert _post(env, "A", "/v1/me/subscriptions", {
            "channel": "webhook", "target": f"https://h{n}.example.jp/"}).status_code == 201
    extra = _post(env, "A", "/v1/me/subscriptions", {"channel": "webhook",
                                                     "target": "https://x.example.jp/"})
    assert extra.json()["type"] == "urn:kiroku:problem:too-many-subscriptions"
    assert len(env.get("A", "/v1/me/subscriptions").json()["subscriptions"]) \
        == pa.MAX_SUBSCRIPTIONS


def test_non_disclosed_records_alert_only_once_disclosed(api: Env, hook: Hook) -> None:
    env = api
    sender = _sender(env)
    try:
        assert _post(env, "A", "/v1/me/subscriptions",
                     {"channel": "webhook", "target": hook.url}).status_code == 201
        hidden = _append(env, non_disclosure=True)
        flagged_later = _append(env)
        _flag(env, flagged_later, set=True)  # before the sender ran: held as well
        env.settle()
        for _ in range(5):
            sender.run_once()
        assert hook.received == []

        _flag(env, hidden, set=False)  # disclosed: its alert goes now, once
        env.settle()
        _until(lambda: len(hook.received) == 1, sender.run_once)
        _flag(env, flagged_later, set=False)
        env.settle()
        _until(lambda: len(hook.received) == 2, sender.run_once)
        sender.run_once()
        assert len(hook.received) == 2
    finally:
        sender.close()


def test_failing_webhook_retries_then_dead_letter_then_replay(api: Env, hook: Hook) -> None:
    env = api
    sender = _sender(env)
    try:
        assert _post(env, "A", "/v1/me/subscriptions",
                     {"channel": "webhook", "target": hook.url}).status_code == 201
        hook.fail = 3  # alert_max_attempts=3: the third failure dead-letters it
        _append(env)
        env.settle()
        store = sender.store

        def dead() -> list[dict[str, Any]]:
            with store.read() as session:
                return pa.dead_letters(session)

        _until(lambda: len(dead()) == 1, sender.run_once)
        letter = dead()[0]
        assert letter["attempts"] == 3 and letter["last_error"] == "HTTP 500"
        assert hook.received == [] and hook.fail == 0

        environment = _cli_env(env)

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "kiroku", "alerts", *args], check=False,
                                  env=environment, capture_output=True, text=True, timeout=60)

        listed = cli("dead-letters", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [d["id"] for d in json.loads(listed.stdout)["dead_letters"]] == [letter["id"]]
        assert hook.url not in listed.stdout + listed.stderr
        assert cli("replay", str(uuid.uuid4())).returncode == 1
        replayed = cli("replay", letter["id"])
        assert replayed.returncode == 0 and "replayed 1" in replayed.stdout
        _until(lambda: len(hook.received) == 1, sender.run_once)
        assert hook.received[0][0]["Kiroku-Delivery"] == letter["id"]
        assert dead() == []
    finally:
        sender.close()


def _cli_env(env: Env) -> dict[str, str]:
    settings = env.world.ledger.settings
    if not settings.operator_key_path.exists():  # the CLI opens the ledger from its key file
        env.world.ledger.operator_key.save(settings.operator_key_path)
    return {**os.environ, "KIROKU_HOME": str(settings.home),
            "KIROKU_KEY_DIR": str(settings.key_dir),
            "KIROKU_DATABASE_URL": str(settings.database_url)}


def test_sender_killed_mid_batch_loses_nothing_and_dedup_id_is_stable(
        api: Env, smtp: tuple[Mailbox, str]) -> None:
    env, (box, url) = api, smtp
    sender = _sender(env, url)
    try:
        email = _subscribe_email(env, sender, box)
    finally:
        sender.close()
    provisions = [_append(env) for _ in range(12)]
    env.settle()
    expected = {f"<{pa.delivery_id(uuid.UUID(email), uuid.UUID(p))}@kiroku.example.jp>"
                for p in provisions}
    box.delay = 0.3  # slow enough to kill the sender with messages still to go
    environment = {**_cli_env(env), "KIROKU_SMTP_URL": url,
                   "KIROKU_ALERT_FROM": "alerts@kiroku.example.jp", "KIROKU_ALERT_LEASE": "1",
                   "KIROKU_ALERT_INTERVAL": "0.1"}
    command = [sys.executable, "-m", "kiroku", "alerts", "run"]

    def alerts() -> list[str]:
        return [i for i in box.ids() if i in expected]

    child = subprocess.Popen(command, env=environment, start_new_session=True)
    try:
        _until(lambda: len(alerts()) >= 3, lambda: None, seconds=60)
        os.killpg(child.pid, signal.SIGKILL)  # mid-batch: deliveries done, others not yet
    finally:
        child.wait(timeout=30)
    assert len(set(alerts())) < len(expected), "the sender finished before it was killed"

    box.delay = 0.0
    child = subprocess.Popen(command, env=environment, start_new_session=True)
    try:
        _until(lambda: set(alerts()) == expected, lambda: None, seconds=60)
        time.sleep(1.5)  # a lease's length: anything left over would be delivered by now
    finally:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
    received = alerts()
    assert set(received) == expected  # nothing lost
    # At least once: only the message in flight when the kill came may arrive twice, and it
    # carries the same Message-ID, on which the receiver deduplicates.
    assert len(received) - len(expected) <= 1
    assert all(m in expected for m in box.ids() if "Kiroku-Delivery" in str(m))
    store = ViewStore(str(env.world.ledger.settings.database_url))
    try:
        with store.read() as session:
            states = dict(session.execute(
                select(pa.outbox.c.state, func.count()).where(pa.outbox.c.kind == pa.ALERT)
                .group_by(pa.outbox.c.state)).all())
    finally:
        store.close()
    assert states == {pa.SENT: len(expected)}

