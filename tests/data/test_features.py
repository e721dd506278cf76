"""World features: fixed layout, robot-scaled, and the instruction clock capped."""

import numpy as np

from flexrl.data.features import DIM, NAMES, world_features
from flexrl.envs.registration import make_arena


def test_features_have_the_documented_layout():
    env = make_arena()
    env.reset(seed=3, options={"agent": (0.5, -0.5), "ball": (1.0, 1.0)})
    world = env.world_state()
    f = world_features(world, 0)
    assert f.shape == (DIM,) == (len(NAMES),) and f.dtype == np.float32
    h = world.half_size
    assert np.allclose(f[:2], np.array([0.5, -0.5]) / h, atol=1e-5)
    i = NAMES.index("ball_dx")
    assert np.allclose(f[i:i + 2], (world.ball.pos - world.agent.pos) / h, atol=1e-5)
    env.close()


def test_instruction_clock_grows_then_caps():
    env = make_arena()
    env.reset(seed=0)
    world = env.world_state()
    clock = [world_features(world, s)[-1] for s in (0, 50, 100, 10_000)]
    assert clock[0] == 0 and 0 < clock[1] < clock[2] < clock[3] == 3.0
    env.close()


def test_ant_sees_its_arena_in_the_same_units():
    orb, ant = make_arena("orb"), make_arena("ant")
    orb.reset(seed=1, options={"agent": (0.4, 0.4)})
    ant.reset(seed=1, options={"agent": (0.4 * ant.half_size / orb.half_size,) * 2})
    assert np.allclose(world_features(orb.world_state())[:2], world_features(ant.world_state())[:2], atol=1e-3)
    orb.close(), ant.close()
