import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from flexrl.envs import ArenaEnv


@pytest.mark.parametrize("env_id", ["flexrl/Arena-v0", "flexrl/GoTo-v0", "flexrl/Avoid-v0"])
def test_registered_envs_pass_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps > 0


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = ArenaEnv(ball_mode="random")
        obs, _ = env.reset(seed=seed)
        out = [obs]
        rng = np.random.default_rng(0)
        for _ in range(50):
            obs, *_ = env.step(rng.uniform(-1, 1, 2))
            out.append(obs)
        return np.array(out)

    assert np.array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_world_state_matches_observation():
    env = ArenaEnv(ball_mode="drift")
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        obs, *_ = env.step([0.5, -0.2])
    w = env.world_state()
    h = env.half_size
    np.testing.assert_allclose(obs[0:2], w.agent.pos / h, rtol=1e-5)
    np.testing.assert_allclose(obs[4:6], w.ball.pos / h, rtol=1e-5)
    for i, pos in enumerate(w.pads.values()):
        np.testing.assert_allclose(obs[8 + 2 * i : 10 + 2 * i], pos / h, rtol=1e-5)
    assert w.position_of("red_pad") is not None
    assert w.agent.speed > 0


def test_layout_is_randomised_and_separated():
    env = ArenaEnv()
    layouts = []
    for seed in range(5):
        env.reset(seed=seed)
        w = env.world_state()
        pts = np.array([w.agent.pos, w.ball.pos, *w.pads.values()])
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 99
        assert d.min() >= env.min_separation - 1e-9
        assert np.all(np.abs(pts) < env.half_size)
        layouts.append(pts)
    assert not np.allclose(layouts[0], layouts[1])


def test_agent_moves_where_pushed_and_walls_hold():
    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (0.0, 0.0)})
    for _ in range(200):
        env.step([1.0, 0.0])
    w = env.world_state()
    assert w.agent.pos[0] > env.half_size - 0.2  # pushed east against the wall
    assert w.agent.pos[0] < env.half_size  # and the wall held it


def test_chasing_ball_approaches_and_drifting_ball_keeps_moving():
    env = ArenaEnv(ball_mode="chase", ball_speed=0.5)
    env.reset(seed=0, options={"agent": (-1.5, -1.5), "ball": (1.5, 1.5)})
    d0 = np.linalg.norm(env.world_state().agent.pos - env.world_state().ball.pos)
    for _ in range(40):
        env.step([0, 0])
    w = env.world_state()
    assert np.linalg.norm(w.agent.pos - w.ball.pos) < d0 - 0.5
    env = ArenaEnv(ball_mode="drift", ball_speed=0.5)
    env.reset(seed=0)
    for _ in range(200):
        env.step([0, 0])
    assert env.world_state().ball.speed > 0.3


@pytest.mark.parametrize(
    "options, match",
    [
        ({"agent": (9.0, 0.0)}, "outside the arena"),
        ({"ball": (float("nan"), 0.0)}, "outside the arena"),
        ({"agent": "north"}, "not a point"),
        ({"ball_mode": "flying"}, "allowed: still, drift, chase, random"),
        ({"teleport": 1}, "unknown reset option"),
    ],
)
def test_bad_reset_options_get_one_line_errors(options, match):
    env = ArenaEnv()
    with pytest.raises(ValueError, match=match) as err:
        env.reset(seed=0, options=options)
    assert "\n" not in str(err.value)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="ball_mode='x'"):
        ArenaEnv(ball_mode="x")
    with pytest.raises(ValueError, match="ball_speed"):
        ArenaEnv(ball_speed=float("nan"))


def test_nan_action_is_no_force_and_instability_is_flagged():
    env = ArenaEnv()
    env.reset(seed=0)
    obs, r, term, trunc, info = env.step([float("nan"), float("inf")])
    assert np.all(np.isfinite(obs)) and not term
    env.data.qvel[0] = float("nan")  # simulate a blow-up inside MuJoCo
    obs, r, term, trunc, info = env.step([0, 0])
    assert term and info["unstable"] is True
    assert np.all(np.isfinite(obs))


def test_unknown_object_name():
    env = ArenaEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="unknown object 'purple_pad'; known objects: agent, ball, red_pad"):
        env.world_state().position_of("purple_pad")
