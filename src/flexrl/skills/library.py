"""Skill specifications: name, description, arguments, policy family, goal builder, ending and outcome.

A skill call such as ``go_to(red_pad)`` starts an :class:`ActiveSkill` that turns each world state into
the input of its policy family and says when the skill has ended (success or timeout), and in words what
came of it (:meth:`ActiveSkill.outcome`: "reached", "lost the ball"): the runner feeds that back to the
planner. Success criteria are stated here, once, and quoted in docs/skills.md.

Besides the motor skills, two *verdict* calls join every candidate set: ``done`` (the instruction is
complete) and ``cannot`` (no skill call can follow it). Both hold the agent where it is until the next
instruction; ``flexrl eval`` measures motor skills only (:data:`MOTOR_SKILLS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from flexrl.envs.world import COMPASS, WorldState
from flexrl.skills.goals import avoid_obs, reach_obs

# The orb's criteria; a robot's are these times its ``skill_scale`` (``WorldState.scale``): lengths times
# ``length``, time budgets times ``time``.
REACH_RADIUS = 0.2
"""go_to/move succeed when the agent centre is this close to the goal point (pads are 0.25 m wide)."""
TOUCH_MARGIN = 0.08
"""go_to(ball) succeeds when the bodies are within this gap of touching."""
FOLLOW_RADIUS = 0.5
"""follow succeeds when the agent stays this close to the object; for the ball, at least as far beyond
touching it as the orb's 0.5 m is beyond its 0.24 m touch distance (:func:`follow_radius`)."""
ORB_TOUCH = 0.24
SAFE_DISTANCE = 0.8
"""avoid succeeds when the agent stays at least this far from the object over the skill's final steps."""
MOVE_DISTANCE = 1.0
WALL_MARGIN = 0.25


class Status(str, Enum):
    """Where a running skill stands."""

    RUNNING = "running"
    SUCCESS = "success"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class SkillCall:
    """A skill name with its arguments, e.g. ``SkillCall("go_to", ("red_pad",))``."""

    name: str
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.name}({', '.join(self.args)})" if self.args else self.name

    @classmethod
    def parse(cls, text: str) -> "SkillCall":
        """Parse ``name(arg, ...)`` or a bare ``name``; validation against the library is separate."""
        m = re.fullmatch(r"\s*([a-z_]+)\s*(?:\((.*)\))?\s*", text)
        if not m:
            raise ValueError(f"skill call {text!r} is not of the form name(arg, ...)")
        raw = (m.group(2) or "").strip()
        if raw.startswith("("):  # a coordinate argument: go_to((1.0, -0.5))
            return cls(m.group(1), (raw,))
        return cls(m.group(1), tuple(a.strip() for a in raw.split(",") if a.strip()))


def follow_radius(world: WorldState, target: str) -> float:
    """The radius ``follow(target)`` is judged at, for this world's robot."""
    length = world.scale.length
    if target != "ball":
        return FOLLOW_RADIUS * length
    return max(FOLLOW_RADIUS * length, world.touch_distance + (FOLLOW_RADIUS - ORB_TOUCH) * length)


def brakes_before_walls(world: WorldState) -> bool:
    """Whether the body brakes before walls (:func:`brake_before_walls`): it brakes, and its limbs reach out."""
    return world.scale.brake > 0 and world.scale.reach > 0


def target_limit(world: WorldState) -> float:
    """The farthest from the arena's centre, along each axis, that a skill's target point may lie:
    :data:`WALL_MARGIN` from the walls, or farther on a body that brakes before walls (its ``reach`` plus
    :data:`BRAKE_MARGIN`), which could never get there (:func:`brake_before_walls`)."""
    margin = WALL_MARGIN * world.scale.length
    if brakes_before_walls(world):
        margin = max(margin, world.scale.reach + BRAKE_MARGIN * world.scale.length)
    return world.half_size - margin


