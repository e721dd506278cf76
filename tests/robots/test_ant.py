"""The Ant in the arena: its body, pose, falls and gait observation; gait training's batched env."""

import math

import mujoco
import numpy as np
import pytest

from flexrl.envs import make_arena
from flexrl.robots.ant import Ant
from flexrl.robots.gait import OBS_DIM, GaitPolicy, export_gait
from flexrl.robots.gait_env import GaitTask, GaitVecEnv


@pytest.fixture
def arena():
    env = make_arena("ant")
    yield env
    env.close()


def test_the_ant_stands_in_a_bigger_arena_facing_where_it_was_placed(arena):
    assert arena.half_size == pytest.approx(2.0 * Ant.arena_scale)
    arena.reset(seed=0, options={"agent": [1.0, -2.0], "agent_heading": 1.0})
    w = arena.world_state()
    assert np.allclose(w.agent.pos, [1.0, -2.0]) and w.agent_heading == pytest.approx(1.0)
    for _ in range(40):  # no torque: it settles on its legs and stays up
        arena.robot.act_joints(arena.data, np.zeros(8))
        mujoco.mj_step(arena.model, arena.data, 5)
    assert not arena.robot.fallen(arena.data) and arena.robot.up_z(arena.data) > 0.95


def test_the_ant_is_fallen_upside_down(arena):
    arena.reset(seed=0)
    assert not arena.robot.fallen(arena.data)
    arena.data.qpos[arena.robot.root_q + 3 : arena.robot.root_q + 7] = [0.0, 1.0, 0.0, 0.0]  # rolled over
    assert arena.robot.fallen(arena.data)


def test_the_gait_observation_is_in_the_body_frame(arena):
    arena.reset(seed=0, options={"agent_heading": math.pi / 2})  # facing north
    obs = arena.robot.gait_observation(arena.data, np.array([0.0, 0.5]))  # commanded north: straight ahead
    assert obs.shape == (OBS_DIM,)
    assert obs[0] == pytest.approx(0.55) and np.allclose(obs[1:4], [0, 0, -1], atol=1e-6)
    assert np.allclose(obs[-2:], [0.5, 0.0], atol=1e-6)


def test_without_a_gait_checkpoint_the_ant_says_how_to_train_one(arena, tmp_path):
    arena.reset(seed=0)
    robot = Ant(gait=str(tmp_path))
    robot.bind(arena.model)
    with pytest.raises(FileNotFoundError, match=r"robot.gait=.* holds no gait checkpoint.*flexrl train skill=locomotion robot=ant"):
        robot.act(arena.data, np.array([1.0, 0.0]))


def test_the_batched_env_steps_bodies_resets_the_fallen_and_never_pays_for_falling():
    env = GaitVecEnv(6, seed=0, task=GaitTask(episode_steps=30))
    obs = env.reset()
    assert obs.shape == (6, OBS_DIM) and np.allclose(obs[:, 0], 0.55)
    cut = 0
    for _ in range(30):
        obs, reward, done, infos = env.step(np.zeros((6, 8)))
        assert np.all(reward >= 0) and np.all(np.isfinite(obs))
        cut += sum(info.get("TimeLimit.truncated", False) for info in infos)
    assert cut == 6 and np.all(env.steps == 0)  # every episode was cut at 30 steps and restarted
    env.qpos[0, env.robot.root_q + 3 : env.robot.root_q + 7] = [0.0, 1.0, 0.0, 0.0]  # roll one body over
    _, reward, done, infos = env.step(np.zeros((6, 8)))
    assert done[0] and infos[0]["fell"] and reward[0] == 0.0 and not done[1:].any()


def test_the_batched_env_matches_the_arena_ant_step_for_step():
    """The same body, torques and physics in the batched env and in the arena give the same motion."""
    env = GaitVecEnv(1, seed=0)
    env.reset()
    arena = make_arena("ant")
    arena.reset(seed=0)
    data, robot = arena.data, arena.robot
    q = env.qpos[0]
    data.qpos[robot.root_q : robot.root_q + 7] = q[robot.root_q : robot.root_q + 7]
    data.qpos[robot.joint_q] = q[robot.joint_q]
    data.qvel[:] = 0.0
    env.qvel[0] = 0.0
    rng = np.random.default_rng(1)
    for _ in range(10):
        a = rng.uniform(-0.3, 0.3, 8)
        env.step(a[None])
        robot.act_joints(data, a)
        mujoco.mj_step(arena.model, data, 5)
    assert np.allclose(env.qpos[0, robot.root_q : robot.root_q + 3], data.qpos[robot.root_q : robot.root_q + 3], atol=1e-3)


