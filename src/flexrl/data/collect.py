"""Recording episodes of any planner into Minari datasets (Farama's successor to D4RL).

Episodes run through the benchmark's lockstep driver (:func:`flexrl.bench.evaluate.evaluate`: many
environments, batched decisions and actions); a :class:`Recorder` sees each action and each finished
episode and turns it into a Minari episode buffer:

- observations: ``{"state": world features (flexrl.data.features), "instruction": the text in force}``;
- actions: what the robot's action mapping received (the orb's force, the ant's gait command);
- rewards: 1 at the last step of each instruction whose success checks held, else 0 (sparse, from the
  benchmark's predicates over the trajectory);
- terminations: the robot fell; truncations: the episode's time ran out;
- infos: the skill call in force, the world state (agent, ball, pads, step) and the instruction's index.

Datasets are written through Minari's own writer (``minari.create_dataset_from_buffers``, Arrow storage:
Minari's ``DataCollector`` needs ``minari[create]``, which pulls in jax) into a temporary root and moved
into ``<root>/flexrl/<name>-v<N>`` in one rename, so a killed collection leaves no half dataset. Read one
back with ``MINARI_DATASETS_PATH=<root> python -c "import minari; minari.load_dataset('flexrl/...')"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import string
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flexrl.data.features import DIM, world_features
from flexrl.envs.arena_model import PAD_COLOURS

NAMESPACE = "flexrl"
CODE = "flexrl.data.collect (the git commit is in the dataset's flexrl metadata)"
MAX_INSTRUCTION = 500
"""Characters of an instruction at most (the instruction channel's limit)."""
_ID = re.compile(r"flexrl/[a-z0-9][a-z0-9_-]*-v\d+")


def observation_space():
    """The datasets' observation space: the world features and the instruction text."""
    from gymnasium import spaces

    return spaces.Dict({
        "state": spaces.Box(-np.inf, np.inf, (DIM,), np.float32),
        "instruction": spaces.Text(MAX_INSTRUCTION, min_length=0, charset=string.printable),
    })


def arena_spec(robot: str | None):
    """The arena's Gymnasium spec with ``robot``: ``MinariDataset.recover_environment()`` makes the arena back.

    The recovered env's own observation is the arena's vector; the dataset's is :func:`world_features` of its
    ``world_state()`` and the instruction.
    """
    import dataclasses

    import gymnasium as gym

    from flexrl.envs.registration import ARENA_ID, register_envs

    register_envs()
    return dataclasses.replace(gym.spec(ARENA_ID), kwargs={"robot": robot or "orb"})


def check_dataset_id(dataset_id: str) -> str:
    """``dataset_id`` if it is ``flexrl/<name>-v<N>`` (lower case), else a ValueError of one line."""
    if not isinstance(dataset_id, str) or not _ID.fullmatch(dataset_id):
        raise ValueError(f"dataset id {dataset_id!r}; allowed: flexrl/<name>-v<N>, e.g. flexrl/arena-orb-oracle-v0 "
                         "(lower-case letters, digits, '-' and '_')")
    return dataset_id


@contextlib.contextmanager
def minari_root(root: str | Path):
    """Point minari at ``root`` (``MINARI_DATASETS_PATH``, which it reads at each call) for the block, then back."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def refuse_existing(root: str | Path, dataset_id: str) -> Path:
    """Where dataset ``dataset_id`` goes under ``root``; a ValueError of one line if it exists (never overwritten)."""
    final = Path(root) / check_dataset_id(dataset_id)
    if final.exists():
        raise ValueError(f"dataset {dataset_id!r} exists at {final}; allowed: a new version (-v<N+1>), datasets "
                         "are never overwritten")
    return final


def next_dataset_id(root: Path, name: str) -> str:
    """``flexrl/<name>-v<N>`` with the first N not used under ``root``."""
    used = [int(p.name.rsplit("-v", 1)[1]) for p in (Path(root) / NAMESPACE).glob(f"{name}-v*")
            if p.name.rsplit("-v", 1)[1].isdigit()]
    return check_dataset_id(f"{NAMESPACE}/{name}-v{max(used, default=-1) + 1}")


@dataclass
class Recorder:
    """Turns the episodes of a batched evaluation into Minari episode buffers (an ``EpisodeObserver``)."""

    buffers: list = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    falls: int = 0
    _actions: dict[tuple[str, int], list[np.ndarray]] = field(default_factory=dict)

    def action(self, task: str, seed: int, action: np.ndarray) -> None:
        self._actions.setdefault((task, seed), []).append(np.asarray(action, dtype=np.float32).copy())

    def finished(self, result, runner) -> None:
        from minari.data_collector.episode_buffer import EpisodeBuffer

        actions = np.stack(self._actions.pop((result.task, result.seed)))
        steps = len(actions)
        worlds = runner.trajectory[: steps + 1]
        starts = [s.start_step for s in runner.segments]
        texts = [s.instruction.text for s in runner.segments]
        segment = np.searchsorted(starts, np.arange(steps + 1), side="right") - 1
        decided = np.searchsorted(runner.decision_steps, np.arange(steps + 1), side="right") - 1
        calls = [str(runner.decisions[i].call) if i >= 0 else "" for i in decided]
        since = np.arange(steps + 1) - np.asarray(starts)[segment]
        states = np.stack([world_features(w, int(s)) for w, s in zip(worlds, since)])
        rewards = np.zeros(steps, dtype=np.float32)
        ends = [*starts[1:], steps]
        for verdict, end in zip(result.segments, ends):
            if verdict:
                rewards[max(0, min(end, steps) - 1)] = 1.0
        fell = steps < round(runner.config.max_steps) and steps > 0
        terminations = np.zeros(steps, dtype=bool)
        truncations = np.zeros(steps, dtype=bool)
        if fell:
            terminations[-1] = True
            self.falls += 1
        elif steps:
            truncations[-1] = True
        infos = {
            "call": calls,
            "segment": [int(i) for i in segment],
            "step": [int(w.step) for w in worlds],
            "agent_pos": np.stack([w.agent.pos for w in worlds]).astype(np.float32),
            "agent_vel": np.stack([w.agent.vel for w in worlds]).astype(np.float32),
            "agent_heading": np.stack([[w.agent_heading] for w in worlds]).astype(np.float32),
            "ball_pos": np.stack([w.ball.pos for w in worlds]).astype(np.float32),
            "ball_vel": np.stack([w.ball.vel for w in worlds]).astype(np.float32),
            "pads": np.stack([np.concatenate([w.pads[p] for p in PAD_COLOURS]) for w in worlds]).astype(np.float32),
        }
        observations = {"state": states, "instruction": [texts[i][:MAX_INSTRUCTION] for i in segment]}
        self.buffers.append(EpisodeBuffer(id=len(self.buffers), seed=int(result.seed), observations=observations,
                                          actions=actions, rewards=rewards, terminations=terminations,
                                          truncations=truncations, infos=infos))
        self.successes.append(bool(result.success))


def write_dataset(root: str | Path, dataset_id: str, recorder: Recorder, action_space, metadata: dict[str, Any],
                  description: str) -> Path:
    """Write the recorded episodes as Minari dataset ``dataset_id`` under ``root``; returns its directory.

    Raises:
        ValueError: a bad id, no episodes, or an id that exists already (datasets are never overwritten).
    """
    import minari

    root = Path(root)
    final = refuse_existing(root, dataset_id)
    if not recorder.buffers:
        raise ValueError("no episode was recorded; allowed: episodes >= 1")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        with minari_root(staging), warnings.catch_warnings():  # minari's advice on unset optional fields (an author email, an eval env)
            warnings.filterwarnings("ignore", category=UserWarning, module="minari")
            dataset = minari.create_dataset_from_buffers(
                dataset_id, recorder.buffers, env=arena_spec(metadata.get("robot")), observation_space=observation_space(),
                action_space=action_space, algorithm_name=str(metadata.get("planner", "")), author="flexrl",
                code_permalink=CODE, description=description, data_format="arrow")
        dataset.storage.update_metadata({"flexrl": json.dumps(metadata, sort_keys=True)})
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / dataset_id, final)
        namespace = root / NAMESPACE / "namespace_metadata.json"
        if not namespace.exists() and (staging / NAMESPACE / "namespace_metadata.json").exists():
            os.replace(staging / NAMESPACE / "namespace_metadata.json", namespace)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def dataset_metadata(root: str | Path, dataset_id: str) -> dict[str, Any]:
    """flexrl's metadata of a dataset (planner, robot, seeds, code version, task mix), read as JSON."""
    raw = json.loads((Path(root) / check_dataset_id(dataset_id) / "data" / "metadata.json").read_text())
    return json.loads(raw["flexrl"]) if "flexrl" in raw else {}


def collect(tasks: list, seeds: list[int], planner, policies, robot, root: str | Path, dataset_id: str,
            metadata: dict[str, Any], n_envs: int = 16, encoder=None, on_episode=None) -> dict[str, Any]:
    """Run ``tasks`` x ``seeds`` with ``planner`` in lockstep and write them as dataset ``dataset_id``.

    Returns the datasheet: episodes, steps, success, falls, episodes per minute, the task mix and the path.
    """
    import time
    from collections import Counter

    from flexrl.bench.evaluate import evaluate
    from flexrl.envs.registration import make_arena

    refuse_existing(root, dataset_id)  # before any episode runs
    recorder = Recorder()
    start = time.perf_counter()
    results = evaluate(tasks, seeds, planner, policies, n_envs=n_envs, encoder=encoder, robot=robot,
                       observer=recorder, on_episode=on_episode)
    wall = time.perf_counter() - start
    env = make_arena(robot)
    action_space = env.action_space
    env.close()
    by_category = Counter(r.category for r in results)
    won = Counter(r.category for r in results if r.success)
    sheet = {
        "dataset_id": dataset_id,
        "episodes": len(results),
        "steps": int(sum(len(b.actions) for b in recorder.buffers)),
        "success": round(float(np.mean([r.success for r in results])), 4),
        "falls": recorder.falls,
        "wall_seconds": round(wall, 1),
        "episodes_per_minute": round(60 * len(results) / max(wall, 1e-9), 1),
        "categories": {c: {"episodes": n, "success": round(won[c] / n, 4)} for c, n in sorted(by_category.items())},
        "instructions": len({t for b in recorder.buffers for t in b.observations["instruction"]}),
    }
    metadata = {**metadata, **{k: sheet[k] for k in ("episodes", "steps", "success", "categories", "instructions")}}
    description = (f"flexrl arena episodes: planner {metadata.get('planner')}, robot {metadata.get('robot')}, "
                   f"{len(results)} episodes of {metadata.get('tasks')} tasks; observations are world features "
                   "and the instruction text, actions the robot's planar command")
    written = time.perf_counter()
    sheet["path"] = str(write_dataset(root, dataset_id, recorder, action_space, metadata, description))
    sheet["write_seconds"] = round(time.perf_counter() - written, 1)
    return sheet
