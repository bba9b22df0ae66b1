"""Deterministic, synthetic but real-looking demo data: agencies, residents and provisions.

Everything is derived from a seed, so a demo, a benchmark or a test can be rebuilt exactly. Nothing
here is personal data: residents are opaque pseudonyms (never anything shaped like a 12-digit My
Number), and agencies are real public bodies acting only in roles they hold under the law.

Timing follows how the network is used: Japanese business hours (Mon–Fri 08:30–17:45 JST) with a
little overtime and holiday duty, busier in June (local-tax notices), July–August (the child
allowance and child-rearing allowance current-status season, 現況届) and January–March (tax
returns).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from ledger.catalog import Basis, Catalog

__all__ = [
    "AGENCY_KINDS",
    "NOT_PROVIDED_REASONS",
    "DemoAgency",
    "DemoProvision",
    "demo_agencies",
    "demo_provisions",
    "demo_residents",
    "with_link_codes",
]

JST = timezone(timedelta(hours=9), "JST")

AGENCY_KINDS = frozenset(
    {"municipality", "prefecture", "ministry", "pension", "insurer", "mutual-aid",
     "wide-area-union", "other"}
)

#: Why a provision was not made, with relative frequencies among refusals.
NOT_PROVIDED_REASONS: dict[str, str] = {
    "no-record": "the provider holds no record for this subject",
    "subject-mismatch": "the link code did not match a subject the provider knows",
    "system-error": "the provider's system failed; the requester may retry",
    "withheld-by-law": "the provider may not disclose this record (e.g. a protection order)",
}
_REASON_WEIGHTS = (55, 15, 20, 10)

_PROVIDED_SHARE = 0.96
_NON_DISCLOSURE_SHARE = 0.005
_SUBMITTED_BY_PROVIDER_SHARE = 0.8
_LOCAL_PREFERENCE = 0.85
_LOCAL_KINDS = ("municipality", "prefecture")


@dataclass(frozen=True)
class DemoAgency:
    """An agency as registered with the log (the ``agency.registered`` payload)."""

    code: str
    name_ja: str
    name_en: str
    kind: str
    roles: tuple[str, ...]

    def to_payload(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name_ja": self.name_ja,
            "name_en": self.name_en,
            "kind": self.kind,
            "roles": list(self.roles),
        }


@dataclass(frozen=True)
class DemoProvision:
    """One provision statement to submit: who submits it and its ``provision`` payload."""

    submitter: str
    payload: dict[str, Any]


# --- agencies --------------------------------------------------------------------------------

# Who holds each role of the ordinance table. Roles are matched by their exact wording in the law;
# the tags name the kinds of body that can act in that role (a disjunctive role such as
# "都道府県知事又は市町村長" is held by prefectures and municipalities alike).
# Other-statute benefits that adjust insurance benefits: mostly workers' accident compensation
# (MHLW) and public employees' accident compensation (the Fund).
_OTHER_BENEFIT_PAYERS = ("mhlw", "chisai-kikin")
_MEDICAL_INSURERS = ("kyokai", "kenpo", "nhi-society", "mutual-aid", "wide-area", "municipality")
_PENSION_PAYERS = ("jps", "mutual-aid")
_ROLE_HOLDERS: dict[str, tuple[str, ...]] = {
    "厚生労働大臣": ("mhlw",),
    "法務大臣": ("moj",),
    # The Prime Minister's public-benefit bank-account registry is run by the Digital Agency.
    "内閣総理大臣": ("digital",),
    "国税庁長官": ("nta",),
    "経済産業大臣": ("meti",),
    "全国健康保険協会": ("kyokai",),
    "健康保険組合": ("kenpo",),
    "地方公務員災害補償基金": ("chisai-kikin",),
    "全国社会保険労務士会連合会": ("sharoushi",),
    "市町村長": ("municipality",),
    "市町村長（児童手当法第十七条第一項の表の下欄に掲げる者を含む。）": ("municipality",),
    "市町村長又は国民健康保険組合": ("municipality", "nhi-society"),
    "都道府県知事": ("prefecture",),
    # Public-assistance bodies: governors, city mayors and heads of towns with a welfare office.
    "都道府県知事等": ("prefecture", "welfare-office"),
    "都道府県知事又は市町村長": ("prefecture", "municipality"),
    "公営住宅法第二条第十六号に規定する事業主体である都道府県知事又は市町村長": (
        "prefecture", "municipality",
    ),
    "住宅地区改良法第二条第二項に規定する施行者である都道府県知事又は市町村長": (
        "prefecture", "municipality",
    ),
    "都道府県知事又は保健所を設置する市（特別区を含む。）の長": (
        "prefecture", "health-centre-city",
    ),
    "総務大臣又は都道府県知事": ("mic", "prefecture"),
    "厚生労働大臣又は都道府県知事": ("mhlw", "prefecture"),
    "厚生労働大臣、都道府県知事又は市町村長": ("mhlw", "prefecture", "municipality"),
    "厚生労働大臣又は日本年金機構": ("mhlw", "jps"),
    "厚生労働大臣若しくは日本年金機構又は共済組合等": ("mhlw", "jps", "mutual-aid"),
    "文部科学大臣、都道府県知事又は都道府県教育委員会": ("mext", "prefecture", "pref-boe"),
    "文部科学大臣又は都道府県教育委員会": ("mext", "pref-boe"),
    "都道府県教育委員会又は市町村教育委員会": ("pref-boe", "muni-boe"),
    "医療保険者又は後期高齢者医療広域連合": _MEDICAL_INSURERS,
    "医療保険者その他の法令による医療に関する給付の支給を行うこととされている者": _MEDICAL_INSURERS,
    "感染症の予防及び感染症の患者に対する医療に関する法律第三十九条第一項に規定する他の法律による"
    "医療に関する給付の支給を行うこととされている者": _MEDICAL_INSURERS,
    "健康保険法第五十五条又は第百二十八条に規定する他の法令による給付の支給を"
    "行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "健康保険法第五十五条に規定する他の法令による給付の支給を行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "船員保険法第三十三条に規定する他の法令による給付の支給を行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "国民健康保険法第五十六条第一項に規定する他の法令による給付の支給を行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "雇用保険法第三十七条第八項に規定する他の法令による給付の支給を行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "介護保険法第二十条に規定する他の法令による給付の支給を行うこととされている者": (
        _OTHER_BENEFIT_PAYERS
    ),
    "国民年金法その他の法令による年金である給付の支給を行うこととされている者": _PENSION_PAYERS,
    "国民年金法その他の法令による給付の支給を行うこととされている者": _PENSION_PAYERS,
    # Special child-rearing allowance (prefectures) and disability welfare allowances (city mayors).
    "特別児童扶養手当等の支給に関する法律その他の法令による障害を有する者について支給される手当を"
    "支給することとされている者": ("prefecture", "welfare-office"),
}

_CITY = ("municipality", "welfare-office", "health-centre-city")

# (code, name_ja, name_en, kind, tags, relative population for residents' home municipality).
# Municipal and prefectural codes are the real 全国地方公共団体コード (5 digits + check digit).
_AGENCIES: tuple[tuple[str, str, str, str, tuple[str, ...], float], ...] = (
    ("131130", "渋谷区", "Shibuya City", "municipality", _CITY, 0.23),
    ("131121", "世田谷区", "Setagaya City", "municipality", _CITY, 0.94),
    ("141003", "横浜市", "City of Yokohama", "municipality", _CITY, 3.77),
    ("271004", "大阪市", "Osaka City", "municipality", _CITY, 2.75),
    ("011002", "札幌市", "Sapporo City", "municipality", _CITY, 1.97),
    ("231002", "名古屋市", "Nagoya City", "municipality", _CITY, 2.33),
    ("401307", "福岡市", "Fukuoka City", "municipality", _CITY, 1.61),
    # A town: no welfare office (Tokyo's Nishitama office serves it) and no public health centre.
    ("133086", "奥多摩町", "Okutama Town", "municipality", ("municipality",), 0.005),
    ("131130-boe", "渋谷区教育委員会", "Shibuya City Board of Education", "municipality",
     ("muni-boe",), 0),
    ("141003-boe", "横浜市教育委員会", "Yokohama City Board of Education", "municipality",
     ("muni-boe",), 0),
    ("130001", "東京都", "Tokyo Metropolitan Government", "prefecture", ("prefecture",), 0),
    ("140007", "神奈川県", "Kanagawa Prefecture", "prefecture", ("prefecture",), 0),
    ("270008", "大阪府", "Osaka Prefecture", "prefecture", ("prefecture",), 0),
    ("010006", "北海道", "Hokkaido Prefectural Government", "prefecture", ("prefecture",), 0),
    ("230006", "愛知県", "Aichi Prefecture", "prefecture", ("prefecture",), 0),
    ("400009", "福岡県", "Fukuoka Prefecture", "prefecture", ("prefecture",), 0),
    ("130001-boe", "東京都教育委員会", "Tokyo Metropolitan Board of Education", "prefecture",
     ("pref-boe",), 0),
    ("mhlw", "厚生労働省", "Ministry of Health, Labour and Welfare", "ministry", ("mhlw",), 0),
    ("moj", "法務省", "Ministry of Justice", "ministry", ("moj",), 0),
    ("digital", "デジタル庁", "Digital Agency", "ministry", ("digital",), 0),
    ("mic", "総務省", "Ministry of Internal Affairs and Communications", "ministry", ("mic",), 0),
    ("mext", "文部科学省", "Ministry of Education, Culture, Sports, Science and Technology",
     "ministry", ("mext",), 0),
    ("meti", "経済産業省", "Ministry of Economy, Trade and Industry", "ministry", ("meti",), 0),
    ("nta", "国税庁", "National Tax Agency", "ministry", ("nta",), 0),
    ("jps", "日本年金機構", "Japan Pension Service", "pension", ("jps",), 0),
    ("kyokai-kenpo", "全国健康保険協会", "Japan Health Insurance Association (Kyokai Kenpo)",
     "insurer", ("kyokai",), 0),
    ("kenpo-its", "関東ＩＴソフトウェア健康保険組合", "Kanto IT Software Health Insurance Society",
     "insurer", ("kenpo",), 0),
    ("kenpo-toyota", "トヨタ自動車健康保険組合", "Toyota Motor Health Insurance Society", "insurer",
     ("kenpo",), 0),
    ("nhi-tokyo-ishi", "東京都医師国民健康保険組合",
     "Tokyo Physicians' National Health Insurance Society", "insurer", ("nhi-society",), 0),
    ("kkr", "国家公務員共済組合連合会",
     "Federation of National Public Service Personnel Mutual Aid Associations", "mutual-aid",
     ("mutual-aid",), 0),
    ("chikyoren", "地方職員共済組合", "Mutual Aid Association of Prefectural Government Personnel",
     "mutual-aid", ("mutual-aid",), 0),
    ("shigaku-kyosai", "日本私立学校振興・共済事業団",
     "Promotion and Mutual Aid Corporation for Private Schools of Japan", "mutual-aid",
     ("mutual-aid",), 0),
    ("koki-tokyo", "東京都後期高齢者医療広域連合",
     "Tokyo Metropolitan Wide-Area Union for Late-Stage Elderly Medical Care", "wide-area-union",
     ("wide-area",), 0),
    ("koki-osaka", "大阪府後期高齢者医療広域連合",
     "Osaka Prefecture Wide-Area Union for Late-Stage Elderly Medical Care", "wide-area-union",
     ("wide-area",), 0),
    ("chisai-kikin", "地方公務員災害補償基金", "Local Public Employees' Accident Compensation Fund",
     "other", ("chisai-kikin",), 0),
    ("sharoushi", "全国社会保険労務士会連合会",
     "Japan Federation of Labor and Social Security Attorney's Associations", "other",
     ("sharoushi",), 0),
)


def demo_agencies(catalog: Catalog) -> list[DemoAgency]:
    """Real public bodies, each with the catalog roles it plausibly holds (catalog role order).

    Raises ``ValueError`` if the catalog names a role this module does not know how to assign, so
    a new catalog cannot silently leave a role without any agency.
    """
    unknown = [role for role in catalog.roles if role not in _ROLE_HOLDERS]
    if unknown:
        raise ValueError(f"demo data does not know who holds the catalog roles {unknown}")
    agencies = []
    for code, name_ja, name_en, kind, tags, _population in _AGENCIES:
        roles = tuple(
            role for role in catalog.roles if set(_ROLE_HOLDERS[role]).intersection(tags)
        )
        agencies.append(DemoAgency(code, name_ja, name_en, kind, roles))
    return agencies


# --- residents -------------------------------------------------------------------------------

_TWELVE_DIGITS = re.compile(r"\d{12}")


def demo_residents(seed: int | str, n: int) -> list[str]:
    """``n`` distinct opaque subject pseudonyms ("subj-" + 20 base32 characters) from ``seed``."""
    residents: list[str] = []
    for i in range(n):
        for attempt in itertools.count():
            digest = hashlib.sha256(f"kiroku-demo/subject/{seed}/{i}/{attempt}".encode()).digest()
            subject = "subj-" + base64.b32encode(digest).decode("ascii")[:20].lower()
            # Never anything that could be mistaken for a My Number (12 digits).
            if not _TWELVE_DIGITS.search(subject):
                break
        residents.append(subject)
    return residents


# --- provisions ------------------------------------------------------------------------------

_BUSINESS_START = time(8, 30)
_BUSINESS_END = time(17, 45)
_EARLY = (time(7, 0), _BUSINESS_START)
_OVERTIME = (_BUSINESS_END, time(22, 30))
_HOLIDAY_DUTY = (time(9, 0), time(18, 0))
# Relative load per month (January = index 0): tax-return season, June local-tax notices, the
# July–August current-status season, quiet autumn.
_MONTH_LOAD = (1.3, 1.5, 1.5, 1.0, 0.9, 1.7, 1.4, 1.3, 0.9, 0.9, 0.8, 0.8)
_NON_BUSINESS_DAY_LOAD = 0.04
_OUT_OF_HOURS_SHARE = 0.03
# Fixed-date public holidays and the year-end closure (12/29–1/3); movable holidays are ignored.
_HOLIDAYS = frozenset(
    {(1, 1), (1, 2), (1, 3), (2, 11), (2, 23), (4, 29), (5, 3), (5, 4), (5, 5), (8, 11), (11, 3),
     (11, 23), (12, 29), (12, 30), (12, 31)}
)
_SEASONAL_BOOST = 3.0
_MAX_DELAY_SECONDS = 300


def demo_provisions(
    catalog: Catalog,
    agencies: Sequence[DemoAgency],
    residents: Sequence[str],
    n: int,
    seed: int | str,
    start_index: int = 0,
    now: datetime | None = None,
) -> Iterator[DemoProvision]:
    """Yield ``n`` provisions that the catalog allows for these agencies' roles.

    Item ``i`` depends only on ``(seed, start_index + i, now)`` and the inputs, so a run can be
    continued with a later ``start_index`` and gets new request ids. Times fall in the 365 JST days
    before ``now``'s day (default: the current time) and never after ``now``.
    """
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not residents:
        raise ValueError("need at least one resident")
    holders: dict[str, list[DemoAgency]] = {}
    for agency in agencies:
        for role in agency.roles:
            holders.setdefault(role, []).append(agency)
    bases = [b for b in catalog.bases.values() if b.requester in holders and b.provider in holders]
    if not bases:
        raise ValueError("no catalog basis has both its requester and provider among the agencies")

    # Validate now, at the call, rather than at the first next() of a generator.
    return _generate(agencies, residents, n, seed, start_index, now, holders, bases)


def _generate(
    agencies: Sequence[DemoAgency],
    residents: Sequence[str],
    n: int,
    seed: int | str,
    start_index: int,
    now: datetime,
    holders: dict[str, list[DemoAgency]],
    bases: list[Basis],
) -> Iterator[DemoProvision]:
    days, day_cum = _day_weights(now)
    basis_cum = [_basis_weights(bases, month) for month in range(1, 13)]
    homes = _home_municipalities(agencies, residents, seed)
    seed_tag = hashlib.sha256(f"kiroku-demo/{seed}".encode()).hexdigest()[:6]
    staff = {a.code: _staff_cum_weights(a.code) for a in agencies}

    for index in range(start_index, start_index + n):
        rng = random.Random(f"kiroku-demo/provision/{seed}/{index}")
        day = days[bisect.bisect(day_cum, rng.random() * day_cum[-1])]
        month_cum = basis_cum[day.month - 1]
        basis = bases[bisect.bisect(month_cum, rng.random() * month_cum[-1])]
        resident = rng.randrange(len(residents))
        home = homes[resident]
        requester = _pick(holders[basis.requester], home, rng, exclude=None)
        provider = _pick(holders[basis.provider], home, rng, exclude=requester.code)
        requested = _time_on(day, rng)
        provided = rng.random() < _PROVIDED_SHARE
        delay = min(_MAX_DELAY_SECONDS, 1 + int(rng.lognormvariate(3.0, 1.0)))
        provided_at = min(requested + timedelta(seconds=delay), now) if provided else None
        submitter = provider if rng.random() < _SUBMITTED_BY_PROVIDER_SHARE else requester
        # A few staff do most of the work (Zipf-like): weights 1, 1/2, 1/3, …
        cum = staff[requester.code]
        operator_no = 1 + bisect.bisect(cum, rng.random() * cum[-1])
        yield DemoProvision(
            submitter=submitter.code,
            payload={
                "request_id": f"req-{seed_tag}-{index:07d}",
                "subject": residents[resident],
                "requester": requester.code,
                "provider": provider.code,
                "basis": basis.id,
                "affair": basis.affair_id,
                "items": _pick_items(basis, rng),
                "requested_at": _rfc3339(requested),
                "provided_at": _rfc3339(provided_at) if provided_at else None,
                "outcome": "provided" if provided else "not_provided",
                "reason": None
                if provided
                else rng.choices(list(NOT_PROVIDED_REASONS), weights=_REASON_WEIGHTS)[0],
                "non_disclosure": rng.random() < _NON_DISCLOSURE_SHARE,
                "operator": f"op-{requester.code}-{operator_no:02d}",
            },
        )


def _day_weights(now: datetime) -> tuple[list[date], list[float]]:
    today = now.astimezone(JST).date()
    days = [today - timedelta(days=back) for back in range(365, 0, -1)]
    weights = (
        _MONTH_LOAD[d.month - 1] * (1.0 if _is_business_day(d) else _NON_BUSINESS_DAY_LOAD)
        for d in days
    )
    return days, list(itertools.accumulate(weights))


def _is_business_day(d: date) -> bool:
    return d.weekday() < 5 and (d.month, d.day) not in _HOLIDAYS


def _basis_weights(bases: list[Basis], month: int) -> list[float]:
    def weight(basis: Basis) -> float:
        if month == 6 or month <= 3:  # local-tax notices / tax returns
            seasonal = "地方税関係情報" in basis.item_set or basis.requester == "国税庁長官"
        elif month in (7, 8):  # current-status reviews of child (-rearing) allowances
            seasonal = "児童手当" in basis.affair_ja or "児童扶養手当" in basis.affair_ja
        else:
            seasonal = False
        return _SEASONAL_BOOST if seasonal else 1.0

    return list(itertools.accumulate(weight(b) for b in bases))


def _home_municipalities(
    agencies: Sequence[DemoAgency], residents: Sequence[str], seed: int | str
) -> list[str]:
    population = {row[0]: row[5] for row in _AGENCIES}
    towns = [a.code for a in agencies if population.get(a.code, 0) > 0]
    if not towns:
        return ["" for _ in residents]
    rng = random.Random(f"kiroku-demo/homes/{seed}")
    return rng.choices(towns, weights=[population[t] for t in towns], k=len(residents))


def _pick(
    candidates: list[DemoAgency], home: str, rng: random.Random, exclude: str | None
) -> DemoAgency:
    pool = [a for a in candidates if a.code != exclude] or candidates
    if rng.random() < _LOCAL_PREFERENCE:
        # A resident's own municipality (or its prefecture) handles most of their affairs.
        for local in (
            [a for a in pool if a.code.split("-")[0] == home],
            [a for a in pool if a.kind in _LOCAL_KINDS and a.code[:2] == home[:2]],
        ):
            if local:
                return rng.choice(local)
    return rng.choice(pool)


def _staff_cum_weights(code: str) -> list[float]:
    """Cumulative Zipf weights over 3–8 operators, the count fixed per agency code."""
    count = 3 + hashlib.sha256(code.encode()).digest()[0] % 6
    return list(itertools.accumulate(1 / k for k in range(1, count + 1)))


def _pick_items(basis: Basis, rng: random.Random) -> list[str]:
    if len(basis.items) == 1:
        return list(basis.items)
    sizes = range(1, len(basis.items) + 1)
    k = rng.choices(sizes, weights=[0.6**k for k in range(len(basis.items))])[0]
    chosen = set(rng.sample(basis.items, k))
    return [item for item in basis.items if item in chosen]


def _time_on(day: date, rng: random.Random) -> datetime:
    if not _is_business_day(day):
        start, end = _HOLIDAY_DUTY  # a skeleton staff on weekends and holidays
    elif rng.random() < _OUT_OF_HOURS_SHARE:
        start, end = _EARLY if rng.random() < 0.3 else _OVERTIME
    else:
        start, end = _BUSINESS_START, _BUSINESS_END
    lo = start.hour * 3600 + start.minute * 60
    hi = end.hour * 3600 + end.minute * 60
    second = rng.randrange(lo, hi)
    local = datetime.combine(day, time(), JST) + timedelta(seconds=second)
    return local.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_link_codes(payload: dict[str, Any], codes: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The version-2 form of a generated payload (docs/log-format.md): the requester's and the
    provider's link codes for its resident instead of the shared ``subject``. ``codes`` maps
    (agency, pseudonym) to the code the registry issued (ledger.linkcodes)."""
    out = {k: v for k, v in payload.items() if k != "subject"}
    out["requester_code"] = codes[(payload["requester"], payload["subject"])]
    out["provider_code"] = codes[(payload["provider"], payload["subject"])]
    return out
