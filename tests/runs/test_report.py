"""The runs CLI: list, show (with lineage), compare (with a learning-curve PNG)."""

from __future__ import annotations

import json

import pytest

from flexrl.cli import main
from flexrl.runs.run_dir import RunDir, find_runs

TINY = ["experiment=quick", "skill.total_steps=512", "ppo.n_envs=2", "ppo.n_steps=128", "ppo.batch_size=128",
        "ppo.eval_every=256", "skill.eval_episodes=2", "checkpoint_every=256", "tracking=none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    assert main(["train", *TINY, f"experiment.workspace={ws}"]) == 0
    (parent,) = find_runs(ws)
    assert main(["train", *TINY, f"experiment.workspace={ws}", f"parent={parent.path}", "ppo.learning_rate=3e-4"]) == 0
    return ws


def test_training_run_directory_is_complete(trained):
    runs = find_runs(trained)
    assert len(runs) == 2
    for run in runs:
        files = {p.relative_to(run.path).as_posix() for p in run.path.rglob("*") if p.is_file()}
        assert {"meta.json", "config.yaml", "metrics.json", "curve.json", "checkpoints/reach.safetensors",
                "checkpoints/reach.json", "checkpoints/last-0000000512.zip", "checkpoints/last.json"} <= files
        assert not any(f.endswith("reach.zip") or "/." in f for f in files)  # weights-only final policy, no temporaries
        meta = run.meta
        assert meta["status"] == "finished" and meta["kind"] == "train" and meta["end"] >= meta["start"]
        assert set(meta["git"]) == {"commit", "dirty"} and "torch" in meta["versions"]
        assert meta["command"][:2] == ["flexrl", "train"]
        curve = json.loads((run.path / "curve.json").read_text())
        assert [p["steps"] for p in curve] == sorted(p["steps"] for p in curve) and curve[-1]["steps"] == 512


def test_list_show_compare(trained, capsys, tmp_path):
    assert main(["runs", "--workspace", str(trained), "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("quick") == 2 and "finished" in out and "@ 512 steps" in out
    child = find_runs(trained)[-1]
    assert main(["runs", "--workspace", str(trained), "show", child.meta["id"]]) == 0
    out = capsys.readouterr().out
    parent_id = find_runs(trained)[0].meta["id"]
    assert "lineage" in out and f"quick/{child.meta['id']} <- quick/{parent_id}" in out
    png = tmp_path / "curves.png"
    ids = [r.meta["id"] for r in find_runs(trained)]
    assert main(["runs", "--workspace", str(trained), "compare", *ids, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert all(i in out for i in ids) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_run_is_one_line(trained, capsys):
    assert main(["runs", "--workspace", str(trained), "show", "nope"]) == 2
    assert capsys.readouterr().err.strip() == f"flexrl runs: no run with id 'nope' in {trained}; `flexrl runs list` shows the ids"


def test_killed_run_is_reported_as_killed(tmp_path):
    run = RunDir.new(tmp_path, "x", seed=0)
    run.meta["pid"] = 2**22 + 12345  # no such process
    run.save_meta()
    assert RunDir.open(run.path).status() == "killed"
