"""Alert subscriptions: a resident asks to be told when a provision about them is recorded.

E-mail addresses must be confirmed: the subscription starts ``pending_confirmation`` and a
confirmation message with a one-time code goes to the address; alerts start once the resident
(logged in) posts that code. Without it anyone could point a stranger's mailbox at kiroku. A
webhook is active at once: the resident receives its signing secret in the answer to the POST
(never again), and proves control of the endpoint by checking signatures.

The answer to a resident shows their own address or URL back to them; nothing here is logged.
"""

from __future__ import annotations

import threading
import weakref
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api import problems
from api.deps import ResidentDep, ServicesDep
from api.services import Services
from ledger.application import Ledger
from projections import alerts as pa
from projections.store import ViewStore

router = APIRouter(tags=["subscriptions"])

_EMAIL_EXAMPLE: dict[str, Any] = {
    "id": "0c7f4f7e-5a63-4c1e-9f3e-1d2c3b4a5968", "channel": "email",
    "target": "hanako@example.jp", "status": "pending_confirmation",
    "created_at": "2026-06-10T02:00:00Z"}
_WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": "5d0e1f2a-3b4c-4d5e-8f60-718293a4b5c6", "channel": "webhook",
    "target": "https://hooks.example.jp/kiroku", "status": "active",
    "created_at": "2026-06-10T02:00:00Z",
    "secret": "q3Jx0c2V4bVh6c0R3a1pXb2xYbE9hV0pqT2xR"}


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"channel": "email", "target": "hanako@example.jp"},
        {"channel": "webhook", "target": "https://hooks.example.jp/kiroku"}]})

    channel: Literal["email", "webhook"]
    target: str = Field(max_length=2048, description="An e-mail address, or an https URL "
                        "(http://127.0.0.1 only for local testing)")


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": _WEBHOOK_EXAMPLE})

    id: str
    channel: str
    target: str
    status: Literal["active", "pending_confirmation"]
    created_at: str
    secret: str | None = Field(default=None, description="Webhooks, in the POST answer only: "
                               "the HMAC-SHA256 key of the Kiroku-Signature header")


class SubscriptionList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"subscriptions": [_EMAIL_EXAMPLE]}})

    subscriptions: list[SubscriptionOut]


class Confirmation(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"token": "mJ2x8Qk3Zr0aP1sT4uV6wA"}})

    token: str = Field(max_length=128, description="The code from the confirmation e-mail")


SubscriptionId = Annotated[str, Path(max_length=64, description="A subscription's id")]


_stores: weakref.WeakKeyDictionary[Ledger, ViewStore] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _store(services: Services) -> ViewStore:
    """One engine per open ledger (as projections.runner's), closed with it."""
    with _lock:
        store = _stores.get(services.ledger)
        if store is None:
            store = ViewStore(services.ledger.settings.database_url)
            _stores[services.ledger] = store
            weakref.finalize(services.ledger, store.close)
        return store


@router.post("/v1/me/subscriptions", status_code=201, response_model=SubscriptionOut,
             response_model_exclude_none=True, responses=problems.responses(401, 403, 409, 422),
             summary="Be told when a provision about me is recorded")
def subscribe(body: SubscriptionRequest, resident: ResidentDep, services: ServicesDep
              ) -> dict[str, Any]:
    """E-mail: ``pending_confirmation`` until the code mailed to the address is posted to
    ``…/{id}/confirm``. Webhook: active at once; ``secret`` appears in this answer only. 422
    ``invalid-subscription`` for a malformed address or a URL that is not https; 409
    ``too-many-subscriptions`` beyond ten."""
    with _store(services).write() as session:
        created, _ = pa.create(session, resident.subject, body.channel, body.target)
    return created.to_json(with_secret=True)


@router.get("/v1/me/subscriptions", response_model=SubscriptionList,
            response_model_exclude_none=True, responses=problems.responses(401, 403),
            summary="My alert subscriptions")
def list_mine(resident: ResidentDep, services: ServicesDep) -> dict[str, Any]:
    with _store(services).read() as session:
        return {"subscriptions": [s.to_json() for s in pa.list_for(session, resident.subject)]}


@router.post("/v1/me/subscriptions/{subscription_id}/confirm", response_model=SubscriptionOut,
             response_model_exclude_none=True, responses=problems.responses(401, 403, 404, 422),
             summary="Confirm an e-mail subscription with the mailed code")
def confirm(subscription_id: SubscriptionId, body: Confirmation, resident: ResidentDep,
            services: ServicesDep) -> dict[str, Any]:
    """422 ``invalid-confirmation`` for a wrong code or one older than 24 hours; another
    resident's subscription answers 404 like a missing one."""
    with _store(services).write() as session:
        return pa.confirm(session, resident.subject, subscription_id, body.token).to_json()


@router.delete("/v1/me/subscriptions/{subscription_id}", response_model=SubscriptionOut,
               response_model_exclude_none=True, responses=problems.responses(401, 403, 404),
               summary="Stop an alert subscription")
def unsubscribe(subscription_id: SubscriptionId, resident: ResidentDep, services: ServicesDep
                ) -> dict[str, Any]:
    """Deletes the subscription, its address or URL and every undelivered message to it;
    answers with what was deleted."""
    with _store(services).write() as session:
        return pa.remove(session, resident.subject, subscription_id).to_json()
