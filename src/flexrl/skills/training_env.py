"""Skill training envs: the arena plus a sampled skill call whose goal is part of the observation.

Each episode samples a call of the policy family's skills (e.g. ``go_to(blue_pad)``, ``move(west)``,
``stop``), starts it with the same goal builder the agent uses at run time, and exposes that skill's
policy input as the observation. One policy so learns the whole family. Reward terms go into
``info["reward_terms"]`` and sum to the reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.registration import make_arena
from flexrl.envs.world import WorldState
from flexrl.skills.cases import FAMILY_MIX, sample_case
from flexrl.skills.goals import POLICY_OBS_DIMS
from flexrl.skills.library import SAFE_DISTANCE, ActiveSkill, SkillCall, Status, start_skill


@dataclass(frozen=True)
class ReachRewardWeights:
    """Weights of the reach family's reward terms.

    Attributes:
        progress: per metre of distance to the goal closed this step.
        at_goal: per step spent within 0.2 m of the goal (times the robot's ``SkillScale.length``, as every
            distance here).
        settle: per m/s of velocity mismatch with the goal while within 0.4 m of it.
        ctrl: per unit of squared action.
    """

    progress: float = 2.0
    at_goal: float = 0.1
    settle: float = 0.1
    ctrl: float = 0.01


@dataclass(frozen=True)
class AvoidRewardWeights:
    """Weights of the avoid family's reward terms.

    Attributes:
        distance: per step, times the distance to the threat over the safe distance (capped at 1.25).
        safe: per step at least the safe distance away (what the success criterion asks for).
        contact: per step touching the ball.
        wall: per step within 0.15 m of a wall (pinned agents get caught).
        ctrl: per unit of squared action.
    """

    distance: float = 0.1
    safe: float = 0.1
    contact: float = 1.0
    wall: float = 0.05
    ctrl: float = 0.01


FALL_PENALTY = 10.0
"""Reward when the robot falls (which ends the episode)."""


class SkillTrainingEnv(gym.Wrapper):
    """Base class: wraps :class:`ArenaEnv`, samples a skill call per episode, rewards its family's terms."""

    family = ""

    def __init__(self, env: ArenaEnv | None = None, **arena_kwargs: Any) -> None:
        super().__init__(env or make_arena(ball_mode="random", **arena_kwargs))
        dim = POLICY_OBS_DIMS[self.family]
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(dim,), dtype=np.float32)
        self.action_space = self.env.action_space
        self.active: ActiveSkill | None = None
        self._outcome = Status.RUNNING
        self._prev: WorldState | None = None

    def _sample(self, rng: np.random.Generator, world: WorldState) -> tuple[SkillCall, dict[str, Any]]:
        mix = FAMILY_MIX[self.family]
        skill = str(rng.choice(list(mix), p=list(mix.values())))
        return sample_case(skill, rng, world)

    def _reward_terms(self, prev: WorldState, world: WorldState, action: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset the arena, sample a skill call and return its policy input."""
        arena: ArenaEnv = self.env.unwrapped
        self.env.reset(seed=seed)
        first = arena.world_state()
        call, case_options = self._sample(arena.np_random, first)
        # Reset again with the sampled layout pinned, so the case's options refer to the same world.
        pinned = {"agent": first.agent.pos, "ball": first.ball.pos, **first.pads}
        self.env.reset(options={**pinned, **case_options, **(options or {})})
        world = arena.world_state()
        self.active = start_skill(call, world)
        self._outcome = Status.RUNNING
        self._prev = world
        return self.active.policy_input(world), {"skill": str(call)}

    def step(self, action):
        """Step the arena; reward = sum of the family's terms; ``is_success`` reports the skill's outcome."""
        _, _, terminated, truncated, info = self.env.step(action)
        world = self.env.unwrapped.world_state()
        terms = self._reward_terms(self._prev, world, np.asarray(action, dtype=float))
        if info.get("fell"):  # a legged body that falls ends its episode: that must never pay
            terms["fall"] = -FALL_PENALTY
        self._prev = world
        if self._outcome is Status.RUNNING:
            self._outcome = self.active.update(world)
        info = {**info, "reward_terms": terms, "skill": str(self.active.call), "is_success": self._outcome is Status.SUCCESS}
        return self.active.policy_input(world), float(sum(terms.values())), terminated, truncated, info


class GoToTrainingEnv(SkillTrainingEnv):
    """The reach family: ``go_to`` (pads, points, the moving ball), ``move``, ``follow`` and ``stop``."""

    family = "reach"

    def __init__(self, weights: ReachRewardWeights = ReachRewardWeights(), **arena_kwargs: Any) -> None:
        super().__init__(**arena_kwargs)
        self.weights = weights


    def _reward_terms(self, prev, world, action):
        w = self.weights
        goal_prev, _ = self.active.goal(prev)
        goal, goal_vel = self.active.goal(world)
        d_prev = float(np.linalg.norm(goal_prev - prev.agent.pos))
        d = float(np.linalg.norm(goal - world.agent.pos))
        mismatch = float(np.linalg.norm(world.agent.vel - goal_vel))
        length = world.scale.length
        return {
            "progress": w.progress * (d_prev - d) / length,
            "at_goal": w.at_goal * float(d <= 0.2 * length),
            "settle": -w.settle * mismatch * float(d <= 0.4 * length),
            "ctrl": -w.ctrl * float(np.sum(np.square(action))),
        }


class AvoidTrainingEnv(SkillTrainingEnv):
    """The avoid family: keep away from the ball (still, drifting or chasing) or from a pad."""

    family = "avoid"

    def __init__(self, weights: AvoidRewardWeights = AvoidRewardWeights(), **arena_kwargs: Any) -> None:
        super().__init__(**arena_kwargs)
        self.weights = weights


    def _reward_terms(self, prev, world, action):
        w = self.weights
        threat, _ = self.active.goal(world)
        d = float(np.linalg.norm(world.agent.pos - threat))
        length = world.scale.length
        near_wall = bool(np.any(np.abs(world.agent.pos) > world.half_size - 0.25 * length))
        return {
            "distance": w.distance * min(d / (SAFE_DISTANCE * length), 1.25),
            "safe": w.safe * float(d >= SAFE_DISTANCE * length),
            "contact": -w.contact * float(world.touching_ball and self.active.call.args[0] == "ball"),
            "wall": -w.wall * float(near_wall),
            "ctrl": -w.ctrl * float(np.sum(np.square(action))),
        }
