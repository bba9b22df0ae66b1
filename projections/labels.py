"""Japanese and English names for what the views store as codes, from the registry the ledger
rebuilds from its own registration entries (agency names, the legal-basis catalog).

Labels are the latest registered ones, also for ``as_of`` queries: a renamed agency is shown by
its current name, the record itself (codes, times, outcome) is as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.application import Ledger
from ledger.catalog import Catalog
from ledger.registry import Registry


@dataclass(frozen=True, slots=True)
class AgencyLabel:
    code: str
    name_ja: str
    name_en: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "name_ja": self.name_ja, "name_en": self.name_en}


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    ja: str
    en: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "ja": self.ja, "en": self.en}


@dataclass(frozen=True, slots=True)
class ItemLabel:
    code: str
    ja: str
    en: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "ja": self.ja, "en": self.en}


class Labels:
    """Look-ups over the registry; an unknown code is shown as itself rather than failing.

    Answers are memoised until the registry applies another registration entry (its position
    moves): a resident's page looks up the same few agencies, affairs and items fifty times.
    """

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry
        self._catalog: Catalog | None = None
        self._affairs: dict[str, Label] = {}
        self._seen: tuple[int, int] | None = None
        self._memo: dict[tuple[str, str, str | None], Any] = {}

    @classmethod
    def for_ledger(cls, ledger: Ledger) -> Labels:
        def fresh() -> Registry:
            ledger.refresh_registry(force=False)  # at most once a second
            return ledger.registry

        return cls(fresh)

    def _current(self) -> tuple[Registry, dict[tuple[str, str, str | None], Any]]:
        registry = self._registry()
        seen = (id(registry), registry.position)
        if seen != self._seen:
            self._seen, self._memo = seen, {}
        return registry, self._memo

    def agency(self, code: str) -> AgencyLabel:
        registry, memo = self._current()
        found: AgencyLabel | None = memo.get(("agency", code, None))
        if found is None:
            state = registry.agencies.get(code)
            found = (AgencyLabel(code, code, code) if state is None
                     else AgencyLabel(code, state.name_ja, state.name_en))
            memo[("agency", code, None)] = found
        return found

    def affair(self, affair: str, basis: str | None = None) -> Label:
        registry, memo = self._current()
        found: Label | None = memo.get(("affair", affair, basis))
        if found is None:
            found = memo[("affair", affair, basis)] = self._affair(registry, affair, basis)
        return found

    def _affair(self, registry: Registry, affair: str, basis: str | None) -> Label:
        catalog = self._current_catalog(registry)
        if catalog is not None and basis is not None:
            found = catalog.bases.get(basis)
            if found is not None and found.affair_id == affair:
                return Label(affair, found.affair_ja, found.affair_en)
        return self._affairs.get(affair) or Label(affair, affair, affair)

    def basis_row(self, basis: str) -> int | None:
        """The row of the legal-basis table (the ordinance's Art. 2 table) a basis id names."""
        registry, _ = self._current()
        catalog = self._current_catalog(registry)
        found = catalog.bases.get(basis) if catalog is not None else None
        return None if found is None else int(found.row)

    def item(self, code: str) -> ItemLabel:
        registry, memo = self._current()
        found: ItemLabel | None = memo.get(("item", code, None))
        if found is None:
            catalog = self._current_catalog(registry)
            label = catalog.items.get(code) if catalog is not None else None
            found = ItemLabel(code, label.ja, label.en) if label else ItemLabel(code, code, code)
            memo[("item", code, None)] = found
        return found

    def items(self, codes_json: str) -> list[ItemLabel]:
        """Labels of a JSON array of item codes, as the views store it."""
        _, memo = self._current()
        found: tuple[ItemLabel, ...] | None = memo.get(("items", codes_json, None))
        if found is None:
            found = tuple(self.item(code) for code in json.loads(codes_json))
            if len(memo) < 10_000:
                memo[("items", codes_json, None)] = found
        return list(found)

    def _current_catalog(self, registry: Registry) -> Catalog | None:
        catalog = registry.catalog
        if catalog is not self._catalog:
            self._catalog = catalog
            self._affairs = {}
            if catalog is not None:
                for basis in catalog.bases.values():
                    self._affairs.setdefault(
                        basis.affair_id, Label(basis.affair_id, basis.affair_ja, basis.affair_en))
        return catalog
