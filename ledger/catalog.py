"""The legal-basis catalog: which requester may ask which provider for which items, and why.

Built from the table in Article 2 of 令和6年デジタル庁・総務省令第9号 (the successor of the My
Number Act's old 別表第二), packaged as ``ledger/data/legal_basis.csv`` (see
``ledger/data/PROVENANCE.md``).
The ledger refuses a provision the catalog does not allow (My Number Act Art. 19(8): specific
personal information may be provided over the network only as the table lists), so
:meth:`Catalog.check` runs on every append and is kept to dict and frozenset lookups.

Item codes are the law's own item names. A cell of the table often lists several items
("地方税関係情報又は住民票関係情報"); it is split into individual items so that a provision records
exactly which ones were provided. Splitting rules (Japanese legal drafting, 法令用語):

- ``、`` and ``又は`` separate the items of a cell (又は is the top-level "or").
- ``若しくは`` is the lower-level "or" *inside* one item, and its scope cannot be read mechanically
  ("母子保健法による養育医療の給付若しくは養育医療に要する費用の支給に関する情報"), so it is not
  split, except in the few cells read by hand in :data:`_READINGS`.
- ``及び`` and ``並びに`` are never split: in this table they occur only inside statute titles
  ("母子及び父子並びに寡婦福祉法") or single compound procedures ("調査及び判定").
- ``又は`` and ``、`` inside full-width parentheses or between article numbers
  ("第五十五条又は第百二十八条") are part of one item.
- A shared ending is distributed: in "A、B又はCに関する情報" the items are "Aに関する情報",
  "Bに関する情報" and "Cに関する情報".
- A definitional parenthesis names the item by its defined term:
  "…の支給に関する情報（特別児童扶養手当関係情報）" is "特別児童扶養手当関係情報", and
  "障害者関係情報（…に関する情報）" is "障害者関係情報", so the same item has one code everywhere.
- If a split piece would not stand on its own (it neither is a defined ``…関係情報`` term nor names
  its statute), the whole cell is kept as one item rather than guessed at.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from ledger.errors import (
    AffairNotAllowed,
    ItemsNotAllowed,
    MalformedStatement,
    ProviderNotAllowed,
    RequesterNotAllowed,
    UnknownBasis,
)

__all__ = ["Basis", "Catalog", "Label", "load_catalog", "split_items"]

CATALOG_VERSION = "ordinance-r6-9@2025-04-01"
CATALOG_SOURCE = (
    "令和6年デジタル庁・総務省令第9号 第2条の表 (e-Gov law data, version in force 2025-04-01; "
    "a sample of 153 requester-provider lines from 53 rows)"
)

_DATA_PACKAGE = "ledger"
_TABLE_FILE = "data/legal_basis.csv"
_ITEMS_EN_FILE = "data/items_en.csv"


@dataclass(frozen=True, slots=True)
class Label:
    """A name in Japanese (authoritative, the law's words) and English (the project's gloss)."""

    ja: str
    en: str


@dataclass(frozen=True)
class Basis:
    """One requester–provider line of the ordinance table.

    ``id`` is ``"{row}-{n}"``, n the 1-based position of the line within its row. ``requester`` and
    ``provider`` are role strings exactly as the law words them; ``items`` are item codes.
    """

    id: str
    row: int
    requester: str
    affair_id: str
    affair_ja: str
    affair_en: str
    provider: str
    items: tuple[str, ...]
    # Precomputed for check(), which runs on every append.
    item_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "item_set", frozenset(self.items))

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "row": self.row,
            "requester": self.requester,
            "affair_id": self.affair_id,
            "affair_ja": self.affair_ja,
            "affair_en": self.affair_en,
            "provider": self.provider,
            "items": list(self.items),
        }


@dataclass(frozen=True)
class Catalog:
    """An immutable legal-basis catalog. The mappings are read-only views."""

    version: str
    source: str
    bases: Mapping[str, Basis]
    items: Mapping[str, Label]
    roles: Mapping[str, Label]

    def __post_init__(self) -> None:
        for name in ("bases", "items", "roles"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))

    def check(
        self,
        basis_id: str,
        affair: str,
        requester_roles: Collection[str],
        provider_roles: Collection[str],
        items: Sequence[str],
    ) -> Basis:
        """Return the basis if it allows this provision; raise the specific refusal otherwise.

        ``requester_roles``/``provider_roles`` are the roles the requesting and providing agencies
        are registered for (pass frozensets for O(1) membership). Implements the ordinance table
        check behind My Number Act Art. 19(8).
        """
        basis = self.bases.get(basis_id)
        if basis is None:
            raise UnknownBasis(
                f"unknown legal basis {basis_id!r}: the catalog {self.version} has no such line; "
                f"use an id like '1-2' (ordinance row '-' line within the row)"
            )
        if affair != basis.affair_id:
            raise AffairNotAllowed(
                f"basis {basis.id} is for affair {basis.affair_id!r} ({basis.affair_en}); "
                f"got affair {affair!r}, allowed: [{basis.affair_id!r}]"
            )
        if basis.requester not in requester_roles:
            raise RequesterNotAllowed(
                f"basis {basis.id} allows only the requester role {basis.requester!r} "
                f"({self._role_en(basis.requester)}); got a requester registered for "
                f"{_show(requester_roles)}, allowed: [{basis.requester!r}]"
            )
        if basis.provider not in provider_roles:
            raise ProviderNotAllowed(
                f"basis {basis.id} allows only the provider role {basis.provider!r} "
                f"({self._role_en(basis.provider)}); got a provider registered for "
                f"{_show(provider_roles)}, allowed: [{basis.provider!r}]"
            )
        if not items:
            raise ItemsNotAllowed(
                f"a provision must name at least one item; got none, allowed under basis "
                f"{basis.id}: {_show(basis.items)}"
            )
        if not basis.item_set.issuperset(items):
            bad = [item for item in items if item not in basis.item_set]
            raise ItemsNotAllowed(
                f"basis {basis.id} does not allow item(s) {_show(bad)}; "
                f"got {_show(items)}, allowed: {_show(basis.items)}"
            )
        if len(set(items)) != len(items):
            raise ItemsNotAllowed(
                f"items must be listed once each; got {_show(items)}, allowed: {_show(basis.items)}"
            )
        return basis

    def _role_en(self, role: str) -> str:
        label = self.roles.get(role)
        return label.en if label else role

    def to_payload(self) -> dict[str, Any]:
        """The ``catalog.loaded`` payload (docs/log-format.md)."""
        return {
            "version": self.version,
            "source": self.source,
            "bases": [basis.to_payload() for basis in self.bases.values()],
            "items": {code: {"ja": lab.ja, "en": lab.en} for code, lab in self.items.items()},
            "roles": {role: {"ja": lab.ja, "en": lab.en} for role, lab in self.roles.items()},
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Catalog:
        """Parse a ``catalog.loaded`` payload; raise :class:`MalformedStatement` if malformed."""
        _expect_keys(payload, {"version", "source", "bases", "items", "roles"}, "catalog payload")
        version = _expect_str(payload["version"], "version")
        source = _expect_str(payload["source"], "source")
        items = _parse_labels(payload["items"], "items")
        roles = _parse_labels(payload["roles"], "roles")
        raw_bases = payload["bases"]
        if not isinstance(raw_bases, list):
            raise MalformedStatement(
                f"catalog 'bases' must be a list; got {type(raw_bases).__name__}"
            )
        bases: dict[str, Basis] = {}
        for raw in raw_bases:
            basis = _parse_basis(raw)
            if basis.id in bases:
                raise MalformedStatement(f"catalog lists basis {basis.id!r} twice")
            for role in (basis.requester, basis.provider):
                if role not in roles:
                    raise MalformedStatement(f"basis {basis.id} names role {role!r} not in 'roles'")
            for item in basis.items:
                if item not in items:
                    raise MalformedStatement(f"basis {basis.id} names item {item!r} not in 'items'")
            bases[basis.id] = basis
        return cls(version=version, source=source, bases=bases, items=items, roles=roles)


# --- loading the packaged table --------------------------------------------------------------


@functools.cache
def load_catalog() -> Catalog:
    """Build the catalog from the packaged ordinance table (cached; the catalog is immutable)."""
    table = _read_resource(_TABLE_FILE)
    glosses = csv.DictReader(io.StringIO(_read_resource(_ITEMS_EN_FILE)))
    items_en = {row["code"]: row["en"] for row in glosses}
    bases: dict[str, Basis] = {}
    role_en: dict[str, list[str]] = {}
    item_codes: dict[str, None] = {}
    line_in_row: dict[int, int] = {}
    for rec in csv.DictReader(io.StringIO(table)):
        row = int(rec["row_no"])
        line_in_row[row] = line_in_row.get(row, 0) + 1
        items = split_items(rec["items_ja"])
        basis = Basis(
            id=f"{row}-{line_in_row[row]}",
            row=row,
            requester=rec["requester_ja"],
            affair_id=str(row),
            affair_ja=rec["affair_ja"],
            affair_en=rec["affair_en"],
            provider=rec["provider_ja"],
            items=items,
        )
        bases[basis.id] = basis
        role_en.setdefault(rec["requester_ja"], []).append(rec["requester_en"])
        role_en.setdefault(rec["provider_ja"], []).append(rec["provider_en"])
        item_codes.update(dict.fromkeys(items))
    missing = [code for code in item_codes if code not in items_en]
    if missing:
        raise ValueError(f"{_ITEMS_EN_FILE} has no English label for items {missing}")
    return Catalog(
        version=CATALOG_VERSION,
        source=CATALOG_SOURCE,
        bases=bases,
        items={code: Label(code, items_en[code]) for code in item_codes},
        # The same role is glossed differently on different lines ("MHLW Minister" /
        # "Minister of Health, Labour and Welfare"); keep the most explicit (longest) gloss.
        roles={role: Label(role, max(ens, key=len)) for role, ens in role_en.items()},
    )


def _read_resource(name: str) -> str:
    return resources.files(_DATA_PACKAGE).joinpath(name).read_text(encoding="utf-8")


# --- splitting a cell of the table into items -----------------------------------------------

# Cells whose 若しくは / shared prefix cannot be read mechanically, read by hand (see module doc).
_READINGS: dict[str, tuple[str, ...]] = {
    # "児童福祉法による" governs both the assessment and "障害児入所支援若しくは措置".
    "児童福祉法による児童及びその家庭についての調査及び判定、障害児入所支援若しくは措置、"
    "身体障害者福祉法による身体障害者手帳、精神保健及び精神障害者福祉に関する法律による"
    "精神障害者保健福祉手帳又は知的障害者福祉法にいう知的障害者に関する情報": (
        "児童福祉法による児童及びその家庭についての調査及び判定に関する情報",
        "児童福祉法による障害児入所支援に関する情報",
        "児童福祉法による措置に関する情報",
        "身体障害者福祉法による身体障害者手帳に関する情報",
        "精神保健及び精神障害者福祉に関する法律による精神障害者保健福祉手帳に関する情報",
        "知的障害者福祉法にいう知的障害者に関する情報",
    ),
    # Here 若しくは joins a middle-level list that itself uses 、; the payments under the Child
    # Welfare Act (医療費、療育の給付若しくは…給付費の支給) are kept as one item.
    "児童福祉法による児童及びその家庭についての調査及び判定若しくは小児慢性特定疾病医療費、"
    "療育の給付若しくは障害児入所給付費の支給、身体障害者福祉法による身体障害者手帳、"
    "精神保健及び精神障害者福祉に関する法律による精神障害者保健福祉手帳、"
    "知的障害者福祉法にいう知的障害者若しくは母子及び父子並びに寡婦福祉法による資金の貸付け"
    "に関する情報、障害者自立支援給付関係情報又は難病の患者に対する医療等に関する法律による"
    "特定医療費の支給に関する情報": (
        "児童福祉法による児童及びその家庭についての調査及び判定に関する情報",
        "児童福祉法による小児慢性特定疾病医療費、療育の給付若しくは障害児入所給付費の支給に関する情報",
        "身体障害者福祉法による身体障害者手帳に関する情報",
        "精神保健及び精神障害者福祉に関する法律による精神障害者保健福祉手帳に関する情報",
        "知的障害者福祉法にいう知的障害者に関する情報",
        "母子及び父子並びに寡婦福祉法による資金の貸付けに関する情報",
        "障害者自立支援給付関係情報",
        "難病の患者に対する医療等に関する法律による特定医療費の支給に関する情報",
    ),
    # 職業転換給付金 (Act on Comprehensive Promotion of Labor Policies Art. 18) is a benefit in its
    # own right although the cell does not name its statute, so the guard would keep it whole.
    "特別児童扶養手当関係情報又は職業転換給付金の支給に関する情報": (
        "特別児童扶養手当関係情報",
        "職業転換給付金の支給に関する情報",
    ),
    # "母子保健法による" governs every service in the list.
    "母子保健法による相談、支援、保健指導、新生児の訪問指導、健康診査、妊産婦の訪問指導、"
    "産後ケア事業又は未熟児の訪問指導に関する情報": tuple(
        f"母子保健法による{service}に関する情報"
        for service in (
            "相談",
            "支援",
            "保健指導",
            "新生児の訪問指導",
            "健康診査",
            "妊産婦の訪問指導",
            "産後ケア事業",
            "未熟児の訪問指導",
        )
    ),
}

_MASK = {"、": "\x00", "又は": "\x01"}
_UNMASK = {v: k for k, v in _MASK.items()}
_PARENS = re.compile(r"（[^（）]*）")
_BETWEEN_ARTICLES = re.compile(r"(条|項|号)又は(第)")
_SEPARATOR = re.compile(r"、|又は")
_TERM_THEN_DEFINITION = re.compile(r"^(.+関係情報)（.*）$")
_DEFINITION_THEN_TERM = re.compile(r"^.+（([^（）、]+関係情報)）$")
_SHARED_ENDING = "に関する情報"
# A piece stands on its own if it is a defined term or names the statute it comes from.
_STANDS_ALONE = re.compile(r"関係情報$|法(律|令)?(による|にいう|第)")


def split_items(cell: str) -> tuple[str, ...]:
    """Split one ``items_ja`` cell into item names (the item codes). See the module docstring."""
    if cell in _READINGS:
        return _READINGS[cell]
    masked = _PARENS.sub(lambda m: _mask(m.group(0)), cell)
    masked = _BETWEEN_ARTICLES.sub(lambda m: m.group(1) + _MASK["又は"] + m.group(2), masked)
    pieces = [_unmask(p) for p in _SEPARATOR.split(masked)]
    items: list[str] = []
    for i, piece in enumerate(pieces):
        if not piece.endswith(("情報", "）")):
            following = next((p for p in pieces[i + 1 :] if p.endswith("情報")), "")
            if not following.endswith(_SHARED_ENDING):
                return (cell,)
            piece += _SHARED_ENDING
        items.append(_defined_term(piece))
    if len(items) > 1 and not all(_STANDS_ALONE.search(item) for item in items):
        return (cell,)
    return tuple(dict.fromkeys(items))


def _mask(text: str) -> str:
    for plain, masked in _MASK.items():
        text = text.replace(plain, masked)
    return text


def _unmask(text: str) -> str:
    for masked, plain in _UNMASK.items():
        text = text.replace(masked, plain)
    return text


def _defined_term(item: str) -> str:
    if m := _TERM_THEN_DEFINITION.match(item):
        return m.group(1)
    if m := _DEFINITION_THEN_TERM.match(item):
        return m.group(1)
    return item


# --- payload parsing helpers -----------------------------------------------------------------


def _show(values: Iterable[str]) -> str:
    return "[" + ", ".join(repr(v) for v in sorted(values)) + "]"


def _expect_keys(value: Any, keys: set[str], what: str) -> None:
    if not isinstance(value, Mapping):
        raise MalformedStatement(f"{what} must be an object; got {type(value).__name__}")
    if set(value) != keys:
        raise MalformedStatement(
            f"{what} must have exactly the keys {sorted(keys)}; got {sorted(value)}"
        )


def _expect_str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise MalformedStatement(f"catalog {what!r} must be a non-empty string; got {value!r}")
    return value


def _parse_labels(raw: Any, what: str) -> dict[str, Label]:
    if not isinstance(raw, Mapping):
        raise MalformedStatement(f"catalog {what!r} must be an object; got {type(raw).__name__}")
    labels: dict[str, Label] = {}
    for key, value in raw.items():
        _expect_keys(value, {"ja", "en"}, f"catalog {what}[{key!r}]")
        labels[key] = Label(
            _expect_str(value["ja"], f"{what}.ja"), _expect_str(value["en"], f"{what}.en")
        )
    return labels


_BASIS_KEYS = {"id", "row", "requester", "affair_id", "affair_ja", "affair_en", "provider", "items"}


def _parse_basis(raw: Any) -> Basis:
    _expect_keys(raw, _BASIS_KEYS, "catalog basis")
    row = raw["row"]
    if not isinstance(row, int) or isinstance(row, bool) or row < 1:
        raise MalformedStatement(f"basis 'row' must be a positive integer; got {row!r}")
    items = raw["items"]
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise MalformedStatement(
            f"basis 'items' must be a non-empty list of strings; got {items!r}"
        )
    return Basis(
        id=_expect_str(raw["id"], "basis id"),
        row=row,
        requester=_expect_str(raw["requester"], "requester"),
        affair_id=_expect_str(raw["affair_id"], "affair_id"),
        affair_ja=_expect_str(raw["affair_ja"], "affair_ja"),
        affair_en=_expect_str(raw["affair_en"], "affair_en"),
        provider=_expect_str(raw["provider"], "provider"),
        items=tuple(items),
    )
