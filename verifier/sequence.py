"""Checking entries in log order, and naming what went wrong at the first bad one.

``check_run`` is the reference check: it walks lines one by one with the exact state (previous
leaf hashes, key registry, Merkle compact range) and raises EntryError at the first bad entry.
Worker processes run the same per-entry checks on chunks (see ``chunks.py``); whenever a chunk is
not plainly clean, the main process re-runs it here, so every reported failure comes from this
module.

Decision procedure for ordering failures (docs/verifier.md). Entries at positions 0..p-1 passed,
so each has ``index`` equal to its position and links to its predecessor. At position p the entry
claims index ``i`` and link ``prev``; ``H(k)`` is the leaf hash at position k, ``H(-1)`` the zero
hash:

1. ``i == p`` and ``prev == H(p-1)``: in order; go on to the content checks.
2. ``i == p``, ``prev != H(p-1)``:
   a. ``prev == H(p-2)``: this entry belongs right after p-2, so the one at p-1 was slipped in
      (and later ones renumbered): ``entry-inserted`` at p-1;
   b. the next line claims index p and links to H(p-1): this entry is the intruder:
      ``entry-inserted`` at p;
   c. otherwise ``chain-broken`` at p.
3. ``i > p`` (a gap). Call it *resumes* when the next line claims index p, links to H(p-1),
   and this entry does not link to the next one (so the two are not merely swapped):
   a. resumes, and index i is also claimed by a later line or lies past the export's end: this
      entry was slipped in: ``entry-inserted`` at p;
   b. resumes (entry i was moved back here), or a later line claims index p:
      ``entries-reordered`` at p;
   c. no line claims index p: ``entry-missing`` at p.
4. ``i < p`` (an index used again):
   a. the leaf is byte-identical to the one at p-1: ``entry-inserted`` at p (a duplicate);
   b. ``i == p-1`` and ``prev == H(p-2)``: the real entry p-1 follows an intruder:
      ``entry-inserted`` at p-1;
   c. otherwise ``entry-inserted`` at p (a replay of an earlier index).
A reordering is a permutation, so it always shows first as a gap (3), never as an index used
again (4). Content checks at one index run in this order: ``payload-altered``,
``key-not-valid``, ``bad-signature``, then the line's redundant fields (``malformed-entry``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from verifier.entry import ZERO_PREV, Entry, EntryProblem, leaf_hash_b64, parse_line
from verifier.erased import ErasedRanges
from verifier.errors import EntryError
from verifier.keys import KeyProblem, KeyRegistry, signature_valid
from verifier.merkle import CompactRange


@dataclass
class LogState:
    """What the checks need to know about entries [0, position)."""

    registry: KeyRegistry
    position: int = 0
    last_hash: bytes | None = None  # H(position-1)
    before_last: bytes | None = None  # H(position-2)
    compact: CompactRange = field(default_factory=CompactRange)
    erased: ErasedRanges = field(default_factory=ErasedRanges)  # erased by retention

    def prev_for(self, offset: int) -> str | None:
        """Base64 of H(position-1-offset), the zero hash before index 0, None if unknown."""
        at = self.position - 1 - offset
        if at < 0:
            return ZERO_PREV if at == -1 else None
        h = self.last_hash if offset == 0 else self.before_last
        return None if h is None else leaf_hash_b64(h)

    def advance(self, entry: Entry) -> None:
        self.compact.append(entry.leaf_hash)
        self.before_last, self.last_hash = self.last_hash, entry.leaf_hash
        self.position += 1


class Lookahead:
    """An iterator over lines that can show the next one without consuming it."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(lines)
        self._next: list[bytes] = []

    def __iter__(self) -> Lookahead:
        return self

    def __next__(self) -> bytes:
        if self._next:
            return self._next.pop()
        return next(self._it)

    def peek(self) -> bytes | None:
        if not self._next:
            try:
                self._next.append(next(self._it))
            except StopIteration:
                return None
        return self._next[-1]


def content_problem(
    entry: Entry, registry: KeyRegistry, check_signatures: bool
) -> tuple[str, str] | None:
    """Checks that need no neighbour, in the documented order: (kind, message) or None."""
    if entry.payload_problem is not None:
        return ("payload-altered", entry.payload_problem)
    try:
        public_key = registry.public_key_for(entry)
    except KeyProblem as exc:
        return ("key-not-valid", str(exc))
    if check_signatures and not signature_valid(public_key, entry.signature, entry.statement):
        return (
            "bad-signature",
            f"signature does not verify over JCS(statement) with {entry.agency}'s key {entry.key_id}",
        )
    if entry.line_problem is not None:
        return ("malformed-entry", entry.line_problem)
    return None


