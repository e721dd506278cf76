"""Kill -9 a training run mid-way, resume it, and compare its final success with an uninterrupted run.

Both runs use the same config and seed; the interrupted one is SIGKILLed once its checkpoint passes
``--kill-at`` of the budget, then resumed with ``flexrl train resume=<run>``. Final success is measured
by the same fresh evaluation (``--episodes`` per skill) on both final policies.

    MUJOCO_GL=egl python bench/resume_bench.py [--steps 61440] [--episodes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flexrl.skills.evaluate import evaluate_family
from flexrl.skills.policies import PolicySet


def _train(workspace: Path, name: str, steps: int, extra: list[str] = ()) -> subprocess.Popen:
    args = [sys.executable, "-m", "flexrl.cli", "train", f"experiment.workspace={workspace}", f"experiment.name={name}",
            f"skill.total_steps={steps}", "ppo.target_success=1.1", f"ppo.eval_every={steps // 4}",
            "checkpoint_every=4096", "tracking.progress=false", *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=61_440)
    p.add_argument("--kill-at", type=float, default=0.5)
    p.add_argument("--episodes", type=int, default=200)
    a = p.parse_args()
    ws = Path(tempfile.mkdtemp(prefix="resume-bench-"))
    assert _train(ws, "whole", a.steps).wait() == 0
    proc = _train(ws, "killed", a.steps)
    while True:
        found = list(ws.glob("killed/*/checkpoints/last.json"))
        if found and json.loads(found[0].read_text())["steps"] >= a.kill_at * a.steps:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = found[0].parent.parent
    killed_at = json.loads(found[0].read_text())["steps"]
    assert subprocess.run([sys.executable, "-m", "flexrl.cli", "train", f"resume={run}", f"experiment.workspace={ws}",
                           "tracking.progress=false"],
                          stdout=subprocess.DEVNULL).returncode == 0
    print(f"reach, {a.steps} env steps; one run SIGKILLed after its checkpoint at {killed_at} steps, then resumed")
    for name in ("whole", "killed"):
        (ckpt,) = ws.glob(f"{name}/*/checkpoints")
        steps = json.loads((ckpt / "reach.json").read_text())["steps"]
        results = evaluate_family(PolicySet.load(sources={"reach": str(ckpt)}, families=("reach",)), "reach", a.episodes, seed=90_000)
        rates = ", ".join(f"{k} {r.success_rate:.1%}" for k, r in results.items())
        print(f"  {'uninterrupted' if name == 'whole' else 'killed+resumed'}: {steps} steps; success ({a.episodes} eps each): {rates}")
    print(f"  runs in {ws}")


if __name__ == "__main__":
    main()
