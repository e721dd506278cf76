import gymnasium as gym
import numpy as np
import pytest


@pytest.mark.parametrize("env_id", ["flexrl/GoTo-v0", "flexrl/Avoid-v0"])
def test_reward_terms_sum_to_reward(env_id):
    env = gym.make(env_id)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        _, reward, term, trunc, info = env.step(rng.uniform(-1, 1, 2))
        assert reward == pytest.approx(sum(info["reward_terms"].values()))
        seen |= {k for k, v in info["reward_terms"].items() if v != 0}
        if term or trunc:
            env.reset()
    assert len(seen) >= 2  # the terms are live, not all zero


def test_goal_is_in_the_observation():
    env = gym.make("flexrl/GoTo-v0")
    obs, info = env.reset(seed=5)
    arena = env.unwrapped
    goal, _ = env.get_wrapper_attr("active").goal(arena.world_state())
    np.testing.assert_allclose(obs[:2], (goal - arena.world_state().agent.pos) / arena.half_size, rtol=1e-5)


def test_training_envs_sample_every_skill_of_their_family():
    env = gym.make("flexrl/GoTo-v0")
    names = {env.reset(seed=s)[1]["skill"].split("(")[0] for s in range(60)}
    assert names == {"go_to", "move", "follow", "stop"}
