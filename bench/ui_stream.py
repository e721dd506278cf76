"""The control room's live view against its bars: stream frames/s at 480x360 and control steps/s, while the
embedded LLM (the shipped, distilled planner) decides.

Starts ``flexrl ui``'s control room on 127.0.0.1 (planner llm, llm embedded, robot orb, ball drift), opens
``--viewers`` MJPEG streams that count the frames they receive, and posts an instruction every
``--every`` seconds so the LLM keeps re-deciding. Measured over ``--seconds``:

- stream: JPEG frames received per second by each viewer (bar: >= 15);
- control: control steps per wall-clock second (bar: >= 20), paced at real time as the page runs it;
- capacity: the same loop unpaced (``realtime=False``), with the stream and the LLM on: the headroom.

Usage: MUJOCO_GL=egl python bench/ui_stream.py [--seconds 30] [--viewers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request

from flexrl.agent.runner import AgentConfig
from flexrl.agent.session import RunConfig
from flexrl.planners.config import PlannerConfig
from flexrl.runs.config import ExperimentConfig
from flexrl.ui.app import ControlRoom
from flexrl.ui.session import load_group

BAR_FPS, BAR_STEPS = 15, 20
INSTRUCTIONS = ["Avoid the ball!", "Follow the ball", "Go to the red pad", "Stop", "Go to the blue pad, then the green pad",
                "Head north", "Touch the ball", "Keep away from the yellow pad"]


def measure(realtime: bool, seconds: float, viewers: int, every: float, workspace: str) -> dict:
    cfg = RunConfig(planner=PlannerConfig(name="llm"), llm=load_group("llm", "embedded"), http_port=0, schedule=[],
                    experiment=ExperimentConfig(name="ui", workspace=workspace),
                    agent=AgentConfig(max_steps=100_000, record_video=False))
    room = ControlRoom(cfg, realtime=realtime, choices={"llm": "embedded"})
    base = room.url
    try:
        deadline = time.monotonic() + 300
        while room.view.snapshot()["status"] != "running" or room.view.frame_no < 5:
            if time.monotonic() > deadline:
                raise SystemExit(f"the control room did not start: {room.view.snapshot()}")
            time.sleep(0.2)
        counts: list[int] = [0] * viewers
        stop = threading.Event()

        def view(k: int) -> None:
            with urllib.request.urlopen(base + "stream.mjpg", timeout=30) as stream:
                while not stop.is_set():
                    counts[k] += stream.read1(1 << 20).count(b"--frame\r\n")

        threads = [threading.Thread(target=view, args=(k,), daemon=True) for k in range(viewers)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # the streams are open
        start_counts, start_step, start = list(counts), room.view.snapshot()["step"], time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            body = json.dumps({"text": INSTRUCTIONS[n % len(INSTRUCTIONS)]}).encode()
            urllib.request.urlopen(urllib.request.Request(base + "instruction", body, {"Content-Type": "application/json"}),
                                   timeout=10).read()
            n += 1
            time.sleep(every)
        elapsed = time.perf_counter() - start
        snap = room.view.snapshot()
        stop.set()
        fps = [(c - s) / elapsed for c, s in zip(counts, start_counts)]
        latencies = [d["latency_ms"] for d in snap["decisions"]]
        return {"fps": fps, "steps_per_s": (snap["step"] - start_step) / elapsed, "instructions": n,
                "decisions": len(latencies), "latency_p50": statistics.median(latencies) if latencies else None,
                "planner": snap.get("planner")}
    finally:
        room.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--viewers", type=int, default=2)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between instructions (each is an LLM decision)")
    parser.add_argument("--workspace", default="/tmp/flexrl-ui-bench")
    args = parser.parse_args()
    paced = measure(True, args.seconds, args.viewers, args.every, args.workspace)
    unpaced = measure(False, args.seconds / 2, args.viewers, args.every, args.workspace)
    print(f"planner {paced['planner']}, {args.viewers} viewers, 480x360 JPEG, {args.seconds:g} s, an instruction every {args.every:g} s")
    print(f"{'':28}{'paced (as the page runs)':>26}{'unpaced (capacity)':>22}")
    print(f"{'stream frames/s per viewer':28}{min(paced['fps']):>19.1f} (min){min(unpaced['fps']):>15.1f} (min)")
    print(f"{'control steps/s':28}{paced['steps_per_s']:>26.1f}{unpaced['steps_per_s']:>22.1f}")
    print(f"{'LLM decisions (p50 ms)':28}{paced['decisions']:>18} ({paced['latency_p50']:.0f}){unpaced['decisions']:>14} ({unpaced['latency_p50']:.0f})")
    fps_ok = min(paced["fps"]) >= BAR_FPS
    steps_ok = paced["steps_per_s"] >= BAR_STEPS * 0.99 and unpaced["steps_per_s"] >= BAR_STEPS
    print(f"bar stream >= {BAR_FPS} frames/s: {'met' if fps_ok else 'NOT met'}; control >= {BAR_STEPS} steps/s "
          f"(real time held, and the unpaced loop above it): {'met' if steps_ok else 'NOT met'}")


if __name__ == "__main__":
    main()
