"""benchmarks/table1.py end to end on a tiny budget: real trainer runs, the table, the plot."""

import json

import pytest

from benchmarks import table1

pytestmark = pytest.mark.trainer


def test_two_rows_one_iteration(tmp_path):
    rows = table1.main(["--iterations", "1", "--seeds", "0", "--eval-every", "0", "--eval-prompts", "2",
                        "--rows", "DanceGRPO 25/14", "MixGRPO-Flash*", "--out", str(tmp_path)])
    dance, flash = rows
    assert dance["old_policy_nfe"] == 25 and flash["old_policy_nfe"] == 8
    assert flash["network_evals_per_iteration"] < dance["network_evals_per_iteration"]
    assert flash["seconds"] < dance["seconds"]  # 8 NFE and 4 trained steps against 25 and 14
    assert len(dance["curve"]) == 2  # before and after training
    table = (tmp_path / "table1.md").read_text()
    assert table.count("\n| ") == 3 and "÷ DanceGRPO 25/14" in table
    assert (tmp_path / "table1.png").stat().st_size > 5000
    assert len(json.loads((tmp_path / "table1.json").read_text())) == 2
