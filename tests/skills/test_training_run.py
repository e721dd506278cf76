"""Training runs survive SIGKILL: resume continues the step counter; no file is ever half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from flexrl.cli import main
from flexrl.runs.run_dir import RunDir, find_runs

SLOW = ["experiment=quick", "skill.total_steps=16384", "ppo.n_envs=2", "ppo.n_steps=256", "ppo.batch_size=256",
        "ppo.eval_every=0", "skill.eval_episodes=4", "checkpoint_every=1024", "ppo.target_success=1.1",
        "tracking.progress=false"]


def _start(workspace: Path) -> subprocess.Popen:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.Popen([sys.executable, "-m", "flexrl.cli", "train", *SLOW, f"experiment.workspace={workspace}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_checkpoint(workspace: Path, proc: subprocess.Popen, min_steps: int, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for last in workspace.glob("quick/*/checkpoints/last.json"):
            try:
                if json.loads(last.read_text())["steps"] >= min_steps:
                    return last.parent.parent
            except (json.JSONDecodeError, OSError):
                pytest.fail(f"half-written {last}")
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    pytest.fail("no checkpoint appeared")


def _assert_every_file_whole(run_path: Path) -> None:
    for path in run_path.rglob("*"):
        if not path.is_file() or path.name.startswith("."):  # hidden = an unfinished atomic write's temp file
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None
        elif path.suffix == ".yaml":
            assert path.read_text().strip()


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_last_checkpoint(tmp_path, capsys):
    proc = _start(tmp_path)
    run_path = _wait_for_checkpoint(tmp_path, proc, min_steps=3072)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = RunDir.open(run_path)
    assert run.meta["status"] == "running" and run.status() == "killed"
    saved = json.loads((run_path / "checkpoints" / "last.json").read_text())["steps"]
    _assert_every_file_whole(run_path)

    assert main(["train", f"resume={run_path}", f"experiment.workspace={tmp_path}", "tracking.progress=false"]) == 0
    run = RunDir.open(run_path)
    assert run.meta["status"] == "finished" and run.meta["resumed_from_step"] == saved
    assert run.meta["resumes"][0]["previous_status"] == "killed"
    metrics = json.loads((run_path / "metrics.json").read_text())
    assert metrics["steps"] == 16384  # the budget, not the budget plus the steps before the kill
    assert (run_path / "checkpoints" / "reach.safetensors").is_file()
    assert not list(run_path.rglob(".*.*"))  # the temporaries of writes the kill interrupted are gone
    assert len(find_runs(tmp_path)) == 1  # resumed in place, no second run


@pytest.mark.slow
def test_runs_killed_at_random_moments_never_hold_a_half_written_file(tmp_path):
    rng = random.Random(7)
    for _ in range(3):
        workspace = tmp_path / f"ws{_}"
        proc = _start(workspace)
        _wait_for_checkpoint(workspace, proc, min_steps=1024)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (run_path,) = [r.path for r in find_runs(workspace)]
        _assert_every_file_whole(run_path)


def test_sigterm_records_interrupted_and_saves_a_checkpoint(tmp_path):
    proc = _start(tmp_path)
    run_path = _wait_for_checkpoint(tmp_path, proc, min_steps=1024)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    run = RunDir.open(run_path)
    assert run.meta["status"] == "interrupted" and run.meta["end"]
    _assert_every_file_whole(run_path)
    saved = json.loads((run_path / "checkpoints" / "last.json").read_text())["steps"]
    assert saved % 512 == 0  # rewound to the rollout it was collecting, so a resume ends on the budget exactly