def _clip_to_arena(p: np.ndarray, world: WorldState) -> np.ndarray:
    lim = target_limit(world)
    return np.clip(p, -lim, lim)


def parse_target(arg: str, world: WorldState) -> str | np.ndarray:
    """An object name known to ``world`` or a coordinate ``(x, y)`` in metres inside the arena (0.1 m from its
    walls; on a body that brakes before walls, within :func:`target_limit`, the farthest it can get)."""
    if arg in world.object_names:
        return arg
    m = re.fullmatch(r"\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)", arg)
    if m:
        p = np.array([float(m.group(1)), float(m.group(2))])
        lim, where = world.half_size - 0.1, "the arena"
        if brakes_before_walls(world) and target_limit(world) < lim:
            lim, where = target_limit(world), "what this body can reach"
        if np.all(np.isfinite(p)) and np.all(np.abs(p) <= lim):
            return p
        raise ValueError(f"target {arg!r} is outside {where}; x and y must be in [-{lim:g}, {lim:g}] m")
    raise ValueError(f"unknown target {arg!r}; allowed: {', '.join(world.object_names)} or a point (x, y)")


BRAKE_MARGIN = 0.06
"""A braking body also brakes within this many metres (times its ``length`` scale) of touching the ball."""


def brake_before_ball(world: WorldState, action: np.ndarray) -> np.ndarray:
    """``action`` without its part towards the ball when body and ball, closing at their relative speed, would
    touch within ``world.scale.brake`` seconds or are within :data:`BRAKE_MARGIN` of touching; else as it is.

    The learned policies steer the Ant's gait like the orb, which may push the ball; the Ant walking into the
    ball is lifted over by it (docs/robots.md), so its skills brake the way a driver does before an obstacle.
    """
    offset = world.agent.pos - world.ball.pos
    distance = float(np.linalg.norm(offset))
    away = offset / distance if distance > 1e-6 else np.array([1.0, 0.0])
    closing = max(0.0, -float((world.agent.vel - world.ball.vel) @ away))
    gap = distance - world.touch_distance
    if gap > closing * world.scale.brake + BRAKE_MARGIN * world.scale.length:
        return action
    a = np.asarray(action, dtype=float)
    return a - min(0.0, float(a @ away)) * away


def brake_before_walls(world: WorldState, action: np.ndarray) -> np.ndarray:
    """``action`` without its part towards each wall that the body's limbs (``world.scale.reach`` from its
    centre) would reach within ``world.scale.brake`` seconds at its speed towards it, or are within
    :data:`BRAKE_MARGIN` of reaching; else as it is. Along a wall, and away from it, the action is kept."""
    if not brakes_before_walls(world):
        return action
    a = np.array(action, dtype=float)
    pos, vel = world.agent.pos, world.agent.vel
    for axis in range(2):
        for side in (-1.0, 1.0):
            gap = world.half_size - side * float(pos[axis]) - world.scale.reach
            closing = max(0.0, side * float(vel[axis]))
            if gap <= closing * world.scale.brake + BRAKE_MARGIN * world.scale.length and side * a[axis] > 0:
                a[axis] = 0.0
    return a


