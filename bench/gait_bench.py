"""The Ant's gait against its bars (issue 15): mean speed along the command >= 0.5 m/s in each of 8 headings,
sideways drift <= 0.2 m/s, a stopped body within 0.2 m, no falls, over seeded episodes of the exported gait
(the numpy policy the arena runs, not the training model).

    python bench/gait_bench.py [--gait DIR] [--episodes 108] [--steps 200] [--seed 50000] [--ball-every 40]
                               [--speed 1.0]

``--speed S`` commands the walking bodies at S m/s (default 1, the top speed, where the bars apply): how well
the gait tracks the slower commands a navigation policy gives when it approaches or creeps.

``--ball-every N`` also rolls the arena's ball at each body every N steps, or leaves it on its path (the
way a chasing or followed ball meets the legs in the arena; ``GaitTask.ball_every``): falls under ball contact.
"""

from __future__ import annotations

import argparse

from flexrl.robots.gait import GaitPolicy
from flexrl.robots.gait_training import DRIFT_BAR, HEADINGS, STOP_BAR, WALK_BAR, evaluate_gait

NAMES = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gait", default=None, help="gait checkpoint directory (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=108, help="bodies: 8 headings and stop, evenly")
    p.add_argument("--steps", type=int, default=200, help="control steps per episode (20 per second)")
    p.add_argument("--seed", type=int, default=50_000)
    p.add_argument("--ball-every", type=int, default=0, help="steps between balls per body (0: none)")
    p.add_argument("--speed", type=float, default=1.0, help="commanded speed of the walking bodies (m/s)")
    args = p.parse_args()
    if not 0 < args.speed <= 1.0:
        p.error(f"--speed {args.speed}: allowed: a speed in (0, 1] m/s (the Ant's top speed)")
    gait = GaitPolicy.load(args.gait)
    r = evaluate_gait(gait.act, episodes=args.episodes, steps=args.steps, seed=args.seed, ball_every=args.ball_every,
                      speed=args.speed)
    balls = f", a ball every {args.ball_every} steps" if args.ball_every else ""
    print(f"gait {args.gait or 'shipped'}: {r.episodes} episodes of {args.steps} steps, seed {args.seed}, "
          f"commanded {args.speed:g} m/s{balls}")
    print("| heading | along (m/s) | drift (m/s) |\n|---|---|---|")
    for name, a, d in zip(NAMES, r.along, r.drift):
        print(f"| {name} | {a:.2f} | {d:.2f} |")
    print(f"stop: largest travel {r.stop_travel:.3f} m (bar <= {STOP_BAR}); falls {r.falls}/{r.episodes}; "
          f"bodies told to walk that stalled (< 0.2 m/s along): {r.stalled}")
    print(f"mean speed along the command: {sum(r.along) / len(r.along):.2f} m/s of {args.speed:g} commanded")
    if args.speed != 1.0:
        return  # the bars are set at the top speed
    met = all(a >= WALK_BAR and d <= DRIFT_BAR for a, d in zip(r.along, r.drift)) and r.stop_travel <= STOP_BAR and not r.falls
    print(f"bars (>= {WALK_BAR} m/s along each of {HEADINGS} headings, <= {DRIFT_BAR} m/s drift, stop <= {STOP_BAR} m, "
          f"no falls): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
