"""LLM decision latency and throughput per backend and batch size (issue 5).

A decision is what the LLM planner asks of its backend: score every candidate skill call after one
agent's prompt (a real arena layout and observation; calibration is per planner, so not counted).
``B`` agents decide at once, each on its own layout, with new layouts every round:

  local    TransformersBackend.score_options, the B requests one after another (in process)
  batched  BatchScorer.score_requests, the B requests in one call (in process, shared passes)
  served   `flexrl serve` in a child process + one OpenAICompatBackend per agent, B concurrent threads

The bar: with 16 concurrent agents, served decision throughput >= 4x that of the same 16 requests
sent one after another (served, batch size 1). One untimed round first fills the prefix caches.
Besides wall time, the model's CPU time per decision is reported (this process's, or the server
process's): on a shared machine it moves much less with other people's load than wall time does.

Usage: HF_HUB_OFFLINE=1 MUJOCO_GL=egl .venv/bin/python bench/llm_serving.py [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from flexrl.encoders import EncoderConfig, encode
from flexrl.envs import ArenaEnv
from flexrl.llm.base import OptionScore
from flexrl.llm.batch_types import ScoreRequest
from flexrl.llm.batching import BatchScorer
from flexrl.llm.openai_compat import OpenAICompatBackend
from flexrl.llm.transformers_backend import TransformersBackend
from flexrl.planners.base import Instruction, PlanContext
from flexrl.planners.config import PlannerConfig
from flexrl.planners.llm_planner import LLMPlanner
from flexrl.skills.library import candidate_calls

INSTRUCTIONS = ("Avoid the ball!", "Go to the red pad", "Follow the ball")
BAR_AGENTS, BAR_RATIO = 16, 4.0


class _Recorder:
    """Stands in for a backend to capture the exact request the planner makes for one decision."""

    def __init__(self, backend: TransformersBackend) -> None:
        self.name, self._backend, self.request = "recorder", backend, None

    def chat_prompt(self, system: str, user: str) -> str:
        return self._backend.chat_prompt(system, user)

    def score_options(self, prompt, options, cache_prefix=None):
        self.request = ScoreRequest(prompt, tuple(options), cache_prefix)
        return [OptionScore(0.0, 1) for _ in options]


def planner_requests(backend: TransformersBackend, seeds: range) -> list[ScoreRequest]:
    """The planner's scoring request for each arena layout in ``seeds`` (agent i gets instruction i mod 3)."""
    recorder = _Recorder(backend)
    planner, env, out = LLMPlanner(recorder, PlannerConfig(calibrate=False)), ArenaEnv(), []
    for i, seed in enumerate(seeds):
        env.reset(seed=seed)
        world = env.world_state()
        instruction = Instruction(INSTRUCTIONS[i % len(INSTRUCTIONS)])
        planner.decide(PlanContext(world, encode(world, EncoderConfig()), (instruction,), tuple(candidate_calls(world))))
        out.append(recorder.request)
    return out


