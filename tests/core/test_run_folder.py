"""The run folder: what the trainer writes, the monitor node and the benchmarks read back the same."""

import pytest

from mixgrpo.run_folder import METRICS_COLUMNS, OPTIONAL_METRICS, RunFolder, RunFolderError, grid_tag

pytestmark = pytest.mark.core


def metrics_row(**values) -> dict:
    return {name: 0 for name in METRICS_COLUMNS if name not in OPTIONAL_METRICS} | values


def test_a_metrics_row_that_strays_from_the_schema_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    writer = RunFolder(tmp_path / "run").metrics_writer()
    writer.write(metrics_row(peak_memory_gib=1.5))  # an optional column
    with pytest.raises(RunFolderError, match=r"unknown \['reward_secs'\], missing \[\]"):
        writer.write(metrics_row(reward_secs=1.0))
    row = metrics_row()
    del row["update_s"]
    with pytest.raises(RunFolderError, match=r"missing \['update_s'\]"):
        writer.write(row)
    writer.close()
    assert len(RunFolder(tmp_path / "run").read_metrics()) == 1


def test_config_metrics_and_evaluations_round_trip(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_config({"algo": "mixgrpo", "eta": None, "window": 4})
    assert folder.read_config() == {"algo": "mixgrpo", "eta": None, "window": 4}
    writer = folder.metrics_writer()
    for i in (1, 2, 3):
        writer.write(metrics_row(iteration=i, reward_mean=i / 10))
    writer.close()
    assert [row["iteration"] for row in folder.read_metrics()] == [1, 2, 3]
    folder.rewrite_metrics(folder.read_metrics()[:2])  # a resumed run drops the killed attempt's rows
    assert [row["iteration"] for row in folder.read_metrics()] == [1, 2]
    assert folder.read_evaluations() == []  # written at the end of the run
    folder.write_evaluations({"before": 0.1, "after": 0.2}, [{"iteration": 0, "mean": 0.1}])
    assert folder.read_summary() == {"before": 0.1, "after": 0.2}
    assert folder.read_evaluations() == [{"iteration": 0, "mean": 0.1}]


def test_a_row_cut_short_by_a_kill_is_left_out(tmp_path):
    folder = RunFolder(tmp_path)
    folder.metrics_file.write_text('{"iteration": 1}\n{"iteration": 2}\n{"itera')
    assert folder.read_metrics() == [{"iteration": 1}, {"iteration": 2}]


def test_checkpoint_index_skips_folders_being_written(tmp_path):
    folder = RunFolder(tmp_path)
    for name in ("iter-000040", "iter-000020", "iter-000060.tmp"):
        (folder.checkpoints / name).mkdir(parents=True)
    assert [p.name for p in folder.checkpoint_dirs()] == ["iter-000020", "iter-000040"]
    assert folder.checkpoint(60).name == "iter-000060"
    assert folder.sample_grid(grid_tag(20)).name == "iter-000020.png"
    assert folder.latest_grid() is None


def test_missing_files_are_clear_errors(tmp_path):
    folder = RunFolder(tmp_path / "nowhere")
    with pytest.raises(RunFolderError, match="holds no config.yaml"):
        folder.read_config()
    with pytest.raises(RunFolderError, match="no metrics.jsonl"):
        folder.read_metrics()
    with pytest.raises(RunFolderError, match="has not finished"):
        folder.read_summary()
