"""Success predicates on hand-made trajectories: each has a case that passes and one that fails."""

from __future__ import annotations

import numpy as np
import pytest

from flexrl.bench import predicates as p
from flexrl.envs.world import BodyState, WorldState

PADS = {"red_pad": np.array([1.0, 1.0]), "blue_pad": np.array([-1.0, -1.0])}


def world(agent, ball=(1.5, -1.5), vel=(0.0, 0.0), touching=False) -> WorldState:
    return WorldState(BodyState(np.array(agent, float), np.array(vel, float)), BodyState(np.array(ball, float), np.zeros(2)),
                      PADS, 2.0, touching_ball=touching)


def path(points, **kw):
    return [world(pt, **kw) for pt in points]


def line(a, b, n=50):
    return [tuple(np.array(a) + (np.array(b) - np.array(a)) * t) for t in np.linspace(0, 1, n)]


def test_reached_requires_arriving_and_staying():
    assert p.reached(path(line((0, 0), (1.0, 1.0))), "red_pad")
    assert not p.reached(path(line((0, 0), (0.5, 0.5))), "red_pad")
    passing_through = path(line((0, 0), (1.0, 1.0)) + line((1.0, 1.0), (-1, 1)))
    assert not p.reached(passing_through, "red_pad") and p.reached(passing_through, "red_pad", stay=False)


def test_reached_in_order():
    red_then_blue = path(line((0, 0), (1, 1)) + line((1, 1), (-1, -1)))
    assert p.reached_in_order(red_then_blue, ["red_pad", "blue_pad"])
    assert not p.reached_in_order(red_then_blue, ["blue_pad", "red_pad"])


def test_moved_along_a_direction_or_to_its_wall():
    assert p.moved(path(line((0, -1), (0, 0))), "north", 0.6)
    assert not p.moved(path(line((0, -1), (0, -0.7))), "north", 0.6)
    assert not p.moved(path(line((0, 0), (1, 0))), "north", 0.6)
    assert p.moved(path(line((0, 1.5), (0, 1.65))), "north", 0.6)  # already at the north wall


def test_kept_away_and_followed():
    far = path([(-1.5, 1.5)] * 100)
    near = path([(1.3, -1.3)] * 100)
    assert p.kept_away(far, "ball") and not p.kept_away(near, "ball")
    assert p.followed(near, "ball") and not p.followed(far, "ball")
    assert not p.kept_away(far[:30], "ball")  # shorter than the grace period: nothing to judge


def test_stopped_stayed_and_never_touched():
    still = path([(0, 0)] * 30)
    moving = path([(0, 0)] * 30, vel=(0.3, 0.0))
    assert p.stopped(still) and not p.stopped(moving)
    assert p.stayed_near_start(still) and not p.stayed_near_start(path(line((0, 0), (1, 0))))
    assert p.never_touched(still) and not p.never_touched(path([(0, 0)] * 5, touching=True))


def test_predicate_parameters_are_introspected():
    assert p.required("reached") == {"target"} and p.required("stopped") == set()
    with pytest.raises(KeyError):
        p.parameters("fly")


def test_refused_needs_cannot_and_nothing_else():
    from flexrl.bench.predicates import Segment, refused

    assert refused(Segment([], ["cannot"]))
    assert refused(Segment([], ["cannot", "cannot"]))
    assert not refused(Segment([], ["stop"]))
    assert not refused(Segment([], ["cannot", "go_to(red_pad)"]))
    assert not refused(Segment([], []))
    assert not refused([])  # a plain trajectory carries no calls
