"""Decision latency of the embedded LLM planner on CPU, beside uncached greedy generation.

By default the shipped planner: the embedded model with the distilled adapter (``--adapter shipped``),
which reads the short menu prompt (``flexrl.planners.menu_prompt``) and scores one answer letter; each
decision after an episode's first carries the outcome of the one before ("go_to(red_pad) reached"), as
in a closed-loop run, so the cached prefix is the menu and the instruction and each decision reads the
``Done:`` line. ``--adapter null`` times the untrained model with the chat prompt (whole calls scored).

Loads the embedded model twice (cold: the GGUF is dequantised into a fresh cache; warm: from that
cache), then times the planner on the agreement bench's 16 instructions, each in an episode of its
own (a seeded arena layout; ``--layouts`` states of it, the agent walking 20 control steps between):

(a) ``LLMPlanner.decide``: every candidate skill call scored against the memoised prefix (system
    text, instruction, observation label, and the observation's fixed part: the unit and the pads).
    Each episode's first decision fills that prefix; it is reported apart, and (a) counts the
    decisions after it. ``--no-fixed`` caches only up to the observation label.
(b) the baseline: greedy generation from the same prompt, without any cache.

Usage: HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 python bench/llm_latency.py [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from planner_agreement import SCENARIOS, episode_states

from flexrl.encoders import EncoderConfig, encode, fixed_prefix
from flexrl.encoders.text import ENCODERS
from flexrl.llm.adapters import resolve_adapter
from flexrl.llm.transformers_backend import TransformersBackend
from flexrl.planners import menu_prompt
from flexrl.planners.base import Instruction, Outcome, PlanContext
from flexrl.planners.config import CALL_SCORING, PlannerConfig
from flexrl.planners.llm_planner import LLMPlanner, distinguishing_prefixes, naming_word_prefixes
from flexrl.skills.library import OUTCOMES, VERDICTS, SkillCall, Status, candidate_calls

BAR_P50_MS, BAR_P95_MS = 100, 150


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) with linear interpolation (a single value is every percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def parsed(text: str) -> SkillCall | None:
    """The skill call a generated answer starts with, if it is one."""
    try:
        return SkillCall.parse(text.strip().splitlines()[0]) if text.strip() else None
    except ValueError:
        return None


def profile(planner: LLMPlanner, contexts: list[PlanContext]) -> None:
    """Share of CPU time per torch operator over these decisions (their prefix already cached)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for context in contexts:
            planner.decide(context)
    print()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", type=int, default=5, help="decisions per instruction's episode (the first fills the prefix)")
    parser.add_argument("--no-fixed", action="store_true", help="do not cache the observation's fixed part (the pads)")
    parser.add_argument("--generate", type=int, default=16, help="decisions also generated (one per instruction)")
    parser.add_argument("--max-new-tokens", type=int, default=8, help="enough for the longest call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", default=EncoderConfig().kind, choices=list(ENCODERS))
    parser.add_argument("--cpu-weights", default="float16", choices=["float16", "float32"])
    parser.add_argument("--calls", default=PlannerConfig().calls, choices=CALL_SCORING, help="how much of each call is scored")
    parser.add_argument("--profile", action="store_true", help="then print where the time of 8 cached decisions goes")
    parser.add_argument("--adapter", default="shipped", help="shipped (the distilled planner), null (untrained) or a directory")
    args = parser.parse_args()

    adapter = resolve_adapter(args.adapter)
    with tempfile.TemporaryDirectory(prefix="flexrl-bench-") as cache_dir:
        cold = TransformersBackend(cache_dir=cache_dir, threads=args.threads, cpu_weights=args.cpu_weights, adapter=adapter)
        warm = TransformersBackend(cache_dir=cache_dir, threads=args.threads, cpu_weights=args.cpu_weights, adapter=adapter)
    assert not cold.from_cache and warm.from_cache
    cold_seconds = cold.load_seconds
    del cold
    backend, encoder = warm, EncoderConfig(kind=args.encoder)
    planner = LLMPlanner(backend, PlannerConfig(calls=args.calls))
    menu = planner.format == "menu"

    def context_of(world, instructions, progress=()) -> PlanContext:
        fixed = 0 if args.no_fixed else len(fixed_prefix(world, encoder))
        return PlanContext(world, encode(world, encoder), instructions, tuple(candidate_calls(world)), observation_fixed=fixed,
                           progress=progress)

    def split(context: PlanContext) -> tuple[str, str]:
        if menu:
            p = menu_prompt.for_context(context)
            return p.text, p.cache_prefix
        return planner.prompt(context)

    first, scoring, generation, rest_tokens, same, valid = [], [], [], [], 0, 0
    for k, (text, intent) in enumerate(SCENARIOS):
        progress: tuple[Outcome, ...] = ()
        for i, world in enumerate(episode_states(k, args.layouts)):
            context = context_of(world, (Instruction(text, intent),), progress)
            decision = planner.decide(context)
            (scoring if i else first).append(decision.latency_ms)
            full, prefix = split(context)
            rest_tokens.append(len(backend.encode(full[len(prefix) :])))
            if decision.call.name not in VERDICTS:  # the loop reports each skill's end; done and cannot never end
                outcome = OUTCOMES.get((decision.call.name, Status.SUCCESS), "reached")
                progress = (*progress, Outcome(decision.call, True, outcome))[-3:]
            if i == 1 and len(generation) < args.generate and not menu:
                start = time.perf_counter()
                answer = backend.generate(full, args.max_new_tokens)
                generation.append((time.perf_counter() - start) * 1e3)
                call = parsed(answer)
                valid += call in context.candidates
                same += call == decision.call

    calls = [str(c) for c in context.candidates]
    cut = {"whole": list, "naming_word": naming_word_prefixes, "distinguishing": distinguishing_prefixes}[args.calls]
    scored = [backend.encode(o) for o in (menu_prompt.labels(len(calls)) if menu else cut(calls))]
    nodes = {tuple(ids[:end]) for ids in scored for end in range(1, len(ids))}
    print(f"model            {backend.name}  ({args.threads} torch thread(s), body weights {backend.weights}), "
          f"adapter {adapter or 'none'}, prompt {planner.format}")
    print(f"load             cold {cold_seconds:.1f} s (GGUF -> cache), warm {warm.load_seconds:.1f} s")
    print(f"prompt           prefix {len(backend.encode(prefix))} tokens (cached per instruction{'' if args.no_fixed else ' and layout'}), "
          f"then {statistics.mean(rest_tokens):.0f} tokens (mean; encoder {args.encoder!r})")
    print(f"options          {len(scored)} calls scored as {sum(map(len, scored))} tokens, {len(nodes)} of them fed (token trie)")
    print(f"e.g.             {full[len(prefix):]!r}")
    print()
    print(f"{'per decision':<40}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}")
    rows = [("first per episode (fills the prefix)", first), ("(a) planner decision, cached prefix", scoring),
            ("(b) greedy generation, no cache", generation)]
    for label, values in rows:
        if not values:
            continue
        print(f"{label:<40}{len(values):>4}{percentile(values, 50):>9.0f}{percentile(values, 95):>9.0f}")
    p50, p95 = percentile(scoring, 50), percentile(scoring, 95)
    if generation:
        print(f"\nratio generation p50 / decision p50: {percentile(generation, 50) / p50:.1f}x")
    if args.profile:
        profile(planner, [context_of(w, context.instructions) for w in episode_states(len(SCENARIOS) - 1, 9)[1:]])
    met = p50 <= BAR_P50_MS and p95 <= BAR_P95_MS
    print(f"bar p50 <= {BAR_P50_MS} ms and p95 <= {BAR_P95_MS} ms: {'met' if met else 'NOT met'}")
    if generation:
        print(f"generation (uncalibrated) gave a valid call in {valid}/{len(generation)} decisions, "
              f"the planner's call in {same}/{len(generation)}")


if __name__ == "__main__":
    main()
