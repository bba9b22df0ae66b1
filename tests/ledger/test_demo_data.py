"""Demo data: real-looking, deterministic, always lawful under the catalog, never personal."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from ledger.catalog import Catalog, load_catalog
from ledger.demo_data import (
    AGENCY_KINDS,
    NOT_PROVIDED_REASONS,
    DemoAgency,
    DemoProvision,
    demo_agencies,
    demo_provisions,
    demo_residents,
)

JST = timezone(timedelta(hours=9))
NOW = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)
PROVISION_KEYS = {
    "request_id", "subject", "requester", "provider", "basis", "affair", "items", "requested_at",
    "provided_at", "outcome", "reason", "non_disclosure", "operator",
}
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def agencies(catalog: Catalog) -> list[DemoAgency]:
    return demo_agencies(catalog)


@pytest.fixture(scope="module")
def residents() -> list[str]:
    return demo_residents(7, 2000)


@pytest.fixture(scope="module")
def many(catalog: Catalog, agencies: list[DemoAgency], residents: list[str]) -> list[DemoProvision]:
    return list(demo_provisions(catalog, agencies, residents, 20_000, seed=7, now=NOW))


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# --- agencies --------------------------------------------------------------------------------


def test_every_catalog_role_is_held_by_some_demo_agency(
    catalog: Catalog, agencies: list[DemoAgency]
) -> None:
    held = {role for agency in agencies for role in agency.roles}
    assert held == set(catalog.roles)


def test_agencies_have_unique_codes_known_kinds_and_registration_payloads(
    agencies: list[DemoAgency],
) -> None:
    codes = [a.code for a in agencies]
    assert len(set(codes)) == len(codes)
    assert "operator" not in codes  # reserved for the log operator's own entries
    for agency in agencies:
        assert agency.kind in AGENCY_KINDS
        assert agency.code.isascii() and agency.name_en.isascii() and agency.name_ja
        assert agency.to_payload() == {
            "code": agency.code, "name_ja": agency.name_ja, "name_en": agency.name_en,
            "kind": agency.kind, "roles": list(agency.roles),
        }


def _check_digit_ok(code: str) -> bool:
    # 全国地方公共団体コード check digit (JIS X 0402): weights 6..2, 11 - (sum mod 11), last digit.
    total = sum(int(d) * w for d, w in zip(code[:5], (6, 5, 4, 3, 2), strict=True))
    return int(code[5]) == (11 - total % 11) % 10


def test_local_governments_carry_valid_local_government_codes(agencies: list[DemoAgency]) -> None:
    local = [a for a in agencies if a.kind in ("municipality", "prefecture")]
    assert len({a.code for a in local if a.kind == "municipality"}) >= 5
    for agency in local:
        code = agency.code.split("-")[0]
        assert re.fullmatch(r"\d{6}", code) and _check_digit_ok(code), agency
        if agency.kind == "prefecture":
            assert code[2:5] == "000", agency
    by_code = {a.code: a for a in agencies}
    assert by_code["131130"].name_ja == "渋谷区" and by_code["130001"].name_ja == "東京都"


# The office titles under which each kind of body appears in the law's role strings.
_TITLES = {
    "mhlw": ("厚生労働大臣",), "moj": ("法務大臣",), "digital": ("内閣総理大臣",),
    "mic": ("総務大臣",), "mext": ("文部科学大臣",), "meti": ("経済産業大臣",),
    "nta": ("国税庁長官",),
    "jps": ("日本年金機構",), "kyokai-kenpo": ("全国健康保険協会", "医療保険者"),
    "chisai-kikin": ("地方公務員災害補償基金",), "sharoushi": ("全国社会保険労務士会連合会",),
    "municipality": ("市町村長", "保健所を設置する市", "都道府県知事等", "医療保険者"),
    "prefecture": ("都道府県知事",), "board-of-education": ("教育委員会",),
    "insurer": ("健康保険組合", "医療保険者"), "mutual-aid": ("共済組合", "医療保険者"),
    "wide-area-union": ("後期高齢者医療広域連合", "医療保険者"),
}
# Generic categories ("those who pay benefits under other statutes") name no office.
_GENERIC_PAYER = re.compile(r"支給(を行う|する)こととされている者$")


def test_roles_go_only_to_bodies_that_plausibly_hold_them(agencies: list[DemoAgency]) -> None:
    for agency in agencies:
        key = agency.code if agency.code in _TITLES else agency.kind
        if agency.code.endswith("-boe"):
            key = "board-of-education"
        for role in agency.roles:
            assert _GENERIC_PAYER.search(role) or any(t in role for t in _TITLES[key]), (
                agency.code, role,
            )
    by_code = {a.code: a for a in agencies}
    assert by_code["moj"].roles == ("法務大臣",)
    assert by_code["digital"].roles == ("内閣総理大臣",)
    # A town without a public health centre or welfare office cannot act as one.
    assert "都道府県知事又は保健所を設置する市（特別区を含む。）の長" in by_code["131130"].roles
    assert "都道府県知事又は保健所を設置する市（特別区を含む。）の長" not in by_code["133086"].roles
    assert "都道府県知事等" not in by_code["133086"].roles


# --- residents -------------------------------------------------------------------------------


def test_resident_ids_are_opaque_distinct_and_never_look_like_a_my_number() -> None:
    residents = demo_residents("any seed", 5000)
    assert len(set(residents)) == 5000
    for subject in residents:
        assert re.fullmatch(r"subj-[a-z2-7]{20}", subject), subject
        assert not re.search(r"\d{12}", subject)
    assert demo_residents("any seed", 10) == residents[:10]
    assert demo_residents("other seed", 10) != residents[:10]


# --- provisions ------------------------------------------------------------------------------


def test_every_provision_is_allowed_by_the_catalog_for_its_agencies_roles(
    catalog: Catalog, agencies: list[DemoAgency], many: list[DemoProvision]
) -> None:
    roles = {a.code: frozenset(a.roles) for a in agencies}
    for provision in many:
        p = provision.payload
        requester, provider = roles[p["requester"]], roles[p["provider"]]
        catalog.check(p["basis"], p["affair"], requester, provider, p["items"])
        assert provision.submitter in (p["requester"], p["provider"])


def test_provision_payloads_have_exactly_the_documented_shape(
    residents: list[str], many: list[DemoProvision]
) -> None:
    resident_set = set(residents)
    for provision in many:
        p = provision.payload
        assert set(p) == PROVISION_KEYS
        assert p["subject"] in resident_set
        assert RFC3339_Z.match(p["requested_at"])
        assert p["items"] and len(set(p["items"])) == len(p["items"])
        assert isinstance(p["non_disclosure"], bool)
        assert re.fullmatch(rf"op-{re.escape(p['requester'])}-\d\d", p["operator"])
        if p["outcome"] == "provided":
            assert p["reason"] is None and RFC3339_Z.match(p["provided_at"])
            delay = _parse(p["provided_at"]) - _parse(p["requested_at"])
            assert timedelta(0) <= delay <= timedelta(minutes=5)
        else:
            assert p["outcome"] == "not_provided"
            assert p["provided_at"] is None and p["reason"] in NOT_PROVIDED_REASONS


def test_outcome_and_non_disclosure_rates_are_realistic(many: list[DemoProvision]) -> None:
    outcomes = Counter(p.payload["outcome"] for p in many)
    assert 0.94 < outcomes["provided"] / len(many) < 0.98
    hidden = sum(p.payload["non_disclosure"] for p in many)
    assert 0 < hidden / len(many) < 0.015
    assert Counter(p.submitter == p.payload["provider"] for p in many)[True] > len(many) / 2


def test_the_same_seed_gives_the_same_provisions(
    catalog: Catalog, agencies: list[DemoAgency], residents: list[str]
) -> None:
    def run(seed: int, start: int = 0, n: int = 50) -> list[DemoProvision]:
        return list(demo_provisions(catalog, agencies, residents, n, seed=seed, start_index=start,
                                    now=NOW))

    assert run(7) == run(7)
    assert run(7) != run(8)
    # A continued run (start_index) is the tail of one long run.
    assert run(7, start=20, n=30) == run(7)[20:]


def test_request_ids_are_unique_per_submitter_and_new_when_continuing(
    catalog: Catalog, agencies: list[DemoAgency], residents: list[str], many: list[DemoProvision]
) -> None:
    keys = [(p.submitter, p.payload["request_id"]) for p in many]
    assert len(set(keys)) == len(keys)
    later = demo_provisions(catalog, agencies, residents, 1000, seed=7, start_index=20_000, now=NOW)
    assert not {p.payload["request_id"] for p in later} & {p.payload["request_id"] for p in many}


def test_times_fall_in_the_past_year_and_never_after_now(many: list[DemoProvision]) -> None:
    for provision in many:
        p = provision.payload
        requested = _parse(p["requested_at"])
        assert NOW - timedelta(days=367) < requested <= NOW
        if p["provided_at"]:
            assert _parse(p["provided_at"]) <= NOW


def test_now_close_to_midnight_still_never_yields_future_times(
    catalog: Catalog, agencies: list[DemoAgency], residents: list[str]
) -> None:
    just_after_midnight_jst = datetime(2026, 3, 2, 0, 0, 1, tzinfo=JST)
    for provision in demo_provisions(catalog, agencies, residents, 3000, seed=1,
                                     now=just_after_midnight_jst):
        for key in ("requested_at", "provided_at"):
            if provision.payload[key]:
                assert _parse(provision.payload[key]) <= just_after_midnight_jst


def test_most_provisions_happen_on_weekdays_in_japanese_business_hours(
    many: list[DemoProvision],
) -> None:
    local = [_parse(p.payload["requested_at"]).astimezone(JST) for p in many]
    in_hours = [
        t for t in local if t.weekday() < 5 and time(8, 30) <= t.time() <= time(17, 45)
    ]
    share = len(in_hours) / len(local)
    assert 0.85 < share < 0.995  # mostly business hours, but some overtime and holiday duty


def test_seasonal_peaks_make_june_busier_than_november(many: list[DemoProvision]) -> None:
    months = Counter(_parse(p.payload["requested_at"]).astimezone(JST).month for p in many)
    assert months[6] > 1.5 * months[11]
    assert months[7] + months[8] > 1.3 * (months[10] + months[11])
    assert months[2] + months[3] > 1.3 * (months[10] + months[11])


def test_a_provision_is_generated_lazily(
    catalog: Catalog, agencies: list[DemoAgency], residents: list[str]
) -> None:
    stream = demo_provisions(catalog, agencies, residents, 10**9, seed=3, now=NOW)
    first = next(stream)
    assert first.payload["request_id"] != next(stream).payload["request_id"]


def test_bad_arguments_are_refused_at_the_call_not_later(
    catalog: Catalog, agencies: list[DemoAgency], residents: list[str]
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        demo_provisions(catalog, agencies, residents, 1, seed=1, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="resident"):
        demo_provisions(catalog, agencies, [], 1, seed=1, now=NOW)
    with pytest.raises(ValueError, match="no catalog basis"):
        demo_provisions(catalog, [], residents, 1, seed=1, now=NOW)
