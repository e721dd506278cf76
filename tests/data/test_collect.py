"""Recording episodes into Minari datasets that minari itself loads, offline."""

import json
import os

import numpy as np
import pytest

from flexrl.data.collect import Recorder, check_dataset_id, dataset_metadata, next_dataset_id, write_dataset
from flexrl.data.features import DIM


def _load(root, dataset_id):
    import minari

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        return minari.load_dataset(dataset_id)
    finally:
        os.environ.pop("MINARI_DATASETS_PATH")


def test_minari_loads_what_was_recorded(tiny_dataset):
    root, dataset_id, sheet = tiny_dataset
    dataset = _load(root, dataset_id)
    assert dataset.total_episodes == sheet["episodes"] == 10
    assert dataset.total_steps == sheet["steps"]
    ep = dataset[0]
    n = len(ep.actions)
    assert ep.observations["state"].shape == (n + 1, DIM)
    assert len(ep.observations["instruction"]) == n + 1 and ep.observations["instruction"][0]
    assert np.all(np.abs(ep.actions) <= 1.0 + 1e-6)
    assert ep.truncations[-1] or ep.terminations[-1]
    assert len(ep.infos["call"]) == n + 1 and ep.infos["agent_pos"].shape == (n + 1, 2)
    # the features' agent position is the world's, over the half size
    assert np.allclose(ep.observations["state"][:, :2] * 2.0, ep.infos["agent_pos"], atol=1e-4)


def test_rewards_mark_each_satisfied_instruction(tiny_dataset):
    root, dataset_id, sheet = tiny_dataset
    dataset = _load(root, dataset_id)
    rewards = [float(ep.rewards.sum()) for ep in dataset.iterate_episodes()]
    assert all(r in (0.0, 1.0, 2.0) for r in rewards)
    assert sum(r > 0 for r in rewards) >= round(sheet["success"] * sheet["episodes"])


def test_metadata_names_planner_robot_and_mix(tiny_dataset):
    root, dataset_id, sheet = tiny_dataset
    meta = dataset_metadata(root, dataset_id)
    assert meta["planner"] == "oracle" and meta["robot"] == "orb" and meta["tasks"] == "generated"
    assert sum(c["episodes"] for c in meta["categories"].values()) == 10
    assert _load(root, dataset_id).storage.metadata["algorithm_name"] == "oracle"


def test_versions_are_never_overwritten(tiny_dataset, tmp_path):
    root, dataset_id, _ = tiny_dataset
    assert next_dataset_id(root, "arena-orb-oracle") == "flexrl/arena-orb-oracle-v1"
    with pytest.raises(ValueError, match="exists"):
        write_dataset(root, dataset_id, Recorder(), None, {}, "")


@pytest.mark.parametrize("bad", ["foo", "flexrl/Arena-v0", "other/arena-v0", "flexrl/arena", "flexrl/../x-v0"])
def test_bad_dataset_id_is_one_line(bad):
    with pytest.raises(ValueError, match="allowed: flexrl/<name>-v<N>") as err:
        check_dataset_id(bad)
    assert "\n" not in str(err.value)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import minari

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(minari, "create_dataset_from_buffers", boom)
    recorder = Recorder(buffers=[object()])
    with pytest.raises(RuntimeError):
        write_dataset(tmp_path, "flexrl/x-v0", recorder, None, {}, "")
    assert not (tmp_path / "flexrl" / "x-v0").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_the_arena_is_recoverable_from_the_dataset(tiny_dataset):
    root, dataset_id, _ = tiny_dataset
    env = _load(root, dataset_id).recover_environment()
    assert type(env.unwrapped).__name__ == "ArenaEnv" and type(env.unwrapped.robot).__name__ == "Orb"
    env.close()
