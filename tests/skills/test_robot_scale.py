"""Skills are judged per robot: the orb's criteria times the robot's SkillScale (the ant's: lengths x2.5)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flexrl.bench import predicates as p
from flexrl.envs.registration import make_arena
from flexrl.envs.world import BodyState, SkillScale, WorldState
from flexrl.skills.library import FOLLOW_RADIUS, REACH_RADIUS, SAFE_DISTANCE, SKILLS, SkillCall, Status, start_skill

ANT = SkillScale(length=2.5, time=4.0, still=0.1, wall=0.8, standoff=0.65)
PADS = {"red_pad": np.array([2.5, 2.5]), "blue_pad": np.array([-2.5, -2.5])}


def world(agent, scale=ANT, ball=(4.0, -4.0), speed=0.0) -> WorldState:
    return WorldState(BodyState(np.array(agent, float), np.array([speed, 0.0])), BodyState(np.array(ball, float), np.zeros(2)),
                      PADS, 5.0, touch_distance=0.92, scale=scale)


def test_radii_distances_and_budgets_scale_with_the_robot():
    w = world((0.0, 0.0))
    go = start_skill(SkillCall("go_to", ("red_pad",)), w)
    assert go.radius == pytest.approx(REACH_RADIUS * 2.5) and go.timeout == SKILLS["go_to"].timeout * 4
    move = start_skill(SkillCall("move", ("north",)), w)
    assert move.point == pytest.approx([0.0, 2.5])  # the orb's 1 m, times 2.5
    assert start_skill(SkillCall("avoid", ("ball",)), w).safe == pytest.approx(SAFE_DISTANCE * 2.5)
    follow = start_skill(SkillCall("follow", ("ball",)), w)
    assert follow.radius == pytest.approx(0.92 + (FOLLOW_RADIUS - 0.24) * 2.5)  # as far beyond touching as the orb's
    stop = start_skill(SkillCall("stop"), w)
    assert stop.update(world((0.0, 0.0), speed=0.08)) is Status.SUCCESS  # under the ant's 0.1 m/s
    orb_stop = start_skill(SkillCall("stop"), world((0.0, 0.0), scale=SkillScale()))
    assert orb_stop.update(world((0.0, 0.0), scale=SkillScale(), speed=0.08)) is Status.RUNNING
    assert start_skill(SkillCall("done"), w).timeout == SKILLS["done"].timeout  # "until the next instruction" stays


def test_the_orb_is_judged_as_before():
    w = world((0.0, 0.0), scale=SkillScale())
    assert start_skill(SkillCall("go_to", ("red_pad",)), w).radius == REACH_RADIUS
    assert start_skill(SkillCall("follow", ("ball",)), dataclasses.replace(w, touch_distance=0.24)).radius == FOLLOW_RADIUS
    assert start_skill(SkillCall("follow", ("ball",)), w).goal(w)[0] == pytest.approx([4.0, -4.0])  # no standoff


def test_a_legged_body_follows_short_of_the_ball():
    w = world((0.0, 0.0), ball=(3.0, -4.0))
    goal, _ = start_skill(SkillCall("follow", ("ball",)), w).goal(w)
    assert np.linalg.norm(goal - np.array([3.0, -4.0])) == pytest.approx(0.65)
    assert np.linalg.norm(goal) == pytest.approx(5.0 - 0.65)


def test_predicates_read_the_scale():
    near_pad = [world((2.0, 2.0))] * 5  # 0.71 m from the red pad: within the ant's 0.5 m? no; within 2x? yes
    assert not p.reached(near_pad, "red_pad")
    assert p.reached([world((2.2, 2.2))] * 5, "red_pad")  # 0.42 m: inside the ant's 0.5 m, outside the orb's 0.2
    assert not p.reached([world((2.2, 2.2), scale=SkillScale())] * 5, "red_pad")
    walk = [world((0.0, y)) for y in np.linspace(0, 1.2, 30)]
    assert not p.moved(walk, "north", min_distance=0.6)  # 1.2 m < 0.6 x 2.5
    assert p.moved([world((0.0, y)) for y in np.linspace(0, 1.6, 30)], "north", min_distance=0.6)
    still = [world((0.0, 0.0), speed=0.08)] * 100
    assert p.stopped(still) and not p.stopped([world((0.0, 0.0), scale=SkillScale(), speed=0.08)] * 100)
    assert not p.stopped(still[:60])  # the ant's hold is 20 x 4 = 80 steps


def test_the_arena_scales_ball_speed_and_keeps_the_ant_off_the_walls():
    ant = make_arena("ant")
    ant.reset(seed=0, options={"ball_mode": "drift", "ball_speed": 0.6})
    scale = ant.robot.skill_scale
    assert ant.episode_ball_mode == "drift"
    speed = np.linalg.norm(ant.data.qvel[ant.model.jnt_dofadr[ant.model.joint("ball").id]:][:2])
    assert speed == pytest.approx(0.6 * scale.length / scale.time, rel=1e-6)
    with pytest.raises(ValueError, match=r"agent=.* is outside the arena; x and y must be finite and in \[-4.4, 4.4\] m"):
        ant.reset(options={"agent": (4.7, 0.0)})
    for seed in range(20):
        ant.reset(seed=seed)
        assert np.all(np.abs(ant.world_state().agent.pos) <= ant.half_size - scale.wall)
    ant.close()


def test_a_body_that_stands_by_itself_is_given_no_push_to_stop():
    from flexrl.skills.policies import STAND, PolicySet

    w = world((0.0, 0.0), scale=dataclasses.replace(ANT, stands=True))
    assert start_skill(SkillCall("stop"), w).policy == STAND and start_skill(SkillCall("done"), w).policy == STAND
    assert start_skill(SkillCall("go_to", ("red_pad",)), w).policy == "reach"
    assert start_skill(SkillCall("stop"), world((0.0, 0.0), scale=SkillScale())).policy == "reach"  # the orb brakes
    actions = PolicySet.load().act(STAND, np.ones((3, 6), np.float32))
    assert actions.shape == (3, 2) and not actions.any()


def test_a_robot_may_ship_its_own_skill_policies(tmp_path, monkeypatch):
    import shutil

    from flexrl.robots.ant import Ant
    from flexrl.skills.policies import PolicySet, pretrained_dir, robot_policies_dir

    assert robot_policies_dir(None) is None and robot_policies_dir("orb") is None
    for family in ("reach", "avoid"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(pretrained_dir() / f"{family}{suffix}", tmp_path / f"{family}{suffix}")
    monkeypatch.setattr(Ant, "skill_policies", str(tmp_path))
    assert robot_policies_dir("ant") == tmp_path
    (tmp_path / "avoid.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=f"no policy for skill family 'avoid' at {tmp_path}/avoid.safetensors"):
        PolicySet.load(robot="ant")
    assert set(PolicySet.load(robot="orb").models) == {"reach", "avoid"}
