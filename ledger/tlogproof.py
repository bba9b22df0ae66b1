"""Offline proofs of one log entry in the C2SP tlog-proof format (writer side).

https://c2sp.org/tlog-proof: ``c2sp.org/tlog-proof@v1``, an optional ``extra`` line, ``index
N``, the inclusion proof hashes (leaf's sibling first), an empty line, then the checkpoint note
verbatim (with any witness cosignatures). The spec leaves the leaf itself to the application
and gives ``extra`` for "additional data necessary to reconstruct the record hash": kiroku puts
there, base64-encoded, the RFC 8785 JSON object

    {"format": "kiroku-entry/v1", "leaf": base64(leaf bytes),
     "payload": <the statement's payload or null once erased>, "salt": base64(salt) or null}

so the file alone lets its holder show what was recorded: the leaf hashes into the proof, and the
leaf's salted commitment binds the payload (docs/log-format.md "Offline proofs"). The extra data
is not authenticated by itself (the spec says not to trust it implicitly): every part of it is
checked against the leaf hash and the signed root by ``kiroku verify proof``.
"""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

import rfc8785
from sqlalchemy import select

from ledger.application import Ledger
from ledger.errors import InvalidRequest, NotFound
from ledger.schema import log_entry

HEADER = "c2sp.org/tlog-proof@v1"
EXTRA_FORMAT = "kiroku-entry/v1"


def entry_extra(line: dict[str, Any]) -> bytes:
    """The ``extra`` data of an export line: leaf bytes, payload and salt (JCS JSON)."""
    return rfc8785.dumps({"format": EXTRA_FORMAT, "leaf": line["leaf"],
                          "payload": line.get("payload"), "salt": line.get("salt")})


def entry_proof(ledger: Ledger, index: int, note: str, size: int) -> str:
    """The tlog-proof of entry ``index`` in the checkpoint ``note`` of tree ``size``."""
    if not 0 <= index < size:
        raise InvalidRequest(f"entry {index} is not covered by the checkpoint of size {size}")
    line = next(iter(ledger.export(index, index + 1)))
    proof = ledger.prove_inclusion(index, size)
    lines = [HEADER, "extra " + base64.b64encode(entry_extra(line)).decode(), f"index {index}",
             *proof["proof"]]
    return "\n".join(lines) + "\n\n" + note


def entry_index(ledger: Ledger, provision_id: UUID) -> int:
    """The log index of the statement that recorded provision ``provision_id``."""
    table = ledger.log.events_record_cls.__table__
    with ledger.log.transaction(commit=False) as session:
        row = session.execute(
            select(log_entry.c.idx).join(table, table.c.id == log_entry.c.notification_id)
            .where(table.c.originator_id == provision_id, table.c.originator_version == 1)
        ).first()
    if row is None:
        raise NotFound(f"no provision {provision_id} in the log")
    return int(row.idx)