def _parse(line: bytes, position: int) -> Entry:
    try:
        return parse_line(line)
    except EntryProblem as exc:
        raise EntryError(str(exc), index=position, kind="malformed-entry") from None


def _peek_entry(lines: Lookahead) -> Entry | None:
    line = lines.peek()
    if line is None:
        return None
    try:
        return parse_line(line)
    except EntryProblem:
        return None


def _scan_rest(lines: Lookahead, wanted: set[int]) -> tuple[set[int], int]:
    """Which of ``wanted`` indices later lines claim, and how many lines are left."""
    found: set[int] = set()
    count = 0
    for line in lines:
        count += 1
        try:
            index = parse_line(line).index
        except EntryProblem:
            continue
        if index in wanted:
            found.add(index)
    return found, count


def _order_error(entry: Entry, state: LogState, lines: Lookahead) -> EntryError | None:
    """Steps 1-4 of the module's decision procedure; None when the entry is in order."""
    p, i = state.position, entry.index
    h1, h2 = state.prev_for(0), state.prev_for(1)
    if i == p:
        if entry.prev == h1:
            return None
        if h2 is not None and entry.prev == h2:
            return EntryError(
                f"entry {p} links to entry {p - 2}, so the entry at {p - 1} was inserted",
                index=p - 1, kind="entry-inserted",
            )
        following = _peek_entry(lines)
        if following is not None and following.index == p and following.prev == h1:
            return EntryError(
                f"entry at position {p} does not link to {p - 1} and the next entry is the real {p}",
                index=p, kind="entry-inserted",
            )
        return EntryError(
            f"prev is {entry.prev}, expected {h1} (leaf hash of entry {p - 1})",
            index=p, kind="chain-broken",
        )
    if i > p:
        following = _peek_entry(lines)
        resumes = (
            following is not None and following.index == p and following.prev == h1
            and entry.prev != leaf_hash_b64(following.leaf_hash)
        )
        found, remaining = _scan_rest(lines, {p, i})
        if resumes and (i in found or i > p + remaining):
            return EntryError(
                f"entry at position {p} claims index {i}, which is used elsewhere or past the end;"
                f" the real entry {p} comes right after it",
                index=p, kind="entry-inserted",
            )
        if resumes or p in found:
            return EntryError(
                f"position {p} holds entry {i}; entry {p} appears later in the export",
                index=p, kind="entries-reordered",
            )
        return EntryError(
            f"position {p} holds entry {i}, expected {p}; no entry {p} in the export",
            index=p, kind="entry-missing",
        )
    if state.last_hash is not None and entry.leaf_hash == state.last_hash:
        return EntryError(
            f"entry at position {p} is a copy of entry {p - 1}", index=p, kind="entry-inserted"
        )
    if i == p - 1 and h2 is not None and entry.prev == h2:
        return EntryError(
            f"entry {i} appears at position {p} after an entry that was slipped in before it",
            index=p - 1, kind="entry-inserted",
        )
    return EntryError(
        f"position {p} holds index {i} again, expected {p}", index=p, kind="entry-inserted"
    )


def check_run(
    state: LogState,
    lines: Lookahead,
    *,
    check_signatures: bool,
    limit: int | None = None,
) -> int:
    """Check up to ``limit`` lines (all if None) in order, advancing ``state``.

    Returns how many lines were consumed; raises EntryError at the first bad entry. The
    ``lines`` iterator may be read further than ``limit`` to classify a failure.
    """
    done = 0
    registry = state.registry
    while limit is None or done < limit:
        try:
            line = next(lines)
        except StopIteration:
            break
        p = state.position
        entry = _parse(line, p)
        order = _order_error(entry, state, lines)
        if order is not None:
            raise order
        problem = content_problem(entry, registry, check_signatures)
        if problem is not None:
            raise EntryError(problem[1], index=p, kind=problem[0])
        try:
            event = registry.event_for(entry)
        except KeyProblem as exc:
            raise EntryError(str(exc), index=p, kind="key-not-valid") from None
        if event is not None:
            registry.apply(event)
        if entry.erased:
            state.erased.add(p)
        state.advance(entry)
        done += 1
    return done
