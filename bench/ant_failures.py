"""Why the ant's skills fail: run seeded episodes of one skill and print, for each failure, how it ended,
the ball's mode, the closest the ball came to the torso, and the last steps' distance and speeds.

    MUJOCO_GL=egl python bench/ant_failures.py follow --episodes 40 [--no-brake] [--ghost-ball]

Seeds are ``--seed`` (50000, as `flexrl eval`) onwards, with the cases `flexrl eval` draws. ``--no-brake``
gives the body the policy's action as it is (no ``ActiveSkill.shield``); ``--ghost-ball`` changes the ball's
contact bits so it cannot touch the ant (floor and walls still hold it): whether falls come from contact.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from flexrl.envs.config import RobotConfig
from flexrl.envs.registration import make_arena
from flexrl.skills.evaluate import start_episode
from flexrl.skills.library import MOTOR_SKILLS, Status
from flexrl.skills.policies import PolicySet


def ghost_ball(env) -> None:
    """Let the ball touch only the floor and the walls."""
    m = env.model
    ball = m.geom("ball").id
    m.geom_contype[ball] = m.geom_conaffinity[ball] = 2
    for name in ("floor", "wall_north", "wall_south", "wall_east", "wall_west"):
        m.geom_conaffinity[m.geom(name).id] = 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("skill", choices=MOTOR_SKILLS)
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--seed", type=int, default=50_000)
    p.add_argument("--gait", default=None, help="gait checkpoint directory (default: the shipped one)")
    p.add_argument("--no-brake", action="store_true")
    p.add_argument("--ghost-ball", action="store_true")
    args = p.parse_args()
    robot = RobotConfig(name="ant", gait=args.gait)
    policies = PolicySet.load(robot=robot)
    tally: Counter = Counter()
    for i in range(args.episodes):
        env = make_arena(robot)
        if args.ghost_ball:
            ghost_ball(env)
        skill = start_episode(env, args.skill, args.seed + i)
        mode, status, closest, last = env.episode_ball_mode, Status.RUNNING, np.inf, []
        while status is Status.RUNNING:
            world = env.world_state()
            action = policies.act(skill.policy, skill.policy_input(world)[None])[0]
            _, _, fell, _, _ = env.step(action if args.no_brake else skill.shield(world, action))
            world = env.world_state()
            d = float(np.linalg.norm(world.agent.pos - world.ball.pos))
            closest = min(closest, d)
            last = (last + [(d, float(np.linalg.norm(world.agent.vel)), float(np.linalg.norm(world.ball.vel)))])[-10:]
            status = "fell" if fell else skill.update(world)
        end = status if status == "fell" else status.name.lower()
        tally[(mode, end)] += 1
        if end != "success":
            trail = ", ".join(f"{d:.2f}/{va:.2f}/{vb:.2f}" for d, va, vb in last[::3])
            print(f"seed {args.seed + i}: {mode} ball, {end} after {skill.steps} steps, ball at least {closest:.2f} m "
                  f"from the torso; last distance/ant speed/ball speed: {trail}")
        env.close()
    ok = sum(n for (_, end), n in tally.items() if end == "success")
    print(f"{args.skill}: {ok}/{args.episodes} succeeded; by ball mode and ending: {dict(sorted(tally.items()))}")


if __name__ == "__main__":
    main()
