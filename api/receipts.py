"""Receipts with their inclusion proof against the latest signed checkpoint."""

from __future__ import annotations

from typing import Any

from ledger.application import Ledger, Receipt
from ledger.checkpoints import Checkpoint


def receipt_url(receipt: Receipt) -> str:
    return f"/v1/provisions/{receipt.id}/receipt"


def receipt_json(ledger: Ledger, receipt: Receipt, checkpoint: Checkpoint | None,
                 *, with_proof: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {**receipt.to_json(), "checkpoint": None, "inclusion": None,
                            "receipt_url": receipt_url(receipt)}
    if checkpoint is not None and checkpoint.size > receipt.index:
        body["checkpoint"] = checkpoint.note
        if with_proof:
            body["inclusion"] = ledger.prove_inclusion(receipt.index, checkpoint.size)
    return body
