"""How often the embedded LLM planner chooses what the oracle chooses, on a fixed scenario set.

Scenarios = 16 instructions (with their intents) x N seeded layouts; every decision is also checked
for validity, so the default 16 x 63 = 1,008 decisions count invalid decisions over >= 1,000.
Decision latency (cached prefix, 1 torch thread) is reported as p50/p95.

    HF_HUB_OFFLINE=1 python bench/planner_agreement.py [--layouts 63] [--history] [--calls whole|naming_word|distinguishing] [--encoder compact] [--agent-first] [--backend llama_cpp [--scoring grammar]]
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

from flexrl.encoders import EncoderConfig, encode
from flexrl.encoders.text import ENCODERS
from flexrl.envs import ArenaEnv
from flexrl.envs.world import WorldState
from flexrl.planners.base import Instruction, PlanContext
from flexrl.planners.config import CALL_SCORING, PlannerConfig
from flexrl.planners.oracle import OraclePlanner
from flexrl.skills.library import candidate_calls

SCENARIOS = [
    ("Avoid the ball!", "avoid(ball)"), ("Run away from the ball", "avoid(ball)"), ("Keep away from the ball", "avoid(ball)"),
    ("Stay away from the green pad", "avoid(green_pad)"), ("Go to the ball", "go_to(ball)"), ("Go to the red pad", "go_to(red_pad)"),
    ("Walk to the blue pad", "go_to(blue_pad)"), ("Touch the yellow pad", "go_to(yellow_pad)"), ("Follow the ball", "follow(ball)"),
    ("Chase the ball", "follow(ball)"), ("Go north", "move(north)"), ("Move west", "move(west)"), ("Head east", "move(east)"),
    ("Go south", "move(south)"), ("Stop!", "stop"), ("Freeze", "stop"),
]


def arena_layouts(n: int) -> list[WorldState]:
    """``n`` seeded arena layouts; some have the ball and the agent in motion."""
    env = ArenaEnv(ball_mode="drift")
    worlds = []
    for seed in range(n):
        env.reset(seed=seed)
        for _ in range(seed % 7):
            env.step((0.5, -0.3))
        worlds.append(env.world_state())
    return worlds


def episode_states(seed: int, n: int, steps_between: int = 20) -> list[WorldState]:
    """``n`` states of one seeded episode, ``steps_between`` control steps apart: the pads stay, the agent walks."""
    env = ArenaEnv(ball_mode="drift")
    env.reset(seed=seed)
    states = [env.world_state()]
    heading = np.array([np.cos(seed), np.sin(seed)])
    while len(states) < n:
        for _ in range(steps_between):
            env.step(tuple(heading))
        heading = np.array([-heading[1], heading[0]])  # turn left each leg: the agent stays near the middle
        states.append(env.world_state())
    return states


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layouts", type=int, default=63)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-calibration", action="store_true")
    p.add_argument("--history", action="store_true",
                   help="each instruction replaces an earlier one: the scenario half the list away (another intent)")
    p.add_argument("--calls", default=PlannerConfig().calls, choices=CALL_SCORING, help="how much of each call is scored")
    p.add_argument("--encoder", default=EncoderConfig().kind, choices=list(ENCODERS), help="observation form")
    p.add_argument("--agent-first", action="store_true", help="absolute form in the older order: agent and ball before the pads")
    p.add_argument("--cpu-weights", default="float16", choices=["float16", "float32"])
    p.add_argument("--backend", default="transformers", choices=["transformers", "llama_cpp"])
    p.add_argument("--scoring", default="logprobs", choices=["logprobs", "grammar"], help="llama_cpp only")
    a = p.parse_args()

    from flexrl.llm.transformers_backend import TransformersBackend
    from flexrl.planners.llm_planner import LLMPlanner

    if a.backend == "llama_cpp":
        from flexrl.llm.llama_cpp_backend import LlamaCppBackend

        backend = LlamaCppBackend(threads=a.threads, scoring=a.scoring)
    else:
        backend = TransformersBackend(threads=a.threads, cpu_weights=a.cpu_weights)
    planner = LLMPlanner(backend, PlannerConfig(calibrate=not a.no_calibration, calls=a.calls, history=1 if a.history else 0))
    oracle = OraclePlanner()
    encoder = EncoderConfig(kind=a.encoder, fixed_first=not a.agent_first)
    worlds = arena_layouts(a.layouts)

    agree, invalid, lat = collections.Counter(), 0, []
    per_skill = collections.defaultdict(lambda: [0, 0])
    chosen = collections.Counter()
    start = time.perf_counter()
    for k, (text, intent) in enumerate(SCENARIOS):
        earlier = (Instruction(*SCENARIOS[(k + len(SCENARIOS) // 2) % len(SCENARIOS)]),) if a.history else ()
        for w in worlds:
            ctx = PlanContext(w, encode(w, encoder), (*earlier, Instruction(text, intent)), tuple(candidate_calls(w)))
            d = planner.decide(ctx)
            invalid += d.call not in ctx.candidates
            lat.append(d.latency_ms)
            ok = d.call == oracle.decide(ctx).call
            agree[ok] += 1
            per_skill[intent.split("(")[0]][0] += ok
            per_skill[intent.split("(")[0]][1] += 1
            chosen[d.call.name] += 1
    n = sum(agree.values())
    lat = np.array(lat)
    print(f"embedded planner ({backend.name}, {a.backend} {getattr(backend, 'weights', a.scoring)}, encoder {a.encoder!r}{' agent first' if a.agent_first else ''}, "
          f"calls {a.calls}, calibration {'off' if a.no_calibration else 'on'}, "
          f"{'an earlier instruction' if a.history else 'no history'}, {a.threads} thread(s)) vs oracle")
    print(f"  decisions: {n}, invalid: {invalid}, wall {time.perf_counter() - start:.0f} s")
    print(f"  agreement with the oracle: {agree[True] / n:.1%}  (chance ~{1 / len(ctx.candidates):.1%}: 1 of {len(ctx.candidates)} calls)")
    for skill, (k, m) in per_skill.items():
        print(f"    intent {skill:7s} {k / m:6.1%} ({k}/{m})")
    print(f"  chosen skill names: {dict(chosen)}")
    print(f"  latency p50 {np.percentile(lat, 50):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms (first decision per instruction fills the prefix cache)")


if __name__ == "__main__":
    main()
