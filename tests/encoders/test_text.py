import dataclasses

import numpy as np
import pytest

from flexrl.encoders.text import EncoderConfig, EventTracker, bearing, encode, fixed_prefix
from flexrl.envs import ArenaEnv


@pytest.fixture
def world():
    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (0.5, 1.0), "ball": (1.5, 2.0 - 0.2), "red_pad": (-1.0, 1.0),
                               "ball_velocity": (-0.5, -0.5), "ball_mode": "still",
                               "green_pad": (-1.5, -1.5), "blue_pad": (1.5, -1.5), "yellow_pad": (-1.5, 1.7)})
    return env.world_state()


def test_absolute_form_in_configured_units(world):
    text = encode(world, EncoderConfig(kind="absolute", units="cm"))
    assert text.startswith("(units: cm) Red pad: (-100, 100), Green pad: (-150, -150)")
    assert text.endswith("Yellow pad: (-150, 170), Agent: (50, 100), Ball: (150, 180)")
    assert "Agent: (0.5, 1.0)" in encode(world, EncoderConfig(kind="absolute", units="m", decimals=1))
    older = encode(world, EncoderConfig(kind="absolute", units="cm", fixed_first=False))
    assert older.startswith("Agent: (50, 100), Ball: (150, 180), Red pad: (-100, 100)") and older.endswith("(units: cm)")


def test_fixed_prefix_is_what_no_motion_changes(world):
    cfg = EncoderConfig(include_velocity=True)
    env = ArenaEnv(ball_mode="drift")
    env.reset(seed=4)
    texts, prefixes = [], set()
    for _ in range(4):
        w = env.world_state()
        text, fixed = encode(w, cfg, ["the ball hit you"]), fixed_prefix(w, cfg)
        assert text.startswith(fixed) and text[len(fixed)] == " " and fixed.endswith(",")
        texts.append(text[len(fixed) :])
        prefixes.add(fixed)
        for _ in range(15):
            env.step((1.0, 0.5))
    assert len(prefixes) == 1 and len(set(texts)) == 4  # the agent moved, the pads did not
    assert texts[0].startswith(" Agent: (") and "Ball" not in fixed
    assert fixed_prefix(world, EncoderConfig(fixed_first=False)) == ""
    bare = dataclasses.replace(world, pads={})
    assert fixed_prefix(bare, cfg) == "(units: dm)" and encode(bare, cfg).startswith("(units: dm) Agent: (")
    assert fixed_prefix(world, EncoderConfig(kind="compact")) == fixed_prefix(world, EncoderConfig(kind="egocentric")) == ""


def test_egocentric_form_gives_bearings_and_approach(world):
    text = encode(world, EncoderConfig(kind="egocentric", units="m", decimals=1, include_velocity=True))
    assert "red pad: 1.5 m west" in text
    assert "ball: 1.3 m north-east, approaching" in text


def test_compact_form_is_egocentric_in_few_tokens(world):
    text = encode(world, EncoderConfig(kind="compact", include_velocity=True))
    assert text == "ball 13 NE approaching, red pad 15 W, green pad 32 SW, blue pad 27 S, yellow pad 21 W (dm)"
    assert EncoderConfig().kind == "absolute"
    assert encode(world, EncoderConfig(kind="compact", units="m", decimals=1)).startswith("ball 1.3 NE, red pad 1.5 W")
    for kind in ("egocentric", "absolute"):
        assert len(text) < len(encode(world, EncoderConfig(kind=kind, include_velocity=True)))


def test_bearing_words():
    assert bearing(np.array([0, 1])) == "north"
    assert bearing(np.array([-1, -1])) == "south-west"


def test_events_fire_once_and_expire():
    env = ArenaEnv()
    env.reset(seed=0, options={"agent": (0.0, 0.0), "red_pad": (0.6, 0.0), "ball": (-1.5, -1.5)})
    tracker = EventTracker(expire_steps=50)
    tracker.update(env.world_state())
    fired = []
    for _ in range(40):
        env.step([1.0, 0.0])
        fired += tracker.update(env.world_state())
    assert fired.count("you reached the red pad") == 1
    assert "Recent events: you reached the red pad" in encode(env.world_state(), EncoderConfig(), tracker.recent)
    for _ in range(60):  # stay pressed against the east wall, past the pad: nothing new happens
        env.step([1.0, 0.0])
        assert tracker.update(env.world_state()) == []
    assert tracker.recent == []


@pytest.mark.parametrize("kwargs, match", [({"kind": "pixels"}, "allowed: compact, absolute, egocentric"), ({"units": "ft"}, "allowed: m, dm, cm")])
def test_bad_encoder_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EncoderConfig(**kwargs)
