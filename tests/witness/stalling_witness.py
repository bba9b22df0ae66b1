"""``kiroku witness serve`` that stalls once a cosigned size is durable, before it answers.

Test-only, for the crash test in test_split_view.py (started by ``WitnessProcess.start(
stall_after_persist=True)``)::

    python -m tests.witness.stalling_witness MARKER witness serve --state … --key … --log …

It wraps ``Witness.add_checkpoint`` from outside: the real method runs (it checks the request
and commits the new size, root and note to the witness's state), then this wrapper writes MARKER
and blocks for good, so the cosignature is never sent. The test waits for MARKER and SIGKILLs
the process there, which is a crash at the worst point: state persisted, client unanswered.
Nothing of this is in the witness's own code.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path


def main() -> None:
    marker = Path(sys.argv[1])
    from witness.protocol import Witness

    persist_and_answer = Witness.add_checkpoint

    def persist_then_stall(self: Witness, body: bytes) -> str:
        lines = persist_and_answer(self, body)
        marker.write_text("persisted\n")
        threading.Event().wait()  # never answers: the test kills the process here
        return lines

    Witness.add_checkpoint = persist_then_stall  # type: ignore[method-assign]
    from kiroku.cli import main as kiroku

    kiroku(args=sys.argv[2:], prog_name="kiroku")


if __name__ == "__main__":
    main()
