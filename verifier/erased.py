"""Which entries of a log are erased by retention (docs/log-format.md "Export").

An erased entry keeps its leaf, so the chain, the tree and the agency's signature over the
commitment are all still checked; only its payload and salt are gone. Auditors want to know how
many there are and where, to compare with the retention period (the Act keeps records 7 years),
so the verifier reports them as inclusive index ranges, which stay few: erasure runs in log
order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class ErasedRanges:
    """Inclusive ``(first, last)`` index ranges of erased entries, in log order."""

    ranges: list[tuple[int, int]] = field(default_factory=list)

    def add(self, index: int) -> None:
        if self.ranges and self.ranges[-1][1] == index - 1:
            self.ranges[-1] = (self.ranges[-1][0], index)
        else:
            self.ranges.append((index, index))

    def extend(self, ranges: Iterable[tuple[int, int]]) -> None:
        """Append later ranges (a worker's chunk), joining one that continues the last."""
        for first, last in ranges:
            if self.ranges and self.ranges[-1][1] == first - 1:
                self.ranges[-1] = (self.ranges[-1][0], last)
            else:
                self.ranges.append((first, last))

    @property
    def count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def describe(self, limit: int = 10) -> str:
        """``3-7, 12, 20-25`` (the first ``limit`` ranges, then how many more)."""
        shown = [str(a) if a == b else f"{a}-{b}" for a, b in self.ranges[:limit]]
        if len(self.ranges) > limit:
            shown.append(f"and {len(self.ranges) - limit} more ranges")
        return ", ".join(shown)
