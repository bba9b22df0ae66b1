"""Getting the operator's checkpoints cosigned by witnesses, and publishing the witnessed one.

Each configured witness has a thread of its own. Woken when a checkpoint is signed (and every
few seconds, so a witness that was down catches up), it sends the latest checkpoint with a
consistency proof from the size that witness last cosigned (c2sp.org/tlog-witness
add-checkpoint); on 409 it records the size the witness reports and re-sends from there. Every
returned cosignature is verified with the witness's key before it is stored. Requests time out
(``KIROKU_WITNESS_TIMEOUT``), and no thread here holds a lock that appends, checkpoints or the
projections need: a slow or absent witness delays only its own cosignature.

A checkpoint counts as witnessed when k of the n configured witnesses (``KIROKU_WITNESS_QUORUM``)
cosigned it; ``witnessed_note`` re-verifies the stored cosignatures before publishing them.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Sequence

import httpx

from api.settings import WitnessEndpoint
from ledger.application import Ledger
from ledger.witnessed import Cosignature, WitnessRecords
from verifier.cosignature import verify_cosignatures
from verifier.errors import VerificationError
from verifier.note import parse_note
from witness.client import WitnessConflict, WitnessError, add_checkpoint

log = logging.getLogger("kiroku.api")

RETRY_SECONDS = 5.0


class Witnessing:
    def __init__(self, ledger: Ledger, witnesses: Sequence[WitnessEndpoint], quorum: int, *,
                 timeout: float = 5.0, retry: float = RETRY_SECONDS) -> None:
        self.ledger = ledger
        self.witnesses = list(witnesses)
        self.quorum = quorum
        self.timeout = timeout
        self.retry = retry
        self.records = WitnessRecords(ledger)
        self._wake = {w.vkey: threading.Event() for w in self.witnesses}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # Threads ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._stopping.clear()
        for witness in self.witnesses:
            thread = threading.Thread(target=self._run, args=(witness,), daemon=True,
                                      name=f"kiroku-witness-{witness.name}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self._threads = []

    def notify(self) -> None:
        """A checkpoint was signed: every witness thread sends it now."""
        for event in self._wake.values():
            event.set()

    def _run(self, witness: WitnessEndpoint) -> None:
        wake = self._wake[witness.vkey]
        with httpx.Client(timeout=self.timeout) as http:
            while not self._stopping.is_set():
                try:
                    self.submit(witness, http)
                except Exception:  # never let the thread die; the next wake-up retries
                    log.exception("witness %s: submission failed", witness.name)
                wake.wait(self.retry)
                wake.clear()

    # One submission --------------------------------------------------------------------------
    def submit(self, witness: WitnessEndpoint, http: httpx.Client) -> bool:
        """Send the latest checkpoint to ``witness`` unless it already cosigned it; True when a
        cosignature for it is stored."""
        checkpoint = self.ledger.latest_checkpoint()
        if checkpoint is None:
            return False
        if self.records.has(witness.vkey, checkpoint.size):
            return True
        old = self.records.known_size(witness.vkey)
        for _ in range(3):  # the first answer may be a 409 naming the size to prove from
            if old > checkpoint.size:
                log.warning("witness %s reports size %d, above the log's %d", witness.name, old,
                            checkpoint.size)
                return False
            proof: list[bytes] = []
            if 0 < old < checkpoint.size:
                proof = [base64.b64decode(h) for h in
                         self.ledger.prove_consistency(old, checkpoint.size)["proof"]]
            try:
                lines = add_checkpoint(http, witness.url, old, proof, checkpoint.note)
            except WitnessConflict as conflict:
                self.records.set_known_size(witness.vkey, conflict.size)
                old = conflict.size
                continue
            except WitnessError as exc:
                log.warning("witness %s did not cosign size %d: %s", witness.name,
                            checkpoint.size, exc)
                return False
            return self._store(witness, checkpoint.size, checkpoint.root, checkpoint.note, lines)
        return False

    def _store(self, witness: WitnessEndpoint, size: int, root: bytes, note: str,
               lines: str) -> bool:
        """Keep the witness's cosignature line if it verifies over this checkpoint."""
        try:
            cosigned = verify_cosignatures(note + lines, [witness.verifier])
        except VerificationError as exc:
            log.warning("witness %s answered with an invalid cosignature: %s", witness.name, exc)
            return False
        if witness.name not in cosigned.timestamps:
            log.warning("witness %s answered without a cosignature by its key", witness.name)
            return False
        line = next(s for s in parse_note(note + lines).signatures if witness.verifier.matches(s))
        text = f"\u2014 {line.name} {base64.b64encode(line.key_id + line.signature).decode()}\n"
        self.records.add(Cosignature(witness.vkey, size, root, text,
                                     cosigned.timestamps[witness.name]))
        return True


def witnessed_note(ledger: Ledger, witnesses: Sequence[WitnessEndpoint], quorum: int, *,
                   min_size: int = 0) -> str | None:
    """The newest checkpoint (of size >= ``min_size``) with ``quorum`` valid cosignatures from
    ``witnesses``: the operator's signed note with the cosignature lines appended (signed-note
    allows any number of signature lines), or None."""
    if not witnesses or quorum < 1:
        return None
    records = WitnessRecords(ledger)
    by_vkey = {w.vkey: w for w in witnesses}
    for size in records.candidates(list(by_vkey), quorum, min_size=min_size):
        checkpoint = records.checkpoint_at(size)
        if checkpoint is None:
            continue
        lines = [c.line for c in sorted(records.cosignatures(size, checkpoint.root),
                                        key=lambda c: c.witness) if c.witness in by_vkey]
        note = checkpoint.note + "".join(lines)
        try:
            cosigned = verify_cosignatures(note, [w.verifier for w in witnesses])
        except VerificationError:
            log.warning("stored cosignatures for size %d do not verify; not published", size)
            continue
        if len(cosigned.timestamps) >= quorum:
            return note
    return None


def checkpoint_for_proof(ledger: Ledger, witnesses: Sequence[WitnessEndpoint], quorum: int,
                         index: int) -> tuple[str, int] | None:
    """The checkpoint an offline proof of entry ``index`` should carry, as (note, size).

    With witnesses configured: the newest witnessed checkpoint covering the entry (None until
    there is one, so no proof goes out without its cosignatures). Without: the latest signed
    checkpoint, if it covers the entry.
    """
    if witnesses:
        note = witnessed_note(ledger, witnesses, quorum, min_size=index + 1)
        return None if note is None else (note, int(note.split("\n", 2)[1]))
    latest = ledger.latest_checkpoint()
    if latest is None or latest.size <= index:
        return None
    return latest.note, latest.size