def pass_costs(backend: TransformersBackend, sizes=(16, 64, 128, 512, 2048)) -> dict[int, float]:
    """CPU ms per token of one plain forward pass over ``n`` tokens: whether bigger passes are cheaper per token."""
    import torch

    costs = {}
    with torch.inference_mode():
        for n in sizes:
            ids = torch.randint(0, 1000, (1, n))
            backend.model.model(input_ids=ids)
            start = time.process_time()
            backend.model.model(input_ids=ids)
            costs[n] = (time.process_time() - start) * 1e3 / n
    return costs


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    """`python -m flexrl.llm.server` on a free port; returns the process and its URL once it accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "flexrl.llm.server", "--port", "0", "--threads", str(threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
    raise RuntimeError(f"server exited with status {proc.wait()}")


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def run_round(kind: str, requests: list[ScoreRequest], ctx: dict) -> list[float]:
    """Make the decisions; return each one's latency in ms (from when the round started for concurrent ones)."""
    if kind == "local":
        return [timed(lambda r=r: ctx["local"].score_options(r.prompt, list(r.options), r.cache_prefix)) for r in requests]
    if kind == "batched":
        return [timed(lambda: ctx["scorer"].score_requests(requests))] * len(requests)
    clients = ctx["clients"]
    if kind == "served-sequential":
        return [timed(lambda r=r: clients[0].score_options(r.prompt, list(r.options))) for r in requests]
    start = time.perf_counter()

    def one(i: int) -> float:
        r = requests[i]
        clients[i].score_options(r.prompt, list(r.options))
        return (time.perf_counter() - start) * 1e3

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(one, range(len(requests))))


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of this process, or of process ``pid`` (from /proc)."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, size: int, rounds: int, ctx: dict) -> dict:
    """Decisions/s, latency percentiles and CPU ms per decision over ``rounds`` timed rounds of ``size`` agents."""
    latencies, wall, cpu = [], 0.0, 0.0
    pid = ctx["server_pid"] if kind.startswith("served") else None
    for round_ in range(rounds + 1):
        requests = planner_requests(ctx["local"], range(ctx["next_seed"], ctx["next_seed"] + size))
        ctx["next_seed"] += size
        start, start_cpu = time.perf_counter(), cpu_seconds(pid)
        lat = run_round(kind, requests, ctx)
        if round_:  # round 0 warms the caches
            wall += time.perf_counter() - start
            cpu += cpu_seconds(pid) - start_cpu
            latencies += lat
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    return {"kind": kind, "size": size, "per_s": len(latencies) / wall, "p50": statistics.median(latencies), "p95": q[18],
            "cpu_ms": cpu * 1e3 / len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--backends", nargs="+", default=["local", "batched", "served"])
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per backend and size")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in process and in the server")
    args = parser.parse_args()

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    local = TransformersBackend(threads=args.threads)
    ctx = {"local": local, "scorer": BatchScorer(local), "next_seed": 0, "server_pid": None}
    sample = planner_requests(local, range(1000, 1004))
    rest = [len(local.encode(r.prompt[len(r.cache_prefix):])) for r in sample]
    print(f"model {local.name}, {args.threads} torch thread(s); per decision: {len(sample[0].options)} options, "
          f"cached prefix ~{len(local.encode(sample[0].cache_prefix))} tokens, ~{statistics.mean(rest):.0f} new prompt tokens")
    costs = pass_costs(local)
    print("one forward pass, CPU ms per token: " + ", ".join(f"{n} tokens {c:.2f}" for n, c in costs.items()), flush=True)
    results = []
    server = None
    try:
        if "served" in args.backends:
            server, url = start_server(args.threads)
            ctx["server_pid"] = server.pid
            ctx["clients"] = [OpenAICompatBackend(url, timeout=600) for _ in range(max(args.sizes))]
        for kind in args.backends:
            for size in args.sizes:
                kinds = ["served-concurrent"] if kind == "served" else [kind]
                if kind == "served" and size == BAR_AGENTS:
                    kinds = ["served-sequential", "served-concurrent", "served-concurrent", "served-sequential"]
                for k in kinds:
                    results.append(measure(k, size, args.rounds, ctx))
                    r = results[-1]
                    print(f"{r['kind']:<18} B={size:<3} {r['per_s']:6.2f} decisions/s  p50 {r['p50']:7.0f} ms  "
                          f"p95 {r['p95']:7.0f} ms  cpu {r['cpu_ms']:5.0f} ms/decision", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n| backend | B | decisions/s | p50 ms | p95 ms | model CPU ms/decision |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['kind']} | {r['size']} | {r['per_s']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['cpu_ms']:.0f} |")
    bar = [r for r in results if r["kind"].startswith("served") and r["size"] == BAR_AGENTS]
    if bar:
        def ratio(key: str, invert: bool = False) -> float:
            seq = statistics.mean(r[key] for r in bar if r["kind"] == "served-sequential")
            conc = statistics.mean(r[key] for r in bar if r["kind"] == "served-concurrent")
            return seq / conc if invert else conc / seq

        wall, cpu = ratio("per_s"), ratio("cpu_ms", invert=True)
        print(f"\nbar: {BAR_AGENTS} concurrent agents vs the same {BAR_AGENTS} requests one after another (served): "
              f"throughput {wall:.2f}x, server CPU per decision {cpu:.2f}x less (bar {BAR_RATIO:g}x) -> "
              f"{'met' if wall >= BAR_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