def test_ppo_trains_on_the_batched_env_and_the_gait_exports_and_loads(tmp_path):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    env = VecNormalize(GaitVecEnv(8, seed=0), norm_reward=True)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [32, 32]},
                device="cpu", seed=0)
    model.learn(256)
    export_gait(model.policy, env.obs_rms.mean, env.obs_rms.var, env.clip_obs, tmp_path, {"steps": 256})
    gait = GaitPolicy.load(tmp_path)
    raw = env.get_original_obs()
    expected, _ = model.predict(env.normalize_obs(raw), deterministic=True)
    assert np.allclose(gait.act(raw), np.clip(expected, -1, 1), atol=1e-4)


def test_a_run_with_the_ant_and_no_gait_stops_in_one_line_before_any_run_directory(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "flexrl.cli", "run", "robot=ant", f"robot.gait={tmp_path}/none",
                          "planner=oracle", f"experiment.workspace={tmp_path}/ws", "agent.record_video=false"],
                         capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("flexrl run: robot.gait=") and "flexrl train skill=locomotion robot=ant" in lines[-1]
    assert not list((tmp_path / "ws").rglob("meta.json"))


def test_the_single_body_gymnasium_env_passes_the_checker_and_steps_like_the_batched_one():
    from gymnasium.utils.env_checker import check_env

    from flexrl.robots.gait_env import GaitGymEnv

    check_env(GaitGymEnv(), skip_render_check=True)
    single, batched = GaitVecEnv(1, seed=3, batched=False), GaitVecEnv(1, seed=3)
    single.reset(), batched.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 1, 8))
    for a in actions:
        single.step(a), batched.step(a)
    assert np.allclose(single.qpos, batched.qpos, atol=1e-6)


def test_the_ant_arena_scales_ball_and_pads_and_films_the_ant_from_its_tracking_camera():
    env = make_arena("ant", render_mode="rgb_array", width=160, height=120)
    assert (env.spec_.half_size, env.spec_.ball_radius, env.spec_.pad_radius) == pytest.approx((5.0, 0.3, 0.625))
    env.reset(seed=0, options={"agent": [-3.0, -3.0]})
    near = env.render().copy()
    env.reset(seed=0, options={"agent": [3.0, 3.0]})
    far = env.render()
    assert near.shape == (120, 160, 3) and near.std() > 10
    # The camera moves with the body: the purple torso is near the centre of the frame wherever the ant is.
    for frame in (near, far):
        centre = frame[40:80, 55:105].astype(int)
        purple = (centre[..., 2] > 120) & (centre[..., 0] > 60) & (centre[..., 1] < 80)
        assert purple.sum() > 20
    env.close()


