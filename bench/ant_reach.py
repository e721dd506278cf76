"""How far the Ant's legs reach from its torso's centre as it walks (the ``reach`` of its ``SkillScale``).

    MUJOCO_GL=egl python bench/ant_reach.py [--gait DIR] [--episodes 6] [--steps 300] [--seed 0]

Each episode places the ant at the arena's centre and walks it on random commands (a new one every 2 s, a
fifth of them "stop"); every step, the horizontal distance from the torso's centre to both ends of every
leg capsule, plus its radius, is recorded while the torso is more than WALL_CLEAR from every wall (an episode
ends if the ant falls). Prints the largest and the 99.9th and 99th percentiles.
"""

from __future__ import annotations

import argparse

import mujoco
import numpy as np

from flexrl.envs.config import RobotConfig
from flexrl.envs.registration import make_arena

WALL_CLEAR = 1.5
"""Steps with the torso within this many metres of a wall are not measured: a wall could fold a leg in."""


def leg_geoms(model: mujoco.MjModel) -> list[int]:
    """The capsules of the body tree rooted at ``agent`` (the legs; the torso is a sphere)."""
    agent = model.body("agent").id
    out = []
    for g in range(model.ngeom):
        body = int(model.geom_bodyid[g])
        while body not in (0, agent):
            body = int(model.body_parentid[body])
        if body == agent and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE:
            out.append(g)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gait", default=None, help="gait checkpoint directory (default: the shipped one)")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--steps", type=int, default=300, help="control steps per episode (20 per second)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    env = make_arena(RobotConfig(name="ant", gait=args.gait))
    m, d = env.model, env.data
    legs, torso = leg_geoms(m), m.body("agent").id
    rng = np.random.default_rng(args.seed)
    reach: list[float] = []
    for episode in range(args.episodes):
        env.reset(seed=args.seed + episode, options={"agent": np.zeros(2)})
        action = np.zeros(2)
        for t in range(args.steps):
            if t % 40 == 0:
                action = rng.uniform(-1, 1, 2) if rng.random() < 0.8 else np.zeros(2)
            _, _, fell, _, _ = env.step(action)
            if fell:
                break
            centre = d.xpos[torso][:2]
            if np.max(np.abs(centre)) > env.half_size - WALL_CLEAR:  # a leg may be pressed against a wall
                continue
            for g in legs:
                axis = d.geom_xmat[g].reshape(3, 3)[:, 2] * m.geom_size[g][1]
                for end in (d.geom_xpos[g] - axis, d.geom_xpos[g] + axis):
                    reach.append(float(np.linalg.norm(end[:2] - centre) + m.geom_size[g][0]))
    print(f"leg reach from the torso's centre over {args.episodes} x {args.steps} steps: largest {max(reach):.2f} m, "
          f"99.9th percentile {np.percentile(reach, 99.9):.2f} m, 99th {np.percentile(reach, 99):.2f} m")


if __name__ == "__main__":
    main()
