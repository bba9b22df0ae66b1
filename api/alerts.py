"""The alert sender: runs the alert projection, then delivers the outbox by e-mail and webhook.

Guarantee: at least once to the transport, never silently lost. A message is marked sent only
after the SMTP server accepted it (end of DATA) or the webhook answered 2xx. Marks are written
together, at most ``ALERT_MARK_INTERVAL`` seconds after the first of them (one write transaction
per window instead of one per message: on SQLite every write takes the database's one write
lock, which the appends need too). A sender killed before the marks are written delivers those
messages again after restart (once their claim's lease ends) — at most the messages of the last
window, and the one in flight — with the SAME id: ``Message-ID: <delivery-id@domain>`` and the
``Kiroku-Delivery`` header, derived from (subscription, provision), so receivers drop the copy.
Failures retry with exponential backoff (``ALERT_BACKOFF`` × 2^attempt, at most an hour) and
after ``ALERT_MAX_ATTEMPTS`` go to the dead-letter list (``kiroku alerts dead-letters``,
``kiroku alerts replay``).

Configuration (prefix ``KIROKU_``): ``SMTP_URL`` (``smtp://[user:password@]host:port`` with
``?starttls=1`` for STARTTLS, or ``smtps://`` for TLS from the start; without it e-mail waits),
``ALERT_FROM`` (default ``kiroku@localhost``), ``PUBLIC_URL`` (the link's base, default
``http://127.0.0.1:8000``), ``ALERT_MAX_ATTEMPTS`` (8), ``ALERT_BACKOFF`` (s, 2),
``ALERT_LEASE`` (s, 60), ``ALERT_INTERVAL`` (s, 0.5), ``ALERT_TIMEOUT`` (s, 10),
``ALERT_MARK_INTERVAL`` (s, 0.1; 0 marks each message in its own transaction).

Nothing personal is logged: counts and delivery ids only, never an address, a URL or a subject;
errors are kept as their class and status code (an SMTP refusal's text can quote the address).
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ledger.application import Ledger
from projections import alerts as pa

log = logging.getLogger("kiroku.alerts")

TEXT_JA = "あなたの記録表示に新しい記録があります。"
TEXT_EN = "A new record is in your view."
ALERT_SUBJECT = "kiroku: 新しい記録 / a new record"


class AlertSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIROKU_", extra="ignore", frozen=True)

    smtp_url: str | None = None
    alert_from: str = "kiroku@localhost"
    public_url: str = "http://127.0.0.1:8000"
    alert_max_attempts: int = Field(default=8, ge=1, le=100)
    alert_backoff: float = Field(default=2.0, gt=0, le=3600)
    alert_lease: float = Field(default=60.0, gt=0, le=3600)
    alert_interval: float = Field(default=0.5, gt=0, le=60)
    alert_timeout: float = Field(default=10.0, gt=0, le=120)
    alert_batch: int = Field(default=100, ge=1, le=10_000)
    alert_mark_interval: float = Field(default=0.1, ge=0, le=10)


class DeliveryFailed(Exception):
    """The transport did not accept the message; ``str`` holds no personal data."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``Kiroku-Signature``: hex HMAC-SHA256, key = the secret's UTF-8 bytes, over
    ``timestamp || "." || body`` (the timestamp bounds replays: receivers reject old ones)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Sender:
    def __init__(self, ledger: Ledger, settings: AlertSettings | None = None) -> None:
        self.settings = settings or AlertSettings()
        self.projection = pa.AlertProjection(ledger)
        self.store = self.projection.store
        self.domain = self.settings.alert_from.rpartition("@")[2] or "localhost"
        self.channels = [pa.WEBHOOK] + ([pa.EMAIL] if self.settings.smtp_url else [])

    def close(self) -> None:
        self.store.close()

    # The loop ---------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Catch the projection up, then deliver every due message; how many were delivered."""
        self.projection.catch_up()
        delivered = 0
        while True:
            with self.store.write() as session:
                batch = pa.claim(session, limit=self.settings.alert_batch,
                                 lease_us=int(self.settings.alert_lease * 1e6),
                                 channels=self.channels)
            if not batch:
                return delivered
            delivered += self._deliver(batch)

    def follow(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                if self.run_once():
                    continue
            except Exception:  # never let the loop die; the next tick retries
                log.exception("alert delivery failed")
            stopping.wait(self.settings.alert_interval)

    def _deliver(self, batch: list[pa.Message]) -> int:
        smtp: smtplib.SMTP | None = None
        sent: list[pa.Message] = []  # accepted by the transport, mark not yet written
        window = self.settings.alert_mark_interval
        since = 0.0
        delivered = 0
        try:
            for message in batch:
                began = time.monotonic()
                try:
                    if message.channel == pa.EMAIL:
                        smtp = smtp or self._smtp()
                        self._mail(smtp, message)
                    else:
                        self._post(message)
                except DeliveryFailed as exc:
                    if message.channel == pa.EMAIL and smtp is not None:
                        smtp = self._drop(smtp)
                    self._failed(message, str(exc))
                    continue
                now = time.monotonic()
                if not sent:
                    since = began
                sent.append(message)
                # A window's worth sent, or a transport slower than the window (then a mark per
                # message costs little beside the send): write the marks now.
                if now - since >= window or now - began >= window:
                    delivered += self._mark(sent)
        finally:
            try:
                delivered += self._mark(sent)
            finally:
                if smtp is not None:
                    self._drop(smtp)
        return delivered

    def _mark(self, sent: list[pa.Message]) -> int:
        """Write the marks of ``sent`` in one transaction and empty it."""
        if not sent:
            return 0
        with self.store.write() as session:
            pa.mark_sent(session, [m.id for m in sent])
        for message in sent:
            log.info("delivered %s %s", message.kind, message.id)
        count = len(sent)
        sent.clear()
        return count

    def _failed(self, message: pa.Message, error: str) -> None:
        attempt = message.attempts + 1
        retry: int | None = None
        if attempt < self.settings.alert_max_attempts:
            retry = int(min(self.settings.alert_backoff * 2 ** message.attempts, 3600) * 1e6)
        with self.store.write() as session:
            pa.mark_failed(session, message.id, error, retry_in_us=retry)
        log.warning("delivery %s failed (attempt %d, %s): %s", message.id, attempt,
                    "dead-lettered" if retry is None else "will retry", error)

    # E-mail -----------------------------------------------------------------------------------
    def _smtp(self) -> smtplib.SMTP:
        url = urlsplit(self.settings.smtp_url or "")
        options = parse_qs(url.query)
        timeout = self.settings.alert_timeout
        try:
            smtp: smtplib.SMTP
            if url.scheme == "smtps":
                smtp = smtplib.SMTP_SSL(url.hostname or "", url.port or 465, timeout=timeout,
                                        context=ssl.create_default_context())
            elif url.scheme == "smtp":
                smtp = smtplib.SMTP(url.hostname or "", url.port or 25, timeout=timeout)
                if options.get("starttls", ["0"])[0] in ("1", "true", "yes"):
                    smtp.starttls(context=ssl.create_default_context())
            else:
                raise DeliveryFailed("KIROKU_SMTP_URL must start with smtp:// or smtps://")
            if url.username:
                smtp.login(unquote(url.username), unquote(url.password or ""))
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(_describe(exc)) from None
        return smtp

    @staticmethod
    def _drop(smtp: smtplib.SMTP) -> None:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    def _mail(self, smtp: smtplib.SMTP, message: pa.Message) -> None:
        if message.kind == pa.ALERT and message.target.isascii() and self._ascii_from:
            # Every alert mail is the same but for four header lines: those are written here,
            # the rest was made once by the email package (building and flattening a message
            # through it cost ~1.2 ms, more than the SMTP exchange, and held the GIL).
            head = (f"From: {self.settings.alert_from}\r\nTo: {message.target}\r\n"
                    f"Date: {formatdate(usegmt=True)}\r\n"
                    f"Message-ID: <{message.id}@{self.domain}>\r\n"
                    f"Kiroku-Delivery: {message.id}\r\n")
            try:
                smtp.sendmail(self.settings.alert_from, [message.target],
                              head.encode() + self._alert_rest)
            except (OSError, smtplib.SMTPException) as exc:
                raise DeliveryFailed(_describe(exc)) from None
            return
        mail = EmailMessage()
        mail["From"] = self.settings.alert_from
        mail["To"] = message.target
        mail["Date"] = formatdate(usegmt=True)
        # RFC 5322 §3.6.4: the same id on every retry and replay, so the receiver deduplicates.
        mail["Message-ID"] = f"<{message.id}@{self.domain}>"
        mail["Kiroku-Delivery"] = str(message.id)
        if message.kind == pa.CONFIRM:
            mail["Subject"] = "kiroku: メールアドレスの確認 / confirm your address"
            mail.set_content(
                "kiroku からのお知らせを受け取るには、次の確認コードを入力してください。\n"
                "To receive kiroku alerts, confirm this address with the code below.\n\n"
                f"subscription: {message.subscription_id}\ncode: {message.token}\n\n"
                f"POST /v1/me/subscriptions/{message.subscription_id}/confirm "
                '{"token": "<code>"}\n')
        else:
            self._alert_content(mail)
        try:
            smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(_describe(exc)) from None

    def _alert_content(self, mail: EmailMessage) -> None:
        mail["Subject"] = ALERT_SUBJECT
        mail.set_content(f"{TEXT_JA}\n{TEXT_EN}\n\n{self._link()}\n")

    @functools.cached_property
    def _alert_rest(self) -> bytes:
        """An alert mail's subject, MIME headers and body, as the email package writes them."""
        mail = EmailMessage()
        self._alert_content(mail)
        return mail.as_bytes(policy=email.policy.SMTP)

    @functools.cached_property
    def _ascii_from(self) -> bool:
        return self.settings.alert_from.isascii() and "\n" not in self.settings.alert_from

    def _link(self) -> str:
        return self.settings.public_url.rstrip("/") + "/me"

    # Webhooks ---------------------------------------------------------------------------------
    def _post(self, message: pa.Message) -> None:
        body = json.dumps({"id": str(message.id), "type": "record.new", "message": TEXT_EN,
                           "link": self._link()}, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(message.target, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "kiroku-alerts/1",
            "Kiroku-Delivery": str(message.id), "Kiroku-Timestamp": timestamp,
            "Kiroku-Signature": "v1=" + signature(message.secret or "", timestamp, body)})
        try:
            with urllib.request.urlopen(request, timeout=self.settings.alert_timeout) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise DeliveryFailed(_describe(exc)) from None
        if not 200 <= status < 300:
            raise DeliveryFailed(f"HTTP {status}")


def _describe(exc: BaseException) -> str:
    """The error's class and code, never its text (which may quote an address or a URL)."""
    code = getattr(exc, "smtp_code", None) or getattr(exc, "errno", None)
    return type(exc).__name__ + (f" {code}" if code is not None else "")
