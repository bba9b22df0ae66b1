"""``kiroku log prove record`` writes a tlog-proof that ``kiroku verify proof`` checks offline;
``kiroku witness init/key`` make and show a witness key."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from kiroku.cli import main
from witness.keys import WitnessKey


def test_prove_a_record_and_verify_it_offline(tmp_path: Path) -> None:
    env = {"KIROKU_HOME": str(tmp_path / "home"), "KIROKU_DATABASE_URL": "",
           "KIROKU_LOG_ORIGIN": "cli.test/log", "KIROKU_WITNESSES": ""}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    vkey = runner.invoke(main, ["log", "key"], env=env).output.strip()
    # No checkpoint yet: nothing to prove against.
    refused = runner.invoke(main, ["log", "prove", "record", "0"], env=env)
    assert refused.exit_code == 1 and "no checkpoint signed covers entry 0" in refused.output
    assert runner.invoke(main, ["log", "checkpoint"], env=env).exit_code == 0
    proof = tmp_path / "entry0.tlog-proof"
    made = runner.invoke(main, ["log", "prove", "record", "0", "--out", str(proof)], env=env)
    assert made.exit_code == 0, made.output
    assert proof.read_text().startswith("c2sp.org/tlog-proof@v1\nextra ")
    checked = runner.invoke(main, ["verify", "proof", str(proof), "--vkey", vkey], env=env)
    assert checked.exit_code == 0 and "OK entry 0 is in cli.test/log" in checked.output
    # A witness policy the file cannot meet: refused, with how many cosignatures were found.
    witness = WitnessKey.generate("witness.test/cli")
    unmet = runner.invoke(main, ["verify", "proof", str(proof), "--vkey", vkey, "--witness",
                                 witness.vkey, "--quorum", "1"], env=env)
    assert unmet.exit_code == 1 and "0 valid cosignature" in unmet.output
    # Altered payload in the file: refused.
    text = proof.read_text().split("\n")
    extra = json.loads(base64.b64decode(text[1][6:]))
    assert isinstance(extra["payload"], dict)
    extra["payload"]["added"] = "after the fact"
    text[1] = "extra " + base64.b64encode(json.dumps(extra).encode()).decode()
    proof.write_text("\n".join(text))
    assert runner.invoke(main, ["verify", "proof", str(proof), "--vkey", vkey],
                         env=env).exit_code == 1
    # With witnesses configured, no proof goes out before they cosigned.
    env["KIROKU_WITNESSES"] = f"witness.test/cli http://127.0.0.1:9 {witness.vkey}"
    pending = runner.invoke(main, ["log", "prove", "record", "0"], env=env)
    assert pending.exit_code == 1 and "cosigned by 1 witness" in pending.output
    assert runner.invoke(main, ["log", "prove", "record", "nonsense"], env=env).exit_code == 2


def test_witness_init_and_key(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(main, ["witness", "init", "--key", str(tmp_path / "k"), "--name", "w.test/1"])
    assert made.exit_code == 0 and made.output.startswith("w.test/1+")
    shown = runner.invoke(main, ["witness", "key", "--key", str(tmp_path / "k")])
    assert shown.output == made.output
    again = runner.invoke(main, ["witness", "init", "--key", str(tmp_path / "k"), "--name", "x"])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