@dataclass
class ActiveSkill:
    """A running skill: the goal it tracks, its policy family and its ending rule."""

    call: SkillCall
    policy: str
    timeout: int
    steps: int = 0
    history: list[float] = field(default_factory=list)

    def goal(self, world: WorldState) -> tuple[np.ndarray, np.ndarray]:
        """Goal (or threat) position and velocity for this step."""
        raise NotImplementedError

    def policy_input(self, world: WorldState) -> np.ndarray:
        """The observation of this skill's policy family."""
        pos, vel = self.goal(world)
        return avoid_obs(world, pos, vel) if self.policy == "avoid" else reach_obs(world, pos, vel)

    def shield(self, world: WorldState, action: np.ndarray) -> np.ndarray:
        """The action the body is given for its policy's ``action``: on a body that brakes, braked before the
        walls (:func:`brake_before_walls`) and before the ball (:func:`brake_before_ball`) unless the skill's
        goal is to touch it."""
        if not world.scale.brake:
            return action
        return brake_before_walls(world, action if self.seeks_ball else brake_before_ball(world, action))

    @property
    def seeks_ball(self) -> bool:
        """Whether the skill's goal is to touch the ball."""
        return False

    def update(self, world: WorldState) -> Status:
        """Record one step taken and say whether the skill has ended."""
        self.steps += 1
        if self._succeeded(world):
            return Status.SUCCESS
        if self.steps >= self.timeout:
            return Status.SUCCESS if self.holds_at_end() else Status.TIMEOUT
        return Status.RUNNING

    def _succeeded(self, world: WorldState) -> bool:
        return False

    def holds_at_end(self) -> bool:
        """Whether a skill that runs for a duration (follow, avoid) met its criterion over its run so far."""
        return False

    def outcome(self, status: Status) -> str:
        """What came of the skill, in a few words, for a skill that ended with ``status``."""
        return OUTCOMES.get((self.call.name, status), status.value)

    def criterion(self, world: WorldState) -> tuple[str, str]:
        """The skill's success criterion and where it stands now, in words (for live displays)."""
        return "none: holds until the next instruction", f"{self.steps} steps"

    def _distance(self, world: WorldState, point: np.ndarray) -> float:
        return float(np.linalg.norm(world.agent.pos - point))


@dataclass
class ReachPointSkill(ActiveSkill):
    """Reach a fixed point: ``move`` (1 m along a compass direction) and ``go_to`` a pad or point."""

    point: np.ndarray = field(default_factory=lambda: np.zeros(2))
    radius: float = REACH_RADIUS

    def goal(self, world):
        return self.point, np.zeros(2)

    def _succeeded(self, world):
        return float(np.linalg.norm(world.agent.pos - self.point)) <= self.radius

    def criterion(self, world):
        x, y = self.point
        return f"within {self.radius:.2f} m of ({x:.2f}, {y:.2f})", f"{self._distance(world, self.point):.2f} m away"


@dataclass
class ReachObjectSkill(ActiveSkill):
    """``go_to`` a possibly moving object: succeeds on touching it (or reaching a pad's centre)."""

    target: str = "ball"
    radius: float = REACH_RADIUS

    def goal(self, world):
        return world.position_of(self.target), world.velocity_of(self.target)

    @property
    def seeks_ball(self) -> bool:
        return self.target == "ball"

    def _succeeded(self, world):
        return float(np.linalg.norm(world.agent.pos - world.position_of(self.target))) <= self.radius

    def criterion(self, world):
        away = self._distance(world, world.position_of(self.target))
        return f"within {self.radius:.2f} m of the {self.target}", f"{away:.2f} m away"


