"""Small requests beside a big one: does `flexrl serve` keep them from starving? (issue 13)

Starts `flexrl serve` (the embedded model, --port 0) on 127.0.0.1 and measures, with httpx's async client:

  small alone   N concurrent small completions (a short prompt, a few tokens)
  large alone   one large request near the limits: an echoed prompt of about --large-tokens tokens with
                log-probs (the request that held the old server for 25 s while a tiny one waited)
  together      the large request, and once it runs, the same N small ones

It prints p50/p95 of the small requests' latencies (each from its own send to its answer) with and
without the large one running, and the large one's time. With --compare-unsliced the together phase
runs again on a server started with --slice-tokens 1000000, i.e. without slicing: what small requests
waited before. Bounded: each phase has a deadline (--timeout), and the whole run takes a few minutes.

Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/serve_load.py [--small 100] [--large-tokens 3600] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time

import httpx

SENTENCE = "Robot {i} walks to the red pad and waits."  # about 12 tokens


def start_server(args: list[str]) -> tuple[subprocess.Popen, str]:
    """`flexrl serve --port 0 ARGS` on 127.0.0.1; the process and its URL once it accepts connections."""
    proc = subprocess.Popen([sys.executable, "-m", "flexrl.cli", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
    raise RuntimeError(f"server exited with status {proc.wait()}")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def timed_post(client: httpx.AsyncClient, body: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    answer = await client.post("/v1/completions", json=body)
    if answer.status_code != 200:
        raise RuntimeError(f"HTTP {answer.status_code}: {answer.text}")
    return time.perf_counter() - start, answer.json()


async def smalls(client: httpx.AsyncClient, model: str, n: int, phase: int) -> list[float]:
    bodies = [{"model": model, "prompt": f"Say hello to robot {phase}-{i}.", "max_tokens": 4} for i in range(n)]
    return [t for t, _ in await asyncio.gather(*(timed_post(client, b) for b in bodies))]


def large_body(model: str, tokens: int, phase: int) -> dict:
    """A prompt no earlier phase sent (the prefix cache would otherwise answer it almost for free)."""
    prompt = f"Phase {phase}. " + " ".join(SENTENCE.format(i=i) for i in range(tokens // 12))
    return {"model": model, "prompt": prompt, "max_tokens": 0, "echo": True, "logprobs": 1}


async def measure(url: str, n: int, large_tokens: int, timeout: float, phases: tuple[str, ...]) -> dict:
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        await smalls(client, model, 4, 0)  # warm up: first-call costs out of the way
        out: dict = {}
        if "small" in phases:
            start = time.perf_counter()
            out["small_alone"] = await smalls(client, model, n, 1)
            out["small_alone_wall"] = time.perf_counter() - start
        if "large" in phases:
            out["large_alone"], answer = await timed_post(client, large_body(model, large_tokens, 2))
            out["large_prompt_tokens"] = answer["usage"]["prompt_tokens"]
        if "together" in phases:
            large = asyncio.ensure_future(timed_post(client, large_body(model, large_tokens, 3)))
            await asyncio.sleep(1.0)  # the large request is running
            start = time.perf_counter()
            out["small_together"] = await smalls(client, model, n, 3)
            out["small_together_wall"] = time.perf_counter() - start
            out["small_done_before_large"] = not large.done()
            out["large_together"], answer = await large
            out["large_prompt_tokens"] = answer["usage"]["prompt_tokens"]
        return out


def report(label: str, result: dict) -> list[str]:
    lines = []
    for phase in ("small_alone", "small_together"):
        if phase in result:
            ms = [t * 1e3 for t in result[phase]]
            lines.append(f"{label:9s} {phase:15s} n={len(ms):3d}  p50 {percentile(ms, 50):7.0f} ms  p95 {percentile(ms, 95):7.0f} ms"
                         f"  max {max(ms):7.0f} ms  wall {result[phase + '_wall']:6.1f} s")
    for phase in ("large_alone", "large_together"):
        if phase in result:
            lines.append(f"{label:9s} {phase:15s} {result['large_prompt_tokens']} prompt tokens, echo + logprobs: "
                         f"{result[phase]:6.1f} s")
    if "small_done_before_large" in result:
        lines.append(f"{label:9s} every small request answered before the large one finished: {result['small_done_before_large']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100, help="concurrent small requests")
    parser.add_argument("--large-tokens", type=int, default=3600, help="prompt tokens of the large request (about)")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--timeout", type=float, default=300, help="seconds any one request may take")
    parser.add_argument("--compare-unsliced", action="store_true", help="also run the together phase without slicing")
    parser.add_argument("--json", default=None, help="write the raw latencies here")
    args = parser.parse_args()
    runs = [("sliced", ["--threads", str(args.threads)], ("small", "large", "together"))]
    if args.compare_unsliced:
        runs.append(("unsliced", ["--threads", str(args.threads), "--slice-tokens", "1000000", "--decode-steps", "1000000"],
                     ("together",)))
    results, lines = {}, []
    for label, server_args, phases in runs:
        proc, url = start_server(server_args)
        try:
            results[label] = asyncio.run(measure(url, args.small, args.large_tokens, args.timeout, phases))
        finally:
            proc.terminate()
            proc.wait(30)
        lines += report(label, results[label])
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
