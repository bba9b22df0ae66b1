"""``kiroku.client.verify_record`` refuses a record whose checkpoint lacks the witness quorum."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.settings import parse_witnesses
from api.witnessing import Witnessing, witnessed_note
from kiroku.client import verify_record
from tests.dbutil import sqlite_database
from tests.ledger.fixtures import make_world
from verifier.cosignature import QuorumNotMet
from verifier.note import NoteVerifier
from witness.keys import WitnessKey
from witness.protocol import Witness
from witness.server import create_witness_app
from witness.state import WitnessState


def test_verify_record_needs_the_witness_quorum(tmp_path: Path) -> None:
    with sqlite_database() as url:
        world = make_world(url, tmp_path / "home")
        ledger = world.ledger
        receipt = ledger.append(world.statement())
        plain = ledger.checkpoint()
        keys = [WitnessKey.generate(f"witness.test/c{i}") for i in (1, 2)]
        witnessing = Witnessing(ledger, parse_witnesses(
            ",".join(f"{k.name} http://c{i} {k.vkey}" for i, k in enumerate(keys))), 2)
        # Only the first witness answers.
        witness = Witness(keys[0], WitnessState(tmp_path / "c1"),
                          {ledger.origin: [NoteVerifier.from_vkey(ledger.vkey)]})
        with TestClient(create_witness_app(witness), base_url=witnessing.witnesses[0].url) as http:
            assert witnessing.submit(witnessing.witnesses[0], http)  # type: ignore[arg-type]
        one = witnessed_note(ledger, witnessing.witnesses, 1)
        assert one is not None and witnessed_note(ledger, witnessing.witnesses, 2) is None
        line = next(iter(ledger.export(receipt.index, receipt.index + 1)))
        detail = {"record": {"index": receipt.index}, "leaf": line["leaf"],
                  "payload": line["payload"], "salt": line["salt"], "checkpoint": one,
                  "inclusion": ledger.prove_inclusion(receipt.index, plain.size)}
        vkeys = [k.vkey for k in keys]
        assert verify_record(detail, ledger.vkey, witnesses=vkeys, quorum=1)["index"] == \
            receipt.index
        with pytest.raises(QuorumNotMet, match="1 valid cosignature.*at least 2"):
            verify_record(detail, ledger.vkey, witnesses=vkeys)
        with pytest.raises(QuorumNotMet, match="0 valid"):
            verify_record({**detail, "checkpoint": plain.note}, ledger.vkey, witnesses=vkeys[:1])
        ledger.close()
