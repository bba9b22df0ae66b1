"""The legal-basis catalog: what the ledger allows, and how it tells an agency what went wrong."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from importlib import resources

import pytest

from ledger import errors
from ledger.catalog import Catalog, load_catalog, split_items


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _table_rows() -> list[dict[str, str]]:
    text = resources.files("ledger").joinpath("data/legal_basis.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


# --- parsing the ordinance table -------------------------------------------------------------


def test_every_line_of_the_table_becomes_one_basis_with_a_unique_id(catalog: Catalog) -> None:
    rows = _table_rows()
    assert len(rows) == 153
    assert len(catalog.bases) == 153
    ids = [basis.id for basis in catalog.bases.values()]
    assert len(set(ids)) == len(ids)
    assert catalog.version == "ordinance-r6-9@2025-04-01"


def test_basis_ids_number_the_lines_within_each_row_in_table_order(catalog: Catalog) -> None:
    bases = list(catalog.bases.values())
    for rec, basis in zip(_table_rows(), bases, strict=True):
        row, _line = basis.id.split("-")
        assert int(row) == basis.row == int(rec["row_no"])
        assert basis.affair_id == rec["row_no"]
        assert basis.requester == rec["requester_ja"]
        assert basis.provider == rec["provider_ja"]
        assert basis.affair_ja == rec["affair_ja"]
    assert [b.id for b in bases if b.row == 1][:4] == ["1-1", "1-2", "1-3", "1-4"]
    assert catalog.bases["1-2"].items == ("地方税関係情報", "住民票関係情報")


def test_every_item_and_role_has_a_japanese_and_an_english_label(catalog: Catalog) -> None:
    used_items = {item for basis in catalog.bases.values() for item in basis.items}
    assert used_items == set(catalog.items)
    for code, label in catalog.items.items():
        assert label.ja == code
        assert label.en.strip() and label.en.isascii()
    used_roles = {r for b in catalog.bases.values() for r in (b.requester, b.provider)}
    assert used_roles == set(catalog.roles)
    for role, label in catalog.roles.items():
        assert label.ja == role and label.en.strip()


def test_the_english_gloss_table_labels_exactly_the_items_in_use(catalog: Catalog) -> None:
    text = resources.files("ledger").joinpath("data/items_en.csv").read_text(encoding="utf-8")
    codes = [row["code"] for row in csv.DictReader(io.StringIO(text))]
    assert len(codes) == len(set(codes)), "an item is glossed twice"
    assert set(codes) == set(catalog.items), "stale or missing glosses"


def test_every_item_is_a_self_standing_name_without_top_level_enumerators(catalog: Catalog) -> None:
    for code in catalog.items:
        assert code.endswith("情報"), code
        outside_parens = re.sub(r"（[^（）]*）", "", code)
        outside_articles = re.sub(r"(条|項|号)又は第", "", outside_parens)
        assert "又は" not in outside_articles, code
        # Either a defined "…関係情報" term or an item that names its statute (or a known benefit).
        assert re.search(r"関係情報$|法(律|令)?(による|にいう|第)|給付金", code), code


def test_cells_are_split_on_the_law_enumerators_and_share_their_ending() -> None:
    assert split_items("地方税関係情報、住民票関係情報又は介護保険給付等関係情報") == (
        "地方税関係情報",
        "住民票関係情報",
        "介護保険給付等関係情報",
    )
    assert split_items(
        "身体障害者福祉法による身体障害者手帳、精神保健及び精神障害者福祉に関する法律による"
        "精神障害者保健福祉手帳又は知的障害者福祉法にいう知的障害者に関する情報"
    ) == (
        "身体障害者福祉法による身体障害者手帳に関する情報",
        "精神保健及び精神障害者福祉に関する法律による精神障害者保健福祉手帳に関する情報",
        "知的障害者福祉法にいう知的障害者に関する情報",
    )


def test_phrases_that_cannot_be_split_safely_are_kept_whole() -> None:
    # 又は between article numbers is one item.
    cell = "健康保険法第五十五条又は第百二十八条に規定する他の法令による給付の支給に関する情報"
    assert split_items(cell) == (cell,)
    # 若しくは inside one item is not split.
    cell = "母子保健法による養育医療の給付若しくは養育医療に要する費用の支給に関する情報"
    assert split_items(cell) == (cell,)
    # A piece that would lose its statute ("相談に関する情報") is not produced.
    cell = "何々法による相談又は支援に関する情報"
    assert split_items(cell) == (cell,)


def test_a_defined_term_has_one_code_wherever_it_appears() -> None:
    assert split_items(
        "特別児童扶養手当等の支給に関する法律による特別児童扶養手当の支給に関する情報"
        "（特別児童扶養手当関係情報）"
    ) == ("特別児童扶養手当関係情報",)
    assert split_items(
        "障害者関係情報（児童福祉法による判定、身体障害者手帳、精神障害者保健福祉手帳又は"
        "知的障害者に関する情報）"
    ) == ("障害者関係情報",)


def test_hand_read_cells_still_occur_in_the_table() -> None:
    from ledger.catalog import _READINGS

    cells = {rec["items_ja"] for rec in _table_rows()}
    assert set(_READINGS) <= cells, "a hand reading no longer matches the packaged table"


def test_the_catalog_is_read_only(catalog: Catalog) -> None:
    with pytest.raises(TypeError):
        catalog.bases["9-9"] = catalog.bases["1-1"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        catalog.version = "x"  # type: ignore[misc]


# --- check() ---------------------------------------------------------------------------------

_BASIS = "1-2"  # 厚生労働大臣 asks 市町村長 for 地方税関係情報 / 住民票関係情報, affair 1
_REQ = frozenset({"厚生労働大臣"})
_PROV = frozenset({"市町村長", "都道府県知事又は市町村長"})


def test_check_accepts_an_allowed_provision(catalog: Catalog) -> None:
    basis = catalog.check(_BASIS, "1", _REQ, _PROV, ["住民票関係情報"])
    assert basis.id == _BASIS
    assert catalog.check(_BASIS, "1", _REQ, _PROV, ("地方税関係情報", "住民票関係情報")) is basis


def test_check_accepts_every_basis_with_its_own_roles_and_items(catalog: Catalog) -> None:
    for basis in catalog.bases.values():
        got = catalog.check(
            basis.id, basis.affair_id, {basis.requester}, {basis.provider}, basis.items
        )
        assert got is basis


@pytest.mark.parametrize(
    ("args", "error", "in_message"),
    [
        (("999-1", "999", _REQ, _PROV, ["住民票関係情報"]), errors.UnknownBasis, "999-1"),
        ((_BASIS, "2", _REQ, _PROV, ["住民票関係情報"]), errors.AffairNotAllowed, "allowed: ['1']"),
        (
            (_BASIS, "1", {"市町村長"}, _PROV, ["住民票関係情報"]),
            errors.RequesterNotAllowed,
            "厚生労働大臣",
        ),
        (
            (_BASIS, "1", _REQ, {"法務大臣"}, ["住民票関係情報"]),
            errors.ProviderNotAllowed,
            "市町村長",
        ),
        ((_BASIS, "1", _REQ, _PROV, []), errors.ItemsNotAllowed, "got none"),
        ((_BASIS, "1", _REQ, _PROV, ["戸籍関係情報"]), errors.ItemsNotAllowed, "戸籍関係情報"),
        (
            (_BASIS, "1", _REQ, _PROV, ["住民票関係情報", "住民票関係情報"]),
            errors.ItemsNotAllowed,
            "once each",
        ),
    ],
    ids=["unknown-basis", "affair", "requester", "provider", "no-items", "item", "dup-item"],
)
def test_check_refuses_each_bad_field_with_its_own_error(
    catalog: Catalog, args: tuple, error: type[Exception], in_message: str
) -> None:
    with pytest.raises(error) as caught:
        catalog.check(*args)
    assert isinstance(caught.value, errors.NotAllowedByLegalBasis)
    message = str(caught.value)
    assert in_message in message
    if error is not errors.UnknownBasis:
        assert "got" in message and "allowed" in message


def test_check_reports_the_first_bad_field_in_a_fixed_order(catalog: Catalog) -> None:
    # Affair is checked before roles and items, so the agency fixes one thing at a time.
    with pytest.raises(errors.AffairNotAllowed):
        catalog.check(_BASIS, "2", set(), set(), [])


# --- payload ---------------------------------------------------------------------------------


def test_payload_has_exactly_the_catalog_loaded_shape(catalog: Catalog) -> None:
    payload = catalog.to_payload()
    assert set(payload) == {"version", "source", "bases", "items", "roles"}
    assert len(payload["bases"]) == 153
    assert set(payload["bases"][0]) == {
        "id", "row", "requester", "affair_id", "affair_ja", "affair_en", "provider", "items",
    }
    assert payload["bases"][1]["items"] == ["地方税関係情報", "住民票関係情報"]
    assert payload["items"]["戸籍関係情報"] == {
        "ja": "戸籍関係情報",
        "en": "Family-register (koseki) information",
    }
    assert set(payload["roles"]["法務大臣"]) == {"ja", "en"}


def test_payload_round_trips_through_json(catalog: Catalog) -> None:
    payload = catalog.to_payload()
    again = Catalog.from_payload(json.loads(json.dumps(payload, ensure_ascii=False)))
    assert again == catalog
    assert again.to_payload() == payload
    assert list(again.bases) == list(catalog.bases)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("roles"),
        lambda p: p.__setitem__("extra", 1),
        lambda p: p["bases"][0].__setitem__("row", "1"),
        lambda p: p["bases"][0].__setitem__("items", []),
        lambda p: p["bases"][0].__setitem__("provider", "unknown role"),
        lambda p: p["bases"][0]["items"].append("unknown item"),
        lambda p: p["bases"].append(copy.deepcopy(p["bases"][0])),
        lambda p: p["items"]["戸籍関係情報"].pop("en"),
    ],
    ids=["missing-key", "extra-key", "row-type", "no-items", "role", "item", "dup-id", "label"],
)
def test_a_malformed_payload_is_refused_not_half_loaded(catalog: Catalog, damage) -> None:
    payload = copy.deepcopy(catalog.to_payload())
    damage(payload)
    with pytest.raises(errors.MalformedStatement):
        Catalog.from_payload(payload)
