"""Japanese and English names for what the views store as codes, from the registry the ledger
rebuilds from its own registration entries (agency names, the legal-basis catalog).

Labels are the latest registered ones, also for ``as_of`` queries: a renamed agency is shown by
its current name, the record itself (codes, times, outcome) is as it was.
"""

from __future__ import annotations

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
    """Look-ups over the registry; an unknown code is shown as itself rather than failing."""

    def __init__(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry
        self._catalog: Catalog | None = None
        self._affairs: dict[str, Label] = {}

    @classmethod
    def for_ledger(cls, ledger: Ledger) -> Labels:
        def fresh() -> Registry:
            ledger.refresh_registry(force=False)  # at most once a second
            return ledger.registry

        return cls(fresh)

    def agency(self, code: str) -> AgencyLabel:
        state = self._registry().agencies.get(code)
        if state is None:
            return AgencyLabel(code, code, code)
        return AgencyLabel(code, state.name_ja, state.name_en)

    def affair(self, affair: str, basis: str | None = None) -> Label:
        catalog = self._current_catalog()
        if catalog is not None and basis is not None:
            found = catalog.bases.get(basis)
            if found is not None and found.affair_id == affair:
                return Label(affair, found.affair_ja, found.affair_en)
        return self._affairs.get(affair) or Label(affair, affair, affair)

    def item(self, code: str) -> ItemLabel:
        catalog = self._current_catalog()
        label = catalog.items.get(code) if catalog is not None else None
        return ItemLabel(code, label.ja, label.en) if label else ItemLabel(code, code, code)

    def _current_catalog(self) -> Catalog | None:
        catalog = self._registry().catalog
        if catalog is not self._catalog:
            self._catalog = catalog
            self._affairs = {}
            if catalog is not None:
                for basis in catalog.bases.values():
                    self._affairs.setdefault(
                        basis.affair_id, Label(basis.affair_id, basis.affair_ja, basis.affair_en))
        return catalog
