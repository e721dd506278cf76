"""The whole offline path from the command line: collect -> train-offline -> bench and run with planner=policy."""

import json

import pytest

from flexrl.cli import main


@pytest.mark.slow
def test_collect_train_bench_run(tmp_path, capsys):
    ws = f"experiment.workspace={tmp_path}"
    assert main(["collect", "episodes=6", "n_envs=3", ws]) == 0
    out = capsys.readouterr().out
    assert "flexrl/arena-orb-oracle-v0" in out and "episodes/min" in out
    assert (tmp_path / "datasets" / "flexrl" / "arena-orb-oracle-v0" / "data" / "metadata.json").is_file()
    assert main(["collect", "episodes=2", "n_envs=2", ws]) == 0  # the next version, never an overwrite
    assert (tmp_path / "datasets" / "flexrl" / "arena-orb-oracle-v1").is_dir()

    assert main(["train-offline", "dataset=flexrl/arena-orb-oracle-v0", "embedder=hashing", "steps=60", "eval_every=30",
                 "batch_size=128", "val_share=0.2", ws]) == 0
    run = next((tmp_path / "offline").iterdir())
    assert json.loads((run / "metrics.json").read_text())["steps"] == 60
    policy = run / "checkpoints"

    assert main(["bench", "planner=policy", f"planner.policy={policy}", "baselines=[oracle]", "episodes=1",
                 "suite.tasks=[go_to_red_pad,avoid_drifting_ball]", ws]) == 0
    report = next((tmp_path / "bench").iterdir()) / "report.json"
    labels = [s["planner"] for s in json.loads(report.read_text())["summaries"]]
    assert labels == ["oracle", "policy"]

    assert main(["run", "planner=policy", f"planner.policy={policy}", "agent.max_steps=30", "agent.record_video=false", ws]) == 0
    assert "policy" in capsys.readouterr().out


def test_train_offline_without_a_dataset_is_one_line(tmp_path, capsys):
    assert main(["train-offline", f"experiment.workspace={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset is not set" in err


def test_collect_bad_tasks_is_one_line(tmp_path, capsys):
    assert main(["collect", "tasks=mine", f"experiment.workspace={tmp_path}"]) == 2
    assert "tasks='mine'; allowed: generated, suite" in capsys.readouterr().err


def test_collect_from_the_suite_keeps_only_the_chosen_tasks(tmp_path, capsys):
    assert main(["collect", "tasks=suite", "suite.tasks=[go_to_red_pad]", "episodes=2", "n_envs=2",
                 f"experiment.workspace={tmp_path}"]) == 0
    sheet = json.loads(next((tmp_path / "collect").glob("*/datasheet.json")).read_text())
    assert sheet["episodes"] == 2 and list(sheet["categories"]) == ["object_goal"]
    assert main(["collect", "tasks=suite", "suite.tasks=[nope]", f"experiment.workspace={tmp_path}"]) == 2
    assert "suite.tasks entry 'nope'" in capsys.readouterr().err