@pytest.fixture(scope="module")
def untrained_gait(tmp_path_factory):
    """A gait checkpoint of an untrained policy: the export path end to end, no training."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(GaitVecEnv(2, seed=0))
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, policy_kwargs={"net_arch": [16]}, device="cpu", seed=0)
    return export_gait(model.policy, env.obs_rms.mean, env.obs_rms.var, env.clip_obs,
                       tmp_path_factory.mktemp("gait"), {"steps": 0})


def test_an_ant_on_its_back_ends_the_arena_episode_as_a_fall(untrained_gait):
    from flexrl.envs.config import RobotConfig

    arena = make_arena(RobotConfig(name="ant", gait=str(untrained_gait)))
    arena.reset(seed=0)
    _, _, terminated, _, _ = arena.step(np.zeros(2))
    assert not terminated
    arena.data.qpos[arena.robot.root_q + 3 : arena.robot.root_q + 7] = [0.0, 1.0, 0.0, 0.0]
    _, reward, terminated, _, info = arena.step(np.zeros(2))
    assert terminated and info["fell"] and reward == 0.0


def test_a_skill_action_becomes_a_command_no_faster_than_the_top_speed():
    ant = Ant()
    assert np.allclose(ant.command([1.0, 1.0]), [math.sqrt(0.5), math.sqrt(0.5)])
    assert np.allclose(ant.command([0.3, 0.4]), [0.3, 0.4])


def test_a_slow_command_is_raised_to_the_gaits_slowest_walk_and_a_tiny_one_left_to_stand():
    ant = Ant()
    assert np.allclose(ant.command([0.0, -0.2]), [0.0, -ant.min_walk])  # the gait barely moves at 0.2 m/s
    assert np.allclose(ant.command([0.03, 0.04]), [0.03, 0.04])  # under LIFT_FROM: the gait stands
    assert np.array_equal(ant.command([0.0, 0.0]), [0.0, 0.0])


@pytest.mark.parametrize("meta", [{"format": "other"}, {"format": "flexrl-gait/1", "obs_dim": 5}, []])
def test_a_gait_file_of_another_kind_is_one_line(tmp_path, meta):
    import json

    from safetensors.numpy import save_file

    (tmp_path / "gait.json").write_text(json.dumps(meta))
    save_file({"layer0.weight": np.zeros((8, OBS_DIM), np.float32)}, str(tmp_path / "gait.safetensors"))
    with pytest.raises(ValueError, match=rf"^robot.gait='{tmp_path}': format .*; allowed: 'flexrl-gait/1' with obs_dim {OBS_DIM}$"):
        GaitPolicy.load(tmp_path)


def test_the_batched_env_reports_reward_terms_that_add_up_to_the_reward():
    env = GaitVecEnv(4, seed=0)
    env.reset()
    _, reward, _, infos = env.step(np.random.default_rng(0).uniform(-1, 1, (4, 8)))
    for r, info in zip(reward, infos):
        assert sum(info["reward_terms"].values()) == pytest.approx(float(r), abs=1e-5)


def test_a_stalled_gait_stands_before_it_walks_again(monkeypatch):
    from flexrl.envs.registration import make_arena
    from flexrl.robots import ant as ant_module

    env = make_arena("ant")
    env.reset(seed=0)
    robot, asked = env.robot, []
    monkeypatch.setattr(robot, "gait_observation", lambda data, command: asked.append(np.array(command)) or np.zeros(28))
    robot.check()
    env.data.qvel[:] = 0.0  # a body that does not move, told to walk east at full speed
    for _ in range(ant_module.STALL_STEPS + ant_module.RECOVER_STEPS + 2):
        robot.act(env.data, np.array([1.0, 0.0]))
    speeds = [float(np.linalg.norm(c)) for c in asked]
    assert speeds[: ant_module.STALL_STEPS] == [1.0] * ant_module.STALL_STEPS
    assert speeds[ant_module.STALL_STEPS : ant_module.STALL_STEPS + ant_module.RECOVER_STEPS] == [0.0] * ant_module.RECOVER_STEPS
    assert speeds[-1] == 1.0  # then told to walk again
    env.close()


def test_a_fall_is_a_failure_and_counted(monkeypatch):
    from flexrl.robots.ant import Ant
    from flexrl.skills.evaluate import evaluate_skill
    from flexrl.skills.policies import PolicySet

    monkeypatch.setattr(Ant, "fallen", lambda self, data: True)
    result = evaluate_skill(PolicySet.load(), "move", episodes=3, robot="ant")
    assert result.falls == 3 and result.successes == 0 and result.mean_steps == 1


def test_balls_meet_every_body_from_close_by_and_the_ones_rolled_at_it_roll_towards_it():
    env = GaitVecEnv(64, seed=1, task=GaitTask(ball_every=1, ball_speed=1.0))
    env.reset()
    env.step(np.zeros((64, 8)))  # every body's countdown reaches 0 within its first step: each gets a ball
    ball = env.model.joint("ball")
    q, v = env.model.jnt_qposadr[ball.id], env.model.jnt_dofadr[ball.id]
    offset = env.qpos[:, q : q + 2] - env.positions()
    distance = np.linalg.norm(offset, axis=1)
    assert np.all((distance > 0.9) & (distance < 2.2)), distance
    assert np.allclose(env.qpos[:, q + 2], env.spec.ball_radius) and env.spec.ball_radius == pytest.approx(0.3)
    closing = -np.sum(env.qvel[:, v : v + 2] * offset, axis=1) / distance  # speed towards the body
    assert np.sum(closing > 0.15) >= 16 and np.all(np.linalg.norm(env.qvel[:, v : v + 2], axis=1) <= 1.0 + 1e-9)


def test_without_balls_the_ball_stays_parked_far_away():
    env = GaitVecEnv(4, seed=1, task=GaitTask(episode_steps=30))
    env.reset()
    for _ in range(5):
        env.step(np.zeros((4, 8)))
    ball = env.model.joint("ball")
    assert np.all(env.qpos[:, env.model.jnt_qposadr[ball.id]] > 100)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ball_every", -1, "gait.ball_every=-1; allowed: an integer >= 0 (0: no ball)"),
    ("ball_speed", 0.0, "gait.ball_speed=0.0; allowed: a number in (0, 3] m/s"),
])
def test_a_bad_ball_setting_is_one_line(field, value, message):
    with pytest.raises(ValueError) as err:
        GaitTask(**{field: value})
    assert str(err.value) == message
