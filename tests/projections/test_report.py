"""Agency audit reports: counts, refusals, exports, and each anomaly raised on a crafted log and
not on a normal one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from projections.anomalies import resident_ref
from projections.errors import UnknownAgency
from projections.report import AgencyReport, write_charts, write_csv
from projections.runner import catch_up
from tests.ledger.fixtures import World
from tests.projections.logs import WEDNESDAY_10_JST, normal_log, provision


def _report(world: World, **kwargs: object) -> dict:
    catch_up(world.ledger)
    return AgencyReport.for_ledger(world.ledger).get(world.requester, **kwargs)  # type: ignore[arg-type]


def _flags(report: dict) -> dict[str, int]:
    found = report["anomalies"]
    return {"off_hours": found["off_hours"]["count"],
            "operator_outliers": len(found["operator_outliers"]),
            "bursts": len(found["bursts"]), "repeated_lookups": len(found["repeated_lookups"])}


def test_a_normal_log_raises_no_anomaly(world: World) -> None:
    world.ledger.append_batch(normal_log(world))
    assert _flags(_report(world)) == {"off_hours": 0, "operator_outliers": 0, "bursts": 0,
                                      "repeated_lookups": 0}


def test_a_request_at_night_or_on_a_sunday_is_flagged(world: World) -> None:
    world.ledger.append_batch(normal_log(world))
    night = WEDNESDAY_10_JST + timedelta(hours=17)  # 03:00 JST on Thursday
    sunday = WEDNESDAY_10_JST + timedelta(days=4)  # 10:00 JST on Sunday
    late = world.ledger.append(provision(world, night, subject="subj-night"))
    weekend = world.ledger.append(provision(world, sunday, subject="subj-sunday"))

    found = _report(world)["anomalies"]["off_hours"]

    assert found["count"] == 2
    assert {item["index"] for item in found["items"]} == {late.index, weekend.index}


def test_an_operator_far_above_their_peers_is_flagged(world: World) -> None:
    world.ledger.append_batch(normal_log(world))
    busy = [provision(world, WEDNESDAY_10_JST + timedelta(minutes=3 * i), subject=f"subj-b{i}",
                      operator="op-KYOKAI-99") for i in range(120)]
    world.ledger.append_batch(busy)

    outliers = _report(world)["anomalies"]["operator_outliers"]

    assert [(o["operator"], o["requests"]) for o in outliers] == [("op-KYOKAI-99", 120)]


def test_a_burst_against_one_resident_is_flagged(world: World) -> None:
    world.ledger.append_batch(normal_log(world))
    affairs = [world.basis.affair_id] * 6
    burst = [provision(world, WEDNESDAY_10_JST + timedelta(minutes=5 * i), subject="subj-target",
                       affair=affair) for i, affair in enumerate(affairs)]
    world.ledger.append_batch(burst)

    found = _report(world)["anomalies"]["bursts"]

    assert [(b["resident"], b["requests"]) for b in found] == [(resident_ref("subj-target"), 6)]
    assert "subj-target" not in json.dumps(_report(world))  # the report names no resident


def test_the_same_resident_looked_up_again_and_again_is_flagged(world: World) -> None:
    world.ledger.append_batch(normal_log(world))
    again = [provision(world, WEDNESDAY_10_JST + timedelta(days=3 * i), subject="subj-again")
             for i in range(4)]
    world.ledger.append_batch(again)

    report = _report(world)
    found = report["anomalies"]["repeated_lookups"]

    assert [(r["resident"], r["affair"], r["requests"]) for r in found] == [
        (resident_ref("subj-again"), world.basis.affair_id, 4)]
    assert report["anomalies"]["bursts"] == []  # days apart: not a burst


def test_counts_refusals_and_exports(world: World, tmp_path: Path) -> None:
    world.ledger.append_batch(normal_log(world, n=10))
    refused = world.ledger.append(provision(world, WEDNESDAY_10_JST, outcome="not_provided",
                                            reason="no-record"))
    report = _report(world)

    assert report["totals"] == {"as_requester": 11, "as_provider": 0, "not_provided": 1,
                                "non_disclosed": 0}
    assert report["refusals"] == [{"role": "requester", "reason": "no-record", "n": 1}]
    assert sum(r["n"] for r in report["operators"]) == 11
    assert report["affairs"][world.basis.affair_id]["en"] == world.basis.affair_en
    provider = AgencyReport.for_ledger(world.ledger).get(world.provider)
    assert provider["totals"]["as_provider"] == 11
    assert provider["operators"] == []  # operators belong to the requesting agency

    files = write_csv(report, tmp_path) + write_charts(report, tmp_path)
    assert {f.name for f in files} == {f"{world.requester}-{n}" for n in (
        "counts.csv", "operators.csv", "refusals.csv", "anomalies.csv", "monthly.svg",
        "operators.svg")}
    counts = (tmp_path / f"{world.requester}-counts.csv").read_text(encoding="utf-8")
    assert counts.splitlines()[0] == "role,month,affair,outcome,reason,n,non_disclosed"
    assert "not_provided,no-record,1" in counts
    svg = (tmp_path / f"{world.requester}-monthly.svg").read_text(encoding="utf-8")
    assert svg.startswith("<svg") and "Kyokai Kenpo" in svg
    assert refused.index == world.ledger.tree_size() - 1


def test_a_report_as_of_an_index_shows_what_it_showed_then(world: World) -> None:
    first = world.ledger.append_batch(normal_log(world, n=10))
    world.ledger.append_batch(normal_log(world, n=5, seed=1))
    now = _report(world)
    then = _report(world, as_of=first[-1].index)

    assert then["totals"]["as_requester"] == 10
    assert now["totals"]["as_requester"] == 15
    latest = _report(world, as_of=world.ledger.tree_size() - 1)
    assert (latest["counts"], latest["operators"]) == (now["counts"], now["operators"])


def test_an_unknown_agency_is_refused(world: World) -> None:
    with pytest.raises(UnknownAgency, match="not registered"):
        AgencyReport.for_ledger(world.ledger).get("NO-SUCH-AGENCY")
