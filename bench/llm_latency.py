"""Latency of LLM skill selection with the embedded model on CPU.

Measures cold and warm model loads, then per decision (a) scoring every skill
call against a memoised system-prompt prefix and (b) the baseline: uncached
greedy generation of the same decision.

Usage: HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python bench/llm_latency.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

from flexrl.llm.transformers_backend import TransformersBackend

SKILLS = {
    "go_to(red_pad)": "walk to the red pad and stop on it",
    "go_to(blue_pad)": "walk to the blue pad and stop on it",
    "go_to(green_pad)": "walk to the green pad and stop on it",
    "go_to(yellow_pad)": "walk to the yellow pad and stop on it",
    "go_to(ball)": "walk up to the ball",
    "avoid(ball)": "keep moving away from the ball",
    "push(ball)": "push the ball in the direction the agent faces",
    "follow(ball)": "stay close behind the ball as it moves",
    "move(north)": "walk one step north",
    "move(south)": "walk one step south",
    "move(east)": "walk one step east",
    "move(west)": "walk one step west",
    "turn(left)": "turn 90 degrees to the left",
    "turn(right)": "turn 90 degrees to the right",
    "wait()": "stand still for one second",
    "stop()": "stop and end the episode",
}
INSTRUCTIONS = [
    "Avoid the ball!",
    "Go to the red pad.",
    "Walk to the blue pad, then wait.",
    "Push the ball towards the green pad.",
    "Head north until you reach the yellow pad.",
    "Follow the ball but never touch it.",
    "Stop right now.",
]
OBJECTS = ["Ball", "Red pad", "Blue pad", "Green pad", "Yellow pad"]


def system_text() -> str:
    """Return the planner's constant system message listing every skill call."""
    lines = [
        "You control a four-legged robot in a flat arena. Coordinates are (x, y) in",
        "centimetres; north is +y and east is +x. Each turn you receive the user's",
        "instruction and the current observation, and you answer with exactly one",
        "skill call from the list below, written exactly as shown. Choose the skill",
        "that best follows the instruction from where the robot is now. The",
        "instruction can change at any time; always follow the latest one.",
        "",
        "Skills:",
    ]
    lines += [f"{call}: {text}" for call, text in SKILLS.items()]
    lines += ["", "Answer with the skill call only."]
    return "\n".join(lines)


def user_text(rng: random.Random) -> str:
    """Return one decision's instruction and observation with random positions."""
    def pos() -> str:
        return f"({rng.randint(-50, 50)}, {rng.randint(-50, 50)})"

    observed = ", ".join(f"{name}: {pos()}" for name in OBJECTS)
    return f"Instruction: {rng.choice(INSTRUCTIONS)}\nObservation: Agent: {pos()}, {observed}"


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) with linear interpolation."""
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50, help="scored decisions")
    parser.add_argument("--generate", type=int, default=10, help="decisions also generated")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="flexrl-bench-") as cache_dir:
        cold = TransformersBackend(cache_dir=cache_dir, threads=args.threads)
        warm = TransformersBackend(cache_dir=cache_dir, threads=args.threads)
    assert not cold.from_cache and warm.from_cache
    backend = warm

    system = system_text()
    options = [f" {call}" for call in SKILLS]
    # The rendered text shared by every decision is the cacheable prefix.
    prefix = os.path.commonprefix([backend.chat_prompt(system, "A"), backend.chat_prompt(system, "B")])
    rng = random.Random(args.seed)
    prompts = [backend.chat_prompt(system, user_text(rng)) for _ in range(args.decisions)]

    start = time.perf_counter()
    backend.score_options(prompts[0], options, cache_prefix=prefix)
    first_ms = (time.perf_counter() - start) * 1e3

    scoring, generation, texts, agree = [], [], [], 0
    for i, prompt in enumerate(prompts):
        start = time.perf_counter()
        scores = backend.score_options(prompt, options, cache_prefix=prefix)
        scoring.append((time.perf_counter() - start) * 1e3)
        if i < args.generate:
            start = time.perf_counter()
            text = backend.generate(prompt, args.max_new_tokens)
            generation.append((time.perf_counter() - start) * 1e3)
            texts.append(text)
            best = max(range(len(options)), key=lambda k: scores[k].logprob)
            agree += text.strip().startswith(options[best].strip())

    n_prefix = len(backend._encode(prefix))
    n_rest = statistics.mean(len(backend._encode(p[len(prefix) :])) for p in prompts)
    n_option = sum(len(backend._encode(o)) for o in options)
    print(f"model            {backend.name}  ({args.threads} torch thread(s))")
    print(f"load             cold {cold.load_seconds:.1f} s (GGUF -> cache), warm {warm.load_seconds:.1f} s")
    print(f"prompt           prefix {n_prefix} tokens (cached), rest {n_rest:.0f} tokens (mean)")
    print(f"options          {len(options)} calls, {n_option} tokens in all")
    print(f"first decision   {first_ms:.0f} ms (includes prefix prefill)")
    print()
    print(f"{'per decision':<34}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}")
    rows = [("(a) score all calls, cached prefix", scoring), ("(b) greedy generate, no cache", generation)]
    for label, values in rows:
        print(f"{label:<34}{len(values):>4}{percentile(values, 50):>9.0f}{percentile(values, 95):>9.0f}")
    ratio = percentile(generation, 50) / percentile(scoring, 50)
    print(f"\nratio generation p50 / scoring p50: {ratio:.1f}x")
    print(f"generated text starts with the top-scored call in {agree}/{len(generation)} decisions,")
    print(f"e.g. {texts[0]!r}")


if __name__ == "__main__":
    main()
