"""Request-size and request-rate limits, and per-route latency, as one ASGI middleware.

Bodies: ``Content-Length`` over the route's limit is refused before anything is read, and a
chunked body is counted as it arrives (``KIROKU_MAX_BODY_BYTES``; batch appends
``KIROKU_MAX_BATCH_BYTES``). Rate: login routes allow a burst per client address, refilled at a
steady rate per worker, because they are the only ones open to anonymous callers that cost a
signature check.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api import metrics, problems
from api.errors import BodyTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BATCH_PATH = "/v1/provisions/batch"
RATE_LIMITED_PREFIX = "/v1/auth/"


class TokenBuckets:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > 50_000:
                self._buckets.clear()
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[key] = (tokens - 1, now)
            return 0.0


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, max_batch: int,
                 login_rate: float = 5.0, login_burst: float = 30.0) -> None:
        self.app, self.max_body, self.max_batch = app, max_body, max_batch
        self.buckets = TokenBuckets(login_rate, login_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            if path.startswith(RATE_LIMITED_PREFIX):
                client = (scope.get("client") or ("?", 0))[0]
                wait = self.buckets.take(str(client))
                if wait:
                    await _problem(send_wrapper, "rate-limited", 429,
                                   "too many login attempts from this address; retry later",
                                   path, {"retry-after": str(max(1, round(wait)))})
                    return
            limit = self.max_batch if path == BATCH_PATH else self.max_body
            length = _content_length(scope)
            if length is not None and length > limit:
                await _problem(send_wrapper, "body-too-large", 413,
                               f"the body has {length} bytes; this route accepts at most {limit}",
                               path)
                return
            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(f"the body exceeds {limit} bytes for this route")
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                await _problem(send_wrapper, "body-too-large", 413,
                               f"the body exceeds {limit} bytes for this route", path)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            metrics.REQUEST_SECONDS.labels(scope.get("method", "?"), template,
                                           str(status_holder["status"])).observe(
                time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _problem(send: Send, code: str, status: int, detail: str, path: str,
                   headers: dict[str, str] | None = None) -> None:
    import json

    body = json.dumps(problems.problem(code, status, detail, path)).encode()
    raw = [(b"content-type", problems.PROBLEM_JSON.encode()),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
