import json

import numpy as np
import pytest

from flexrl.skills.policies import PolicySet
from flexrl.skills.train import PPOConfig, train_family


@pytest.mark.parametrize("family", ["reach", "avoid"])
def test_training_smoke(tmp_path, family):
    cfg = PPOConfig(total_steps=512, n_envs=2, n_steps=128, batch_size=64, eval_every=256, eval_episodes=2, net_arch=[16])
    result = train_family(family, cfg, tmp_path)
    assert result.steps >= 512
    assert (tmp_path / f"{family}.safetensors").is_file() and not list(tmp_path.glob("*.zip"))
    meta = json.loads((tmp_path / f"{family}.json").read_text())
    assert meta["steps"] == result.steps and meta["ppo"]["net_arch"] == [16]
    assert set(result.success) and all(0 <= v <= 1 for v in result.success.values())
    policies = PolicySet.load(tmp_path, families=(family,))
    assert policies.act(family, [[0.0] * policies.models[family].observation_space.shape[0]]).shape == (1, 2)
    obs = np.random.default_rng(0).uniform(-2, 2, (64, policies.models[family].observation_space.shape[0]))
    trained, _ = result.model.predict(obs.astype(np.float32), deterministic=True)
    assert np.array_equal(policies.act(family, obs.astype(np.float32)), trained)  # the exported policy is the trained one
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_bad_ppo_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="batch_size=100 must divide"):
        train_family("reach", PPOConfig(batch_size=100), tmp_path)
    with pytest.raises(ValueError, match="unknown skill family 'swim'"):
        train_family("swim", PPOConfig(), tmp_path)


def test_missing_checkpoint_error_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="flexrl train"):
        PolicySet.load(tmp_path)
