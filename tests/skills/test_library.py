import numpy as np
import pytest

from flexrl.envs import ArenaEnv
from flexrl.skills.library import (
    MOVE_DISTANCE,
    REACH_RADIUS,
    SAFE_DISTANCE,
    SKILLS,
    SkillCall,
    Status,
    candidate_calls,
    start_skill,
    target_limit,
)


@pytest.fixture
def world():
    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (0.0, 0.0), "ball": (1.0, 1.0), "red_pad": (-1.0, 0.5)})
    return env.world_state()


def test_parse_and_print_calls():
    assert SkillCall.parse("go_to(red_pad)") == SkillCall("go_to", ("red_pad",))
    assert SkillCall.parse("stop") == SkillCall("stop")
    assert SkillCall.parse("go_to((1.0, -0.5))").args == ("(1.0, -0.5)",)
    assert str(SkillCall("avoid", ("ball",))) == "avoid(ball)"
    with pytest.raises(ValueError):
        SkillCall.parse("rm -rf /")


def test_move_goal_is_one_metre_along_the_direction(world):
    skill = start_skill(SkillCall("move", ("north",)), world)
    goal, vel = skill.goal(world)
    np.testing.assert_allclose(goal, [0.0, MOVE_DISTANCE])
    assert not vel.any()


def test_move_goal_is_clipped_at_the_wall():
    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (1.7, 0.0)})
    goal, _ = start_skill(SkillCall("move", ("east",)), env.world_state()).goal(env.world_state())
    assert goal[0] < env.half_size - 0.2


def test_go_to_tracks_the_moving_ball(world):
    skill = start_skill(SkillCall("go_to", ("ball",)), world)
    goal, _ = skill.goal(world)
    np.testing.assert_allclose(goal, world.ball.pos)


def test_go_to_ends_on_arrival_and_times_out_otherwise(world):
    skill = start_skill(SkillCall("go_to", ("red_pad",)), world)
    assert skill.update(world) is Status.RUNNING
    arrived = type(world)(
        agent=type(world.agent)(world.pads["red_pad"] + REACH_RADIUS / 2, np.zeros(2)),
        ball=world.ball, pads=world.pads, half_size=world.half_size,
    )
    assert skill.update(arrived) is Status.SUCCESS
    skill = start_skill(SkillCall("go_to", ("red_pad",)), world)
    statuses = [skill.update(world) for _ in range(SKILLS["go_to"].timeout)]
    assert statuses[-1] is Status.TIMEOUT and set(statuses[:-1]) == {Status.RUNNING}


def test_avoid_succeeds_only_when_far_at_the_end(world):
    far = SAFE_DISTANCE + 0.5
    for dist, expected in [(far, Status.SUCCESS), (SAFE_DISTANCE / 2, Status.TIMEOUT)]:
        skill = start_skill(SkillCall("avoid", ("red_pad",)), world)
        w = type(world)(
            agent=type(world.agent)(world.pads["red_pad"] + [dist, 0.0], np.zeros(2)),
            ball=world.ball, pads=world.pads, half_size=world.half_size,
        )
        statuses = [skill.update(w) for _ in range(SKILLS["avoid"].timeout)]
        assert statuses[-1] is expected


@pytest.mark.parametrize(
    "call, match",
    [
        (SkillCall("move", ("up",)), "unknown direction 'up'; allowed: north, north_east"),
        (SkillCall("go_to", ("purple_pad",)), "unknown target 'purple_pad'; allowed: ball, red_pad"),
        (SkillCall("go_to", ("(9, 9)",)), "outside the arena"),
        (SkillCall("go_to", ("(nan, 0)",)), r"unknown target '\(nan, 0\)'; allowed: .* or a point"),
        (SkillCall("avoid", ()), r"takes 1 argument\(s\): avoid\(object\)"),
        (SkillCall("fly", ()), "unknown skill 'fly'; allowed: move, go_to"),
    ],
)
def test_bad_skill_arguments_get_one_line_errors(world, call, match):
    with pytest.raises(ValueError, match=match) as err:
        start_skill(call, world)
    assert "\n" not in str(err.value)


def test_candidate_calls_are_all_valid(world):
    calls = candidate_calls(world)
    assert len(calls) == len(set(calls)) >= 15
    for call in calls:
        start_skill(call, world)