@dataclass
class FollowSkill(ActiveSkill):
    """``follow`` an object for ``timeout`` steps; succeeds if within FOLLOW_RADIUS for 80% of the second half."""

    target: str = "ball"
    radius: float = FOLLOW_RADIUS

    def goal(self, world):
        pos, vel = world.position_of(self.target), world.velocity_of(self.target)
        standoff = world.scale.standoff
        if standoff > 0:  # aim at the point ``standoff`` short of the object, on the line from the agent
            away = world.agent.pos - pos
            pos = pos + standoff * away / max(float(np.linalg.norm(away)), 1e-6)
        return pos, vel

    def update(self, world):
        self.history.append(float(np.linalg.norm(world.agent.pos - world.position_of(self.target))))
        return super().update(world)

    def holds_at_end(self):
        late = np.array(self.history[len(self.history) // 2 :])
        return bool(late.size and np.mean(late <= self.radius) >= 0.8)

    def criterion(self, world):
        late = np.array(self.history[len(self.history) // 2 :])
        share = f", {np.mean(late <= self.radius):.0%} of the second half so far" if late.size else ""
        away = self._distance(world, world.position_of(self.target))
        return (f"within {self.radius:.2f} m of the {self.target} for 80% of the second half of {self.timeout} steps",
                f"{away:.2f} m away{share}, step {self.steps}/{self.timeout}")


@dataclass
class AvoidSkill(ActiveSkill):
    """``avoid`` an object for ``timeout`` steps; succeeds if at least SAFE_DISTANCE away over the last 25 steps."""

    target: str = "ball"
    safe: float = SAFE_DISTANCE

    def goal(self, world):
        return world.position_of(self.target), world.velocity_of(self.target)

    def update(self, world):
        self.history.append(float(np.linalg.norm(world.agent.pos - world.position_of(self.target))))
        return super().update(world)

    def holds_at_end(self):
        return bool(len(self.history) >= 25 and min(self.history[-25:]) >= self.safe)

    def criterion(self, world):
        away = self._distance(world, world.position_of(self.target))
        return (f"at least {self.safe:.2f} m from the {self.target} over the last 25 of {self.timeout} steps",
                f"{away:.2f} m away, step {self.steps}/{self.timeout}")


@dataclass
class StopSkill(ActiveSkill):
    """``stop``: hold the position where the skill started; succeeds once nearly still there."""

    anchor: np.ndarray = field(default_factory=lambda: np.zeros(2))
    still: float = 0.05
    room: float = 0.4

    def goal(self, world):
        return self.anchor, np.zeros(2)

    def _succeeded(self, world):
        return world.agent.speed < self.still and float(np.linalg.norm(world.agent.pos - self.anchor)) < self.room

    def criterion(self, world):
        return (f"slower than {self.still:.2f} m/s within {self.room:.2f} m of where it stopped",
                f"{world.agent.speed:.2f} m/s")


@dataclass
class HoldSkill(StopSkill):
    """``done`` and ``cannot``: hold the position where the call was made until the next instruction."""

    def _succeeded(self, world):
        return False

    def criterion(self, world):
        return ActiveSkill.criterion(self, world)


OUTCOMES: dict[tuple[str, Status], str] = {
    ("move", Status.SUCCESS): "moved",
    ("move", Status.TIMEOUT): "did not get there",
    ("go_to", Status.SUCCESS): "reached",
    ("go_to", Status.TIMEOUT): "did not reach it",
    ("follow", Status.SUCCESS): "kept close",
    ("follow", Status.TIMEOUT): "lost the ball",
    ("avoid", Status.SUCCESS): "kept away",
    ("avoid", Status.TIMEOUT): "got too close",
    ("stop", Status.SUCCESS): "stopped",
    ("stop", Status.TIMEOUT): "still moving",
}
"""The words the runner reports when a skill ends (``ActiveSkill.outcome``)."""

STAND = "stand"
"""Not a learned family: no push at all (``stop`` and the verdicts on a body that stands by itself);
:class:`~flexrl.skills.policies.PolicySet` answers it with zero actions."""

VERDICTS = ("done", "cannot")
"""Calls that judge the instruction instead of moving: hold position until the next instruction."""


@dataclass(frozen=True)
class SkillSpec:
    """What the planner sees of a skill, and how a call of it starts.

    Attributes:
        name: the call name.
        description: one line, shown to the LLM.
        params: argument names; each is ``direction``, ``object`` or ``target`` (object or point).
        policy: the policy family that executes it.
        timeout: control steps before the skill ends regardless.
    """

    name: str
    description: str
    params: tuple[str, ...]
    policy: str
    timeout: int

    def allowed_args(self, world: WorldState) -> list[tuple[str, ...]]:
        """Every argument tuple the planner may choose (coordinates are for programmatic use)."""
        if not self.params:
            return [()]
        kind = self.params[0]
        if kind == "direction":
            return [(d,) for d in COMPASS]
        return [(o,) for o in world.object_names]

    def start(self, call: SkillCall, world: WorldState) -> ActiveSkill:
        """Validate ``call`` against this spec and the world, and start it.

        Raises:
            ValueError: one line naming the bad argument and the allowed values.
        """
        if len(call.args) != len(self.params):
            want = f"{self.name}({', '.join(self.params)})"
            raise ValueError(f"{call} takes {len(self.params)} argument(s): {want}")
        scale = world.scale
        length = scale.length
        timeout = self.timeout if self.timeout >= 10**6 else round(self.timeout * scale.time)
        common = dict(call=call, policy=self.policy, timeout=timeout)
        if self.name == "move":
            (direction,) = call.args
            if direction not in COMPASS:
                raise ValueError(f"unknown direction {direction!r}; allowed: {', '.join(COMPASS)}")
            point = _clip_to_arena(world.agent.pos + MOVE_DISTANCE * length * np.array(COMPASS[direction]), world)
            return ReachPointSkill(**common, point=point, radius=REACH_RADIUS * length)
        if self.name == "go_to":
            target = parse_target(call.args[0], world)
            if isinstance(target, np.ndarray):
                return ReachPointSkill(**common, point=target, radius=REACH_RADIUS * length)
            if target == "ball":
                return ReachObjectSkill(**common, target=target, radius=world.touch_distance + TOUCH_MARGIN * length)
            return ReachObjectSkill(**common, target=target, radius=REACH_RADIUS * length)
        if self.name == "follow":
            target = self._object(call, world)
            return FollowSkill(**common, target=target, radius=follow_radius(world, target))
        if self.name == "avoid":
            return AvoidSkill(**common, target=self._object(call, world), safe=SAFE_DISTANCE * length)
        still = dict(anchor=world.agent.pos.copy(), still=scale.still, room=0.4 * length)
        if scale.stands:
            common["policy"] = STAND  # the body's own stand, no push
        if self.name == "stop":
            return StopSkill(**common, **still)
        if self.name in VERDICTS:
            return HoldSkill(**common, **still)
        raise ValueError(f"no goal builder for skill {self.name!r}")

    @staticmethod
    def _object(call: SkillCall, world: WorldState) -> str:
        (obj,) = call.args
        if obj not in world.object_names:
            raise ValueError(f"unknown object {obj!r}; allowed: {', '.join(world.object_names)}")
        return obj


SKILLS: dict[str, SkillSpec] = {
    s.name: s
    for s in [
        SkillSpec("move", "walk about one metre in a compass direction", ("direction",), "reach", 60),
        SkillSpec("go_to", "walk to an object and touch it", ("target",), "reach", 100),
        SkillSpec("follow", "stay close to a moving object", ("object",), "reach", 100),
        SkillSpec("avoid", "run away from an object and keep away from it", ("object",), "avoid", 100),
        SkillSpec("stop", "stand still", (), "reach", 40),
        SkillSpec("done", "the instruction is complete: stay where you are", (), "reach", 10**6),
        SkillSpec("cannot", "no skill can follow the instruction (e.g. it names something not here)", (), "reach", 10**6),
    ]
}
MOTOR_SKILLS: dict[str, SkillSpec] = {name: spec for name, spec in SKILLS.items() if name not in VERDICTS}
"""The skills that move the agent with a policy and a success criterion (what ``flexrl eval`` measures)."""


def start_skill(call: SkillCall, world: WorldState) -> ActiveSkill:
    """Start any library skill; unknown names get a one-line error listing the skills."""
    spec = SKILLS.get(call.name)
    if spec is None:
        raise ValueError(f"unknown skill {call.name!r}; allowed: {', '.join(SKILLS)}")
    return spec.start(call, world)


def candidate_calls(world: WorldState) -> list[SkillCall]:
    """Every valid skill call in ``world``: the planner chooses among exactly these."""
    return [SkillCall(s.name, args) for s in SKILLS.values() for args in s.allowed_args(world)]
