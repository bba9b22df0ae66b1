"""``kiroku shard``: an operator turns a one-log deployment into two shards from the command line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kiroku.cli import main


def test_freeze_then_open_the_next_shard(tmp_path: Path) -> None:
    config = tmp_path / "shards.toml"
    env = {"KIROKU_HOME": str(tmp_path), "KIROKU_LOG_ORIGIN": "kiroku.example/2026",
           "KIROKU_SHARDS": str(config), "KIROKU_DATABASE_URL": ""}
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args), env=env)
        return result.exit_code, result.stdout, result.stderr

    assert run("init")[0] == 0
    url = f"sqlite:///{tmp_path / '2027.sqlite3'}"
    # The open log must be frozen first; nothing is written to the shard list.
    code, _, err = run("shard", "open", "kiroku.example/2027", "--database-url", url)
    assert code == 1 and "freeze" in err and not config.exists()
    assert run("shard", "freeze")[0] == 2  # without --yes
    code, out, _ = run("shard", "freeze", "--yes")
    assert code == 0 and out.startswith("kiroku.example/2026\n")
    code, out, _ = run("shard", "open", "kiroku.example/2027", "--database-url", url)
    assert code == 0 and "after kiroku.example/2026" in out
    code, out, _ = run("shard", "list")
    assert code == 0
    states = [line.split("\t")[:2] for line in out.splitlines()]
    assert states == [["kiroku.example/2026", "frozen"], ["kiroku.example/2027", "open"]]
    # Running it again changes nothing.
    assert run("shard", "open", "kiroku.example/2027", "--database-url", url)[0] == 0
    assert run("shard", "list")[1] == out
