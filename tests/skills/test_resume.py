"""Resume takes only this workspace's unfinished training runs, with their own signed checkpoint and config."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from flexrl.cli import main
from flexrl.runs.run_dir import RunDir, find_runs

TINY = ["experiment=quick", "skill.total_steps=512", "ppo.n_envs=2", "ppo.n_steps=128", "ppo.batch_size=128",
        "ppo.eval_every=0", "skill.eval_episodes=2", "checkpoint_every=256", "tracking=none"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    assert main(["train", *TINY, f"experiment.workspace={ws}"]) == 0
    (run,) = find_runs(ws)
    return run.path


@pytest.fixture()
def interrupted(finished, tmp_path) -> tuple[Path, Path]:
    """A copy of the finished run in a workspace with the same key, marked as interrupted."""
    ws = tmp_path / "ws"
    shutil.copytree(finished.parent.parent, ws)
    run = ws / finished.relative_to(finished.parent.parent)
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    return ws, run


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_finished_run_is_not_trained_further(finished, capsys):
    before = (finished / "checkpoints" / "reach.safetensors").read_bytes()
    assert main(["train", f"resume={finished}", f"experiment.workspace={finished.parent.parent}"]) == 2
    err = _one_line(capsys)
    assert "already finished" in err and "fine-tune" in err and f"parent={finished}" in err
    assert (finished / "checkpoints" / "reach.safetensors").read_bytes() == before
    assert RunDir.open(finished).meta["status"] == "finished"


def test_resume_extends_the_budget_and_cleans_up(interrupted, capsys):
    ws, run = interrupted
    stale = run / "checkpoints" / ".last-0000000768.zip.abcd1234.zip"
    stale.write_bytes(b"half a zip")
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}", "skill.total_steps=1024"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 1024  # exactly the new budget: saves fall on rollout boundaries
    assert not stale.exists() and sorted(p.name for p in (run / "checkpoints").glob("last-*.zip")) == ["last-0000001024.zip"]
    assert "total_steps: 1024" in (run / "config.yaml").read_text()
    meta = RunDir.open(run).meta
    assert meta["status"] == "finished" and meta["resumed_from_step"] == 512 and meta["resumes"][0]["previous_status"] == "interrupted"
    curve = json.loads((run / "curve.json").read_text())
    assert [p["steps"] for p in curve] == sorted({p["steps"] for p in curve})  # no step goes back


def test_resume_refuses_settings_it_would_ignore(interrupted, capsys):
    ws, run = interrupted
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}", "ppo.learning_rate=3e-4"]) == 2
    err = _one_line(capsys)
    assert "ppo.learning_rate cannot change on resume" in err and "skill.total_steps" in err and "parent=" in err
    assert RunDir.open(run).meta["status"] == "interrupted"


def test_resume_outside_the_workspace_or_from_elsewhere_is_refused(interrupted, tmp_path, capsys, monkeypatch):
    ws, run = interrupted
    assert main(["train", f"resume={run}", f"experiment.workspace={tmp_path / 'other'}"]) == 2
    assert "outside the workspace" in _one_line(capsys)
    other = tmp_path / "other-user" / "checkpoint.key"  # the run was made by someone else
    other.parent.mkdir()
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    monkeypatch.setenv("FLEXRL_SIGNING_KEY", str(other))
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert "was not saved by flexrl for this run and user" in _one_line(capsys)


def test_resume_of_nothing_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "ws" / "quick" / "nope"
    assert main(["train", f"resume={missing}", f"experiment.workspace={tmp_path / 'ws'}"]) == 2
    assert "no such run directory" in _one_line(capsys)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("target, content, expected", [
    ("meta.json", "{not json", "meta.json is not valid JSON"),
    ("config.yaml", "skill: [unclosed", "config.yaml is not a valid train config"),
    ("config.yaml", "ppo:\n  gamma: 7\n", "config.yaml is not a valid train config: ppo.gamma=7"),
    ("checkpoints/last.json", "{", "last.json is not valid JSON"),
    ("checkpoints/last.json", '{"file": "../../evil.zip"}', "does not name a checkpoint"),
])
def test_corrupt_run_files_get_one_line_naming_the_file(interrupted, capsys, target, content, expected):
    ws, run = interrupted
    (run / target).write_text(content)
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert expected in _one_line(capsys)


def test_a_truncated_checkpoint_is_not_loaded(interrupted, capsys):
    ws, run = interrupted
    (zipped,) = (run / "checkpoints").glob("last-*.zip")
    zipped.write_bytes(zipped.read_bytes()[: zipped.stat().st_size // 2])
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert "does not match the SHA-256" in _one_line(capsys)


def test_a_run_that_brings_its_own_key_is_refused(interrupted, capsys):
    """Signing with a key shipped inside the workspace (as an older scheme did) proves nothing."""
    from flexrl.runs.signing import sign

    ws, run = interrupted
    (zipped,) = (run / "checkpoints").glob("last-*.zip")
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    shipped_key = ws / ".flexrl" / "checkpoint.key"
    shipped_key.parent.mkdir()
    shipped_key.write_bytes(os.urandom(32))
    shipped_key.chmod(0o600)
    payload = json.dumps([RunDir.open(run).meta["id"], zipped.name, last["sha256"]])
    last["hmac"] = sign(shipped_key, payload)
    (run / "checkpoints" / "last.json").write_text(json.dumps(last))
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert "was not saved by flexrl for this run and user" in _one_line(capsys)


def test_an_untrustworthy_key_is_one_line(interrupted, tmp_path, capsys, monkeypatch):
    ws, run = interrupted
    key = tmp_path / "short.key"
    key.write_bytes(b"short")
    key.chmod(0o600)
    monkeypatch.setenv("FLEXRL_SIGNING_KEY", str(key))
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert "holds 5 bytes, not 32" in _one_line(capsys)
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    assert "mode 0600" in _one_line(capsys)
