"""The GPU Table 1's code path on CPU with the tiny preset: real ``trainer.run`` subprocesses, run-averaged."""

import json

import pytest

from benchmarks import gpu_table1

pytestmark = pytest.mark.trainer


def test_tiny_table_times_each_window_place_once_after_a_warm_up(tmp_path):
    out = tmp_path / "gpu_table1.md"
    rows = gpu_table1.main(["--preset", "tiny", "--device", "cpu", "--resolutions", "64", "--group", "4",
                            "--micro-batch", "4", "--lora-rank", "4", "--no-compile", "--places", "3",
                            "--constant-iterations", "2", "--out", str(out)])
    by_algo = {r["algo"]: r for r in rows}
    assert list(by_algo) == ["dancegrpo", "mixgrpo", "flash", "flash_star"]
    # the warm-up iteration (at the last place, l = 20) is left out; the moving rows then visit l = 0, 1, 2
    assert by_algo["mixgrpo"]["places"] == by_algo["flash"]["places"] == [0, 1, 2]
    assert by_algo["dancegrpo"]["places"] == by_algo["flash_star"]["places"] == [0, 0]
    # run-averaged shared trunk: a group of 4 at place l makes 4·25 − 3·l evaluations; mean over l = 0, 1, 2
    assert by_algo["mixgrpo"]["network_evals"] == 4 * 25 - 3 * 1
    assert by_algo["dancegrpo"]["network_evals"] == 4 * 25
    assert by_algo["flash"]["network_evals"] < by_algo["mixgrpo"]["network_evals"]
    assert by_algo["dancegrpo"]["trained_rows"] == 14 * 4 and by_algo["mixgrpo"]["trained_rows"] == 4 * 4
    for r in rows:
        assert r["checkpointing"] == "off"  # auto on a CPU, as the trainer itself printed it
        assert r["max_abs_log_ratio"] < 1e-5  # on-policy: the update recomputes the rollout's own policy
        assert r["ratio_to_dancegrpo"] == pytest.approx(r["seconds"] / by_algo["dancegrpo"]["seconds"])
        assert r["mfu"] is None  # no peak rate for a CPU: no utilisation is made up
    assert by_algo["mixgrpo"]["ratio_to_dancegrpo"] < 1.0
    table = out.read_text()
    assert table.count("| 64² |") == 4 and "| 0–2 |" in table
    assert len(json.loads(out.with_suffix(".json").read_text())) == 4


def test_seconds_leave_out_compiling_and_utilisation_counts_recomputation_in_hfu_only():
    args = type("Args", (), {"resolution": 512, "group": 2})()
    base = {"window_start": 0, "nfe": 25, "network_evals": 50, "rollout_s": 1.0, "reward_s": 0.5, "update_s": 2.0,
            "first_max_abs_log_ratio": 0.0}
    history = [{**base, "seconds": 30.0, "compile_s": 26.0}, {**base, "seconds": 4.0},
               {**base, "seconds": 5.0, "compile_s": 1.0}]
    f_fwd, peak = 1e12, 1e15
    off = gpu_table1.summarise(args, "MixGRPO", "mixgrpo", history, "off", 4, f_fwd, peak)
    full = gpu_table1.summarise(args, "MixGRPO", "mixgrpo", history, "full", 4, f_fwd, peak)
    selective = gpu_table1.summarise(args, "MixGRPO", "mixgrpo", history, "selective", 4, f_fwd, peak)
    assert off["seconds"] == 4.0 and off["compile_s"] == 26.0 and off["recompile_s"] == 1.0
    # 50 evaluations + 8 trained rows (4 window steps · 2 samples) at 2F each = 66 TFLOP in 4 s of a 1 PFLOP/s peak
    assert off["mfu"] == pytest.approx(66e12 / 4.0 / 1e15)
    assert off["hfu"] == off["mfu"] == full["mfu"] == selective["mfu"]
    assert full["hfu"] == pytest.approx((66e12 + 8e12) / 4.0 / 1e15)  # every block run again
    assert selective["hfu"] == pytest.approx((66e12 + 4e12) / 4.0 / 1e15)  # every other block


def test_more_places_than_the_window_has_is_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_table1.main(["--preset", "tiny", "--device", "cpu", "--places", "22"])
    assert "--places must be within 1–21" in capsys.readouterr().err
