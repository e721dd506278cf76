"""The robot extension point: one factory, the configured body everywhere, one-line errors."""

import gymnasium as gym
import numpy as np
import pytest

from flexrl.envs import make_arena
from flexrl.envs.config import RobotConfig
from flexrl.robots import ROBOTS, make_robot, robot_class
from flexrl.robots.base import Robot
from flexrl.robots.orb import Orb
from flexrl.skills.evaluate import evaluate_skill
from flexrl.skills.policies import PolicySet
from flexrl.skills.train import PPOConfig, make_model


def test_every_registered_robot_is_a_robot_class():
    for name in ROBOTS:
        cls = robot_class(name)
        assert issubclass(cls, Robot) and cls.name == name


def test_an_unknown_robot_is_one_line_naming_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"^robot='tank'; allowed: orb, ant$"):
        make_robot("tank")
    with pytest.raises(ValueError, match=r"robot.name='tank'; allowed: orb, ant$"):
        RobotConfig(name="tank")


def test_the_config_reaches_the_body():
    robot = make_robot(RobotConfig(force=8.0, damping=2.0, radius=0.15))
    assert isinstance(robot, Orb) and (robot.force, robot.damping, robot.radius) == (8.0, 2.0, 0.15)
    env = make_arena(RobotConfig(force=8.0))
    assert env.model.actuator_gear[:, 0].tolist() == [8.0, 8.0]
    env.close()


def test_the_gymnasium_id_takes_the_robot_and_the_orb_is_the_default():
    env = gym.make("flexrl/Arena-v0", robot=RobotConfig(radius=0.2))
    world = env.unwrapped.world_state()
    assert world.touch_distance == pytest.approx(0.2 + 0.12 + 0.02)
    assert make_arena().robot.name == "orb"
    env.close()


def test_the_pose_comes_from_the_robot_and_a_heading_is_validated():
    env = make_arena()
    env.reset(seed=0, options={"agent": [0.5, -0.25], "agent_velocity": [0.3, 0.0], "agent_heading": 1.0})
    w = env.world_state()
    assert np.allclose(w.agent.pos, [0.5, -0.25]) and np.allclose(w.agent.vel, [0.3, 0.0])
    assert w.agent_heading == 0.0  # the orb has no front
    with pytest.raises(ValueError, match=r"agent_heading=nan; allowed: a finite angle"):
        env.reset(seed=0, options={"agent_heading": float("nan")})


def test_training_builds_the_configured_body():
    model = make_model("reach", PPOConfig(n_envs=1, n_steps=64, batch_size=64), RobotConfig(force=8.0))
    arena = model.get_env().envs[0].unwrapped
    assert arena.robot.force == 8.0
    model.get_env().close()


def test_evaluation_judges_the_body_it_is_given():
    """A slow orb (top speed 0.15 m/s) misses go_to's time budget that the shipped orb meets."""
    policies = PolicySet.load()
    fast = evaluate_skill(policies, "go_to", episodes=6, seed=10_000)
    slow = evaluate_skill(policies, "go_to", episodes=6, seed=10_000, robot=RobotConfig(damping=40.0))
    assert fast.success_rate >= 0.8 and slow.success_rate < fast.success_rate


@pytest.mark.parametrize(("config", "message"), [
    (RobotConfig(name="ant", force=8.0), "robot.force=8.0 does not apply to robot=ant; its settings: gait"),
    (RobotConfig(gait="/somewhere"), "robot.gait='/somewhere' does not apply to robot=orb; its settings: radius, force, damping"),
])
def test_a_setting_the_robot_does_not_take_is_refused_in_one_line(config, message):
    with pytest.raises(ValueError) as err:
        make_robot(config)
    assert str(err.value) == message
