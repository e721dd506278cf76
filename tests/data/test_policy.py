"""The conditioned policy's weights-only files: round trip, and refusal of anything else."""

import json

import numpy as np
import pytest

from flexrl.data.features import DIM
from flexrl.data.policy import ConditionedPolicy, Projection
from flexrl.skills.checkpoint import CheckpointError


def _policy():
    rng = np.random.default_rng(0)
    projection = Projection.fit(rng.normal(size=(40, 24)).astype(np.float32), 8)
    return ConditionedPolicy.new(projection, [32, 32], "hashing", seed=1)


def test_projection_centres_and_keeps_the_asked_size():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 16)).astype(np.float32) + 5.0
    p = Projection.fit(e, 4)
    codes = p(e)
    assert codes.shape == (30, 4) and np.allclose(codes.mean(0), 0, atol=1e-4)
    assert Projection.fit(e[:3], 6).basis.shape == (16, 6)  # fewer samples than asked: padded


def test_round_trip_gives_the_same_actions(tmp_path):
    policy = _policy()
    obs = np.random.default_rng(2).normal(size=(5, DIM + 8)).astype(np.float32)
    policy.save(tmp_path, "policy", {"algorithm": "bc"})
    loaded = ConditionedPolicy.load(tmp_path)
    a, _ = policy.predict(obs)
    b, _ = loaded.predict(obs)
    assert np.allclose(a, b) and np.all(np.abs(a) <= 1)
    assert loaded.embedder == "hashing" and loaded.info["algorithm"] == "bc"
    assert np.allclose(policy.projection(np.ones(24)), loaded.projection(np.ones(24)), atol=1e-6)
    single, _ = loaded.predict(obs[0])
    assert single.shape == (2,)


def test_changed_weights_are_refused(tmp_path):
    _policy().save(tmp_path, "policy")
    weights = tmp_path / "policy.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        ConditionedPolicy.load(tmp_path)


@pytest.mark.parametrize("change, match", [
    ({"format": "pickle"}, "format"), ({"hidden": [10**6]}, "hidden"), ({"code_dim": -1}, "code_dim"),
])
def test_bad_descriptions_are_one_line(tmp_path, change, match):
    _policy().save(tmp_path, "policy")
    meta = json.loads((tmp_path / "policy.json").read_text())
    (tmp_path / "policy.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(CheckpointError, match=match) as err:
        ConditionedPolicy.load(tmp_path)
    assert "\n" not in str(err.value)


def test_missing_policy_names_the_command(tmp_path):
    with pytest.raises(CheckpointError, match="flexrl train-offline"):
        ConditionedPolicy.load(tmp_path)