def _braking_world(agent_vel=(0.0, 0.0), ball=(2.0, 0.0)):
    """An ant-like world: touching at 0.92 m, braking 0.8 s ahead, the ball east of the agent."""
    import dataclasses

    from flexrl.envs.world import BodyState, SkillScale

    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (0.0, 0.0), "ball": (1.0, 0.0)})
    base = env.world_state()
    return dataclasses.replace(base, agent=BodyState(np.zeros(2), np.array(agent_vel, dtype=float)),
                               ball=BodyState(np.array(ball, dtype=float), np.zeros(2)), touch_distance=0.92,
                               scale=SkillScale(length=2.5, brake=0.8))


def test_a_braking_body_stops_walking_into_the_ball_but_may_still_touch_it_when_told_to():
    east, north_east = np.array([1.0, 0.0]), np.array([0.7, 0.7])
    far = _braking_world(agent_vel=(0.2, 0.0), ball=(3.0, 0.0))
    near = _braking_world(agent_vel=(1.0, 0.0), ball=(1.5, 0.0))  # touches in 0.58 s at 1 m/s: brake
    follow = start_skill(SkillCall("follow", ("ball",)), near)
    assert np.array_equal(follow.shield(far, east), east)  # touching is 2 s away: as the policy says
    assert np.allclose(follow.shield(near, east), [0.0, 0.0])  # no part towards the ball
    assert np.allclose(follow.shield(near, north_east), [0.0, 0.7])  # the part across it is kept
    assert np.allclose(follow.shield(near, -east), -east)  # backing away is never braked
    touch = start_skill(SkillCall("go_to", ("ball",)), near)
    assert np.array_equal(touch.shield(near, east), east)  # touching the ball is the goal


def test_a_braking_body_stops_walking_into_a_wall_its_legs_would_reach():
    import dataclasses

    base = _braking_world(ball=(-1.5, 1.5))  # the ball well away from every position below
    scale = dataclasses.replace(base.scale, reach=1.0)
    at = lambda pos, vel=(0.0, 0.0): dataclasses.replace(  # noqa: E731
        base, agent=dataclasses.replace(base.agent, pos=np.array(pos), vel=np.array(vel)), scale=scale)
    assert base.half_size == 2.0
    avoid = start_skill(SkillCall("avoid", ("ball",)), at((0.0, 0.0)))
    out = np.array([1.0, 0.5])
    assert np.array_equal(avoid.shield(at((0.0, -0.5)), out), out)  # legs 0.5 m or more from every wall
    walking_east = at((0.7, -0.5), vel=(0.5, 0.0))  # legs 0.3 m from the east wall, reached in 0.6 s: brake
    assert np.allclose(avoid.shield(walking_east, out), [0.0, 0.5])  # along the wall is kept
    assert np.allclose(avoid.shield(walking_east, -out), -out)  # away from it is kept
    assert np.allclose(avoid.shield(at((0.7, -0.5)), out), out)  # standing: 0.3 m is beyond the margin
    corner = at((-0.9, -0.9))
    assert np.allclose(avoid.shield(corner, np.array([-1.0, -1.0])), [0.0, 0.0])
    touch = start_skill(SkillCall("go_to", ("ball",)), walking_east)
    assert np.allclose(touch.shield(walking_east, out), [0.0, 0.5])  # a wall is braked for, even to touch the ball


def test_skill_targets_lie_where_a_body_that_brakes_before_walls_can_get():
    import dataclasses

    base = _braking_world(ball=(-1.5, 1.5))
    ant_like = dataclasses.replace(base, agent=dataclasses.replace(base.agent, pos=np.array([0.5, 0.0])),
                                   scale=dataclasses.replace(base.scale, reach=1.0))
    assert target_limit(ant_like) == pytest.approx(2.0 - 1.15)  # reach + the brake margin (0.06 x 2.5)
    move = start_skill(SkillCall("move", ("east",)), ant_like)
    assert move.point[0] == pytest.approx(0.85)  # 2.5 m east, clipped to where the body can get
    with pytest.raises(ValueError, match=r"outside what this body can reach; x and y must be in \[-0.85, 0.85\] m"):
        start_skill(SkillCall("go_to", ("(1.2, 0)",)), ant_like)
    no_walls = dataclasses.replace(ant_like, scale=dataclasses.replace(ant_like.scale, reach=0.0))
    assert target_limit(no_walls) == pytest.approx(2.0 - 0.25 * 2.5)  # the orb's wall margin, scaled


def test_the_orb_never_brakes(world):
    follow = start_skill(SkillCall("follow", ("ball",)), world)
    assert world.scale.brake == 0 and np.array_equal(follow.shield(world, np.array([1.0, 1.0])), [1.0, 1.0])
