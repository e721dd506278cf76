"""Success rates of skills, measured the way the agent runs them.

Episodes run in lockstep so each control step is one batched policy call. An episode starts a skill
call from :mod:`flexrl.skills.cases` and ends when the skill reports success or timeout, or when the
episode ends early (a legged robot fell, or the simulation went unstable): a failure, counted as a fall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexrl.envs.arena_env import ArenaEnv
from flexrl.envs.registration import make_arena
from flexrl.skills.cases import sample_case
from flexrl.skills.library import MOTOR_SKILLS as SKILLS, ActiveSkill, Status, start_skill
from flexrl.skills.policies import PolicySet


@dataclass(frozen=True)
class SkillEvalResult:
    """Outcome of evaluating one skill."""

    skill: str
    episodes: int
    successes: int
    mean_steps: float
    falls: int = 0

    @property
    def success_rate(self) -> float:
        """Fraction of successful episodes."""
        return self.successes / self.episodes


def start_episode(env: ArenaEnv, skill: str, seed: int) -> ActiveSkill:
    """Reset ``env`` to the case of ``skill`` that ``seed`` draws and start the skill call in it."""
    env.reset(seed=seed)
    first = env.world_state()
    call, options = sample_case(skill, env.np_random, first)
    env.reset(options={"agent": first.agent.pos, "ball": first.ball.pos, **first.pads, **options})
    return start_skill(call, env.world_state())


def evaluate_skill(policies: PolicySet, skill: str, episodes: int = 100, seed: int = 10_000, robot=None) -> SkillEvalResult:
    """Run ``episodes`` seeded episodes of ``skill`` (seeds ``seed .. seed+episodes-1``) with ``robot``
    (a robot, its config or name; None: the orb)."""
    if skill not in SKILLS:
        raise ValueError(f"unknown skill {skill!r}; allowed: {', '.join(SKILLS)}")
    envs = [make_arena(robot) for _ in range(episodes)]
    envs[0].robot.check()
    active = [start_episode(env, skill, seed + i) for i, env in enumerate(envs)]
    status = [Status.RUNNING] * episodes
    steps = [0] * episodes
    falls = 0
    while True:
        live = [i for i, s in enumerate(status) if s is Status.RUNNING]
        if not live:
            break
        actions = {}
        for family in {active[i].policy for i in live}:  # the skill's family, or the robot's own stand
            group = [i for i in live if active[i].policy == family]
            obs = np.stack([active[i].policy_input(envs[i].world_state()) for i in group])
            actions.update(zip(group, policies.act(family, obs)))
        for i in live:
            _, _, terminated, _, _ = envs[i].step(active[i].shield(envs[i].world_state(), actions[i]))
            status[i] = active[i].update(envs[i].world_state())
            steps[i] += 1
            if terminated:
                status[i] = Status.TIMEOUT
                falls += 1
    for env in envs:
        env.close()
    successes = sum(s is Status.SUCCESS for s in status)
    return SkillEvalResult(skill, episodes, successes, float(np.mean(steps)), falls)


def evaluate_family(policies: PolicySet, family: str, episodes: int, seed: int = 10_000,
                    robot=None) -> dict[str, SkillEvalResult]:
    """Evaluate every skill served by ``family`` with ``robot``."""
    return {name: evaluate_skill(policies, name, episodes, seed, robot) for name, spec in SKILLS.items() if spec.policy == family}
