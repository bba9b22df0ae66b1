"""The runner: incremental equals rebuilt, exactly once across crashes and racing runners,
positions and lag."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError, Tracking
from sqlalchemy import func, select

from projections.runner import Runner, catch_up, runner_for, status
from projections.schema import audit_count, audit_provision, resident_record
from tests.ledger.fixtures import World
from tests.projections.logs import random_log


def _counts(runner: Runner) -> tuple[int, int, int]:
    with runner.store.read() as session:
        return (
            session.execute(select(func.count()).select_from(resident_record)).scalar_one(),
            session.execute(select(func.count()).select_from(audit_provision)).scalar_one(),
            int(session.execute(select(func.sum(audit_count.c.n))).scalar() or 0),
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_incremental_views_equal_views_rebuilt_from_index_zero(world: World, seed: int) -> None:
    rng = random.Random(seed)
    log = random_log(world, 120, seed)
    runner = runner_for(world.ledger)
    runner.batch = rng.choice([7, 16, 50])  # batches that do not line up with the appends
    while log:
        take = rng.randrange(1, 25)
        world.ledger.append_batch(log[:take])
        log = log[take:]
        if rng.random() < 0.6:
            catch_up(world.ledger)
    catch_up(world.ledger)
    incremental = runner.digests()

    result = runner.rebuild()

    assert result.before == incremental
    assert result.after == incremental
    assert result.identical is True
    assert _counts(runner) == (120, 120, 240)  # each provision counts for requester and provider


def test_a_runner_killed_mid_batch_leaves_no_double_count_after_restart(
        world: World, tmp_path: Path) -> None:
    world.ledger.append_batch(random_log(world, 40, 3))
    runner = runner_for(world.ledger)
    runner.batch = 10
    runner.catch_up(stop=runner.read(0).position)  # one committed batch before the crash
    committed = _counts(runner)
    world.ledger.append_batch(random_log(world, 40, 4))
    marker = tmp_path / "inside-batch"
    child = subprocess.Popen([sys.executable, "-c", _CRASHING_RUNNER],
                             env={**os.environ, "URL": world.ledger.settings.database_url,
                                  "MARKER": str(marker)})
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the child runner exited before the batch"
            assert time.monotonic() < deadline, "the child runner never reached the batch"
            time.sleep(0.02)
        child.kill()  # SIGKILL: rows written, transaction never committed
    finally:
        child.wait()
    assert _counts(runner) == committed

    catch_up(world.ledger)

    assert _counts(runner) == (80, 80, 160)
    assert runner.rebuild().identical is True


_CRASHING_RUNNER = textwrap.dedent("""
    import os, pathlib, tempfile, time
    from ledger.application import Ledger
    from ledger.config import Settings
    from ledger.keys import SigningKey
    from projections import views
    from projections.runner import Runner

    home = pathlib.Path(tempfile.mkdtemp())
    settings = Settings(home=home, database_url=os.environ["URL"], key_dir=home,
                        origin="test.kiroku/log")
    ledger = Ledger(settings, SigningKey.generate(), check=False)
    write = views.AuditView.write

    def write_then_hang(self, session, facts):
        write(self, session, facts)
        session.flush()
        pathlib.Path(os.environ["MARKER"]).touch()
        time.sleep(600)

    views.AuditView.write = write_then_hang
    Runner(ledger, batch=10).catch_up()
""")


def test_racing_runners_apply_each_entry_once(world: World) -> None:
    world.ledger.append_batch(random_log(world, 150, 5))
    runners = [Runner(world.ledger, batch=13) for _ in range(3)]
    errors: list[BaseException] = []

    def work(runner: Runner) -> None:
        try:
            runner.catch_up()
        except BaseException as exc:  # noqa: BLE001 -- a thread's error, reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _counts(runners[0]) == (150, 150, 300)
    assert runners[0].rebuild().identical is True
    for runner in runners:
        runner.close()


def test_status_shows_each_views_position_and_lag(world: World) -> None:
    catch_up(world.ledger)
    world.ledger.append_batch(random_log(world, 5, 6))

    behind = {row["name"]: row for row in status(world.ledger)}
    assert set(behind) == {"resident", "audit", "notices"}
    assert all(row["lag"] == 5 for row in behind.values())
    assert all(row["lag_seconds"] >= 0 for row in behind.values())

    assert catch_up(world.ledger) == 5
    current = status(world.ledger)
    size = world.ledger.tree_size()
    assert all(row["lag"] == 0 and row["index"] == size - 1 for row in current)


def test_rebuild_as_of_an_index_replays_only_up_to_it(world: World) -> None:
    receipts = world.ledger.append_batch(random_log(world, 20, 7))
    runner = runner_for(world.ledger)
    from projections.history import notification_of

    runner.rebuild(stop=notification_of(runner.store, receipts[9].index))

    assert _counts(runner)[0] == 10
    assert {row["index"] for row in runner.status()} == {receipts[9].index}


def test_tracking_refuses_a_position_already_reached(world: World) -> None:
    runner = runner_for(world.ledger)
    recorder = runner.store.tracking["resident"]
    recorder.insert_tracking(Tracking("Ledger", 5))
    with pytest.raises(IntegrityError):
        recorder.insert_tracking(Tracking("Ledger", 5))
    with pytest.raises(IntegrityError):
        recorder.insert_tracking(Tracking("Ledger", 4))
    recorder.insert_tracking(Tracking("Ledger", 6))
    assert recorder.max_tracking_id("Ledger") == 6
