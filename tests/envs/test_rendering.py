import numpy as np

from flexrl.envs import ArenaEnv


def test_offscreen_render_shows_the_arena():
    env = ArenaEnv(render_mode="rgb_array", width=160, height=120)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (120, 160, 3) and frame.dtype == np.uint8
    # pads are saturated colours on a grey floor: the frame is not blank
    assert frame.std() > 10
    f = frame.astype(int)
    red = (f[..., 0] - f[..., 1] > 80) & (f[..., 0] - f[..., 2] > 80)
    assert red.sum() > 20
    env.close()


def test_no_render_mode_renders_nothing():
    env = ArenaEnv()
    env.reset(seed=0)
    assert env.render() is None
