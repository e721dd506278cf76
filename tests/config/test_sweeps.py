"""Multirun through each launcher (joblib; Ray on a local loopback cluster) and the Optuna sweeper."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flexrl.runs.run_dir import find_runs

TINY = ["experiment=quick", "skill.total_steps=512", "ppo.n_envs=2", "ppo.n_steps=128", "ppo.batch_size=128",
        "ppo.eval_every=0", "skill.eval_episodes=2", "checkpoint_every=256", "tracking=none"]
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _flexrl(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "flexrl.cli", *args], env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def _assert_complete_trials(workspace: Path, n: int) -> list:
    runs = find_runs(workspace)
    assert len(runs) == n
    for run in runs:
        assert run.meta["status"] == "finished" and "/" in run.meta["id"]  # <sweep>/<trial>
        assert (run.path / "checkpoints" / "reach.safetensors").is_file() and (run.path / "metrics.json").is_file()
    return runs


@pytest.mark.slow
def test_joblib_multirun(tmp_path):
    r = _flexrl(["train", "-m", *TINY, f"experiment.workspace={tmp_path}", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", "ppo.learning_rate=1e-3,3e-3", "ppo.n_epochs=2,3"])
    assert r.returncode == 0, r.stderr[-2000:]
    runs = _assert_complete_trials(tmp_path, 4)
    assert {(r.meta["command"][-1]) for r in runs}  # each trial records its own overrides


@pytest.mark.slow
def test_ray_launcher_on_a_local_loopback_cluster(tmp_path):
    port = _free_port()
    env = {**os.environ, **RAY_ENV}
    ray = str(Path(sys.executable).with_name("ray"))
    start = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                            "--include-dashboard=false", "--disable-usage-stats"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        r = _flexrl(["train", "-m", *TINY, f"experiment.workspace={tmp_path}", "hydra/launcher=ray_cluster",
                     f"hydra.launcher.ray.init.address=127.0.0.1:{port}", "ppo.learning_rate=1e-3,3e-3"], env=RAY_ENV)
        assert r.returncode == 0, r.stderr[-2000:]
        _assert_complete_trials(tmp_path, 2)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_optuna_sweeper_reports_its_best_trial(tmp_path):
    r = _flexrl(["train", "-m", "experiment=tune_ppo", *TINY[1:], "experiment.name=tune", f"experiment.workspace={tmp_path}",
                 "hydra.sweeper.n_trials=3"])
    assert r.returncode == 0, r.stderr[-2000:]
    runs = _assert_complete_trials(tmp_path, 3)
    (results,) = tmp_path.glob("tune/sweep-*/optimization_results.yaml")
    import json

    import yaml

    best = yaml.safe_load(results.read_text())["best_value"]
    assert best == max(json.loads((r.path / "metrics.json").read_text())["objective"] for r in runs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
