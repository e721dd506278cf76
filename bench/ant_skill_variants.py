"""One skill on the Ant under other body settings than the shipped ones: what each of them buys.

    MUJOCO_GL=egl python bench/ant_skill_variants.py avoid [--gait DIR] [--reach 1.0] [--wall 1.2] [--min-walk 0.45]
                                                        [--brake 0.8] [--episodes 100] [--seed 50000]

The episodes are `flexrl eval`'s (same seeds, same cases); the settings replace the Ant's ``SkillScale.reach``
(brake before walls, and how near a wall skill targets lie; 0: no wall brake), ``SkillScale.wall`` (the closest a task places it to a wall),
``SkillScale.brake`` (0: no brake at all) and ``Ant.min_walk`` (0: slow commands left as they are) for this
process only. Prints the settings and the result.
"""

from __future__ import annotations

import argparse
import dataclasses

from flexrl.envs.config import RobotConfig
from flexrl.robots.ant import Ant
from flexrl.skills.evaluate import evaluate_skill
from flexrl.skills.library import MOTOR_SKILLS
from flexrl.skills.policies import PolicySet


def main() -> None:
    shipped = Ant.skill_scale
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("skill", choices=MOTOR_SKILLS)
    p.add_argument("--gait", default=None, help="gait checkpoint directory (default: the shipped one)")
    p.add_argument("--reach", type=float, default=shipped.reach)
    p.add_argument("--wall", type=float, default=shipped.wall)
    p.add_argument("--brake", type=float, default=shipped.brake)
    p.add_argument("--min-walk", type=float, default=Ant.min_walk)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=50_000)
    args = p.parse_args()
    Ant.skill_scale = dataclasses.replace(shipped, reach=args.reach, wall=args.wall, brake=args.brake)
    Ant.min_walk = args.min_walk
    robot = RobotConfig(name="ant", gait=args.gait)
    r = evaluate_skill(PolicySet.load(robot=robot), args.skill, episodes=args.episodes, seed=args.seed, robot=robot)
    print(f"{args.skill} on the ant (gait {args.gait or 'shipped'}, reach {args.reach:g}, wall {args.wall:g}, "
          f"brake {args.brake:g}, min_walk {args.min_walk:g}): {r.success_rate:.0%} ({r.successes}/{r.episodes}), "
          f"falls {r.falls}")


if __name__ == "__main__":
    main()
