"""MLflow tracking on a local SQLite store: params, the learning curve and the final status."""

from __future__ import annotations

import pytest

from flexrl.cli import main
from flexrl.runs.run_dir import find_runs


@pytest.mark.slow
def test_mlflow_local_store_records_the_run(tmp_path):
    assert main(["train", "experiment=quick", "skill.total_steps=512", "ppo.n_envs=2", "ppo.n_steps=128",
                 "ppo.batch_size=128", "ppo.eval_every=256", "skill.eval_episodes=2", "tracking=mlflow",
                 "tracking.progress=false", f"experiment.workspace={tmp_path}"]) == 0
    (run,) = find_runs(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    record = mlflow.get_run(run.meta["mlflow_run_id"])
    assert record.info.status == "FINISHED"
    assert record.data.params["ppo.n_envs"] == "2"
    history = mlflow.tracking.MlflowClient().get_metric_history(record.info.run_id, "success_min")
    assert [m.step for m in history] == [256, 512]
    assert list((run.path / "tb").rglob("events.out.tfevents.*"))
