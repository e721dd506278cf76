"""Offline training from a recorded dataset: BC learns, runs resume, IQL's actor lands in the same policy."""

import json

import numpy as np
import pytest

from flexrl.data.offline import OfflineConfig, load_transitions, split, train_offline
from flexrl.data.policy import ConditionedPolicy


def test_transitions_match_the_dataset(tiny_dataset):
    root, dataset_id, sheet = tiny_dataset
    data = load_transitions(root, dataset_id)
    assert len(data.actions) == sheet["steps"] and data.states.shape[0] == len(data.actions)
    assert len(data.texts) == sheet["instructions"] and data.instructions.max() == len(data.texts) - 1
    train, val = split(data, 0.2, seed=0)
    assert not set(np.unique(train.episodes)) & set(np.unique(val.episodes))
    assert len(train.actions) + len(val.actions) == len(data.actions)


def test_missing_dataset_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="no dataset 'flexrl/none-v0'.*flexrl collect"):
        load_transitions(tmp_path, "flexrl/none-v0")


@pytest.mark.parametrize("field, value, match", [
    ("algorithm", "ppo", "algorithm='ppo'; allowed: bc, iql"), ("steps", 0, "steps=0"),
    ("val_share", 0.9, "val_share"), ("hidden", [], "hidden"), ("dataset", "x", "dataset id 'x'"),
    ("hold_weight", 0, "hold_weight=0"), ("drop", ["nope"], "drop entry 'nope'"),
])
def test_bad_settings_are_one_line(field, value, match):
    with pytest.raises(ValueError, match=match):
        OfflineConfig(**{field: value})


def _cfg(root, dataset_id, **kw):
    return OfflineConfig(dataset=dataset_id, root=str(root), embedder="hashing", code_dim=8, hidden=[64, 64],
                         batch_size=256, eval_every=50, val_share=0.2, **kw)


def test_bc_learns_the_recorded_actions(tiny_dataset, tmp_path):
    root, dataset_id, _ = tiny_dataset
    metrics = train_offline(_cfg(root, dataset_id, steps=400, lr=3e-3), tmp_path, tmp_path, log=lambda _: None)
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert [p["steps"] for p in curve] == list(range(50, 401, 50))
    assert curve[-1]["metrics"]["train_mse"] < 0.5 * curve[0]["metrics"]["train_mse"]
    policy = ConditionedPolicy.load(tmp_path / "checkpoints")
    assert policy.info["algorithm"] == "bc" and metrics["steps"] == 400
    assert (tmp_path / "tb").is_dir() and (tmp_path / "metrics.json").is_file()


def test_dropped_features_are_not_read(tiny_dataset, tmp_path):
    root, dataset_id, _ = tiny_dataset
    train_offline(_cfg(root, dataset_id, steps=50, drop=["since_instruction", "heading_cos"]), tmp_path, tmp_path,
                  log=lambda _: None)
    policy = ConditionedPolicy.load(tmp_path / "checkpoints")
    assert "since_instruction" not in policy.info["inputs"] and len(policy.columns) == 17
    states = np.zeros((1, 19), dtype=np.float32)
    changed = states.copy()
    changed[0, -1] = 3.0  # the clock: not an input, so not a difference
    code = np.zeros((1, 8), dtype=np.float32)
    assert np.allclose(policy.predict(policy.inputs(states, code))[0], policy.predict(policy.inputs(changed, code))[0])


def test_bc_resumes_from_its_checkpoint(tiny_dataset, tmp_path):
    root, dataset_id, _ = tiny_dataset
    train_offline(_cfg(root, dataset_id, steps=100), tmp_path, tmp_path, log=lambda _: None)
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["step"] == 100
    lines = []
    metrics = train_offline(_cfg(root, dataset_id, steps=200), tmp_path, tmp_path, resume=True, log=lines.append)
    steps = [p["steps"] for p in json.loads((tmp_path / "curve.json").read_text())]
    assert steps == [50, 100, 150, 200] and metrics["steps"] == 200
    assert sum(line.startswith("step ") for line in lines) == 2  # only the new steps trained


@pytest.mark.slow
def test_iql_actor_is_the_saved_policy(tiny_dataset, tmp_path):
    """d3rlpy's IQL trains; its actor's deterministic action is exactly the saved policy's."""
    import d3rlpy

    root, dataset_id, _ = tiny_dataset
    cfg = _cfg(root, dataset_id, algorithm="iql", steps=100)
    metrics = train_offline(cfg, tmp_path, tmp_path, log=lambda _: None)
    policy = ConditionedPolicy.load(tmp_path / "checkpoints")
    assert policy.info["algorithm"] == "iql" and metrics["steps"] == 100
    data = load_transitions(root, dataset_id)
    from flexrl.data.embeddings import make_embedder

    codes = policy.projection(make_embedder("hashing").embed(data.texts))
    obs = policy.inputs(data.states[:20], codes[data.instructions[:20]])
    algo = d3rlpy.algos.IQLConfig(actor_encoder_factory=d3rlpy.models.VectorEncoderFactory([64, 64]),
                                  critic_encoder_factory=d3rlpy.models.VectorEncoderFactory([64, 64]),
                                  value_encoder_factory=d3rlpy.models.VectorEncoderFactory([64, 64])).create(device="cpu:0")
    algo.create_impl(obs.shape[1:], 2)
    algo.load_model(str(tmp_path / "checkpoints" / "iql-state.d3"))
    assert np.allclose(algo.predict(obs), policy.predict(obs)[0], atol=1e-5)


def test_iql_takes_actions_that_happen_to_be_whole_numbers(tiny_dataset, tmp_path):
    """A saturated or standing body records actions of -1, 0 and 1: d3rlpy must not take them for discrete ones."""
    from flexrl.data.embeddings import make_embedder
    from flexrl.data.offline import train_iql
    from flexrl.data.policy import Projection

    root, dataset_id, _ = tiny_dataset
    data = load_transitions(root, dataset_id)
    data.actions = np.round(data.actions)
    train, val = split(data, 0.2, seed=0)
    embeddings = make_embedder("hashing").embed(data.texts)
    policy = ConditionedPolicy.new(Projection.fit(embeddings, 4), [16], "hashing")
    cfg = OfflineConfig(dataset=dataset_id, root=str(root), embedder="hashing", algorithm="iql", steps=2, eval_every=2,
                        hidden=[16], batch_size=64)
    seen = []
    assert train_iql(cfg, policy, train, val, policy.projection(embeddings), tmp_path, lambda s, m: seen.append(s)) == 2
    assert seen == [2]
