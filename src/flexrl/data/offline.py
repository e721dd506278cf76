"""Training a language-conditioned policy from a recorded dataset: behaviour cloning, or IQL (d3rlpy).

Data flow: a Minari dataset (:mod:`flexrl.data.collect`) -> per-step world features, instruction texts,
actions, sparse rewards -> each distinct instruction embedded once (:mod:`flexrl.data.embeddings`, cached
per text) and projected to a short code (PCA over the training instructions) -> an MLP from [features,
code] to the action (:class:`~flexrl.data.policy.ConditionedPolicy`).

- ``bc``: mean-squared error to the recorded actions (Adam), in this module.
- ``iql``: Implicit Q-Learning from d3rlpy (a well-kept offline-RL library; its actor has the same MLP
  shape, and its weights are copied into the same weights-only policy file).

Whole episodes are held out for validation (``val_share``); the curve reports the validation MSE and
the share of validation actions within 0.25 of the recorded one (``agreement``). A run is resumable:
BC keeps the network and Adam's moments in ``checkpoints/state.safetensors`` (+ JSON), IQL d3rlpy's
state dicts (read back with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from flexrl.data.collect import check_dataset_id, minari_root
from flexrl.data.features import DIM, NAMES
from flexrl.data.policy import ConditionedPolicy, Projection
from flexrl.runs.atomic import atomic_write, write_json

ALGORITHMS = ("bc", "iql")
HOLDS = ("done", "cannot")
"""Calls under which the recorded planner held still."""
AGREEMENT = 0.25
"""A validation action 'agrees' when it is within this distance of the recorded one."""


@dataclass
class OfflineConfig:
    """How a conditioned policy is trained from a dataset.

    Attributes:
        dataset: the Minari dataset id (``flexrl/<name>-v<N>``).
        root: where datasets live (None: ``<workspace>/datasets``).
        algorithm: "bc" (behaviour cloning) or "iql" (d3rlpy's Implicit Q-Learning).
        embedder: the instruction embedder (``flexrl.data.embeddings``): "minilm" (all-MiniLM-L6-v2: separates the
            intents best and is 13x faster than SmolLM2, docs/embeddings.md), "smollm2" or "hashing" (a test fake).
        code_dim: instruction code size (PCA of the embeddings).
        hidden: MLP widths.
        steps: gradient steps.
        batch_size: transitions per step.
        lr: Adam's learning rate (BC; IQL uses d3rlpy's defaults for its critics).
        eval_every: steps between validation, curve points and checkpoints.
        val_share: share of episodes held out for validation.
        expectile: IQL's expectile.
        temperature: IQL's advantage temperature (inverse beta).
        gamma: IQL's discount.
        threads: torch threads.
        seed: the seed of the split, the initialisation and the batches.
        drop: world features the policy does not read (e.g. ``[since_instruction]``, the instruction's clock: without
            it BC scored 28% of the suite's solvable tasks, with it 34%; docs/offline.md).
        hold_weight: BC's sampling weight of steps where the recorded planner held still (``done``, ``cannot``:
            half of an oracle dataset) relative to the others.
    """

    dataset: str = ""
    root: Optional[str] = None
    algorithm: str = "bc"
    embedder: str = "minilm"
    code_dim: int = 32
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    steps: int = 20000
    batch_size: int = 512
    lr: float = 1e-3
    eval_every: int = 1000
    val_share: float = 0.05
    expectile: float = 0.7
    temperature: float = 3.0
    gamma: float = 0.99
    threads: int = 1
    seed: int = 0
    drop: list[str] = field(default_factory=list)
    hold_weight: float = 0.1

    def __post_init__(self) -> None:
        from flexrl.data.features import NAMES

        unknown = [name for name in self.drop if name not in NAMES]
        if unknown:
            raise ValueError(f"drop entry {unknown[0]!r}; allowed: {', '.join(NAMES)}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm={self.algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
        if self.dataset:
            check_dataset_id(self.dataset)
        for name in ("code_dim", "steps", "batch_size", "eval_every", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}; allowed: a positive integer")
        if not (0 < self.val_share < 0.5):
            raise ValueError(f"val_share={self.val_share!r}; allowed: a share in (0, 0.5)")
        if not (isinstance(self.hold_weight, (int, float)) and 0 < self.hold_weight <= 1):
            raise ValueError(f"hold_weight={self.hold_weight!r}; allowed: a weight in (0, 1]")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={self.lr!r}; allowed: a positive number")
        if not self.hidden or not all(isinstance(w, int) and 0 < w <= 4096 for w in self.hidden):
            raise ValueError(f"hidden={self.hidden!r}; allowed: 1 to 8 widths in 1..4096")


@dataclass
class Transitions:
    """A dataset's steps as arrays (one row per action; ``next_*`` rows are the step after)."""

    states: np.ndarray
    instructions: np.ndarray
    texts: list[str]
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episodes: np.ndarray
    holds: np.ndarray

    def select(self, mask: np.ndarray) -> "Transitions":
        return Transitions(self.states[mask], self.instructions[mask], self.texts, self.actions[mask], self.rewards[mask],
                           self.terminals[mask], self.timeouts[mask], self.episodes[mask], self.holds[mask])


def load_transitions(root: str | Path, dataset_id: str) -> Transitions:
    """Every step of dataset ``dataset_id`` under ``root`` (read with ``minari.load_dataset``).

    Raises:
        ValueError: no such dataset (one line with where it looked), or a dataset of another layout.
    """
    import minari

    check_dataset_id(dataset_id)
    root = Path(root)
    if not (root / dataset_id / "data").is_dir():
        raise ValueError(f"no dataset {dataset_id!r} under {root}; record one with `flexrl collect` "
                         f"(datasets there: {', '.join(sorted(p.parent.name + '/' + p.name for p in root.glob('*/*') if p.is_dir())) or 'none'})")
    with minari_root(root):
        episodes = list(minari.load_dataset(dataset_id).iterate_episodes())
    index: dict[str, int] = {}
    parts: dict[str, list] = {k: [] for k in ("states", "instructions", "actions", "rewards", "terminals", "timeouts", "episodes",
                                              "holds")}
    for ep in episodes:
        obs = ep.observations
        if not isinstance(obs, dict) or obs.get("state") is None or np.shape(obs["state"])[1:] != (DIM,):
            raise ValueError(f"dataset {dataset_id!r}: observations are not flexrl's {{state: ({DIM},), instruction}}")
        n = len(ep.actions)
        parts["states"].append(np.asarray(obs["state"][:n], dtype=np.float32))
        parts["instructions"].append(np.array([index.setdefault(str(t), len(index)) for t in obs["instruction"][:n]]))
        parts["actions"].append(np.asarray(ep.actions, dtype=np.float32))
        parts["rewards"].append(np.asarray(ep.rewards, dtype=np.float32))
        parts["terminals"].append(np.asarray(ep.terminations, dtype=bool))
        parts["timeouts"].append(np.asarray(ep.truncations, dtype=bool))
        parts["episodes"].append(np.full(n, ep.id))
        parts["holds"].append(np.array([str(c).split("(")[0] in HOLDS for c in ep.infos["call"][:n]], dtype=bool))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return Transitions(texts=list(index), **arrays)


def split(data: Transitions, val_share: float, seed: int) -> tuple[Transitions, Transitions]:
    """Whole episodes held out: (train, validation)."""
    ids = np.unique(data.episodes)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(ids, size=max(1, round(len(ids) * val_share)), replace=False).tolist())
    mask = np.isin(data.episodes, list(held))
    return data.select(~mask), data.select(mask)


def validate(policy: ConditionedPolicy, val: Transitions, codes: np.ndarray) -> dict[str, float]:
    """Validation MSE and agreement (share of actions within ``AGREEMENT`` of the recorded one)."""
    pred, _ = policy.predict(policy.inputs(val.states, codes[val.instructions]))
    err = np.linalg.norm(pred - val.actions, axis=1)
    return {"val_mse": round(float(np.mean((pred - val.actions) ** 2)), 5), "agreement": round(float(np.mean(err <= AGREEMENT)), 4)}


# ------------------------------------------------------------------------------------------ BC
def _save_state(path: Path, policy: ConditionedPolicy, optimizer: torch.optim.Optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {f"net.{k}": v.detach().clone() for k, v in policy.net.state_dict().items()}
    for i, p in enumerate(policy.net.parameters()):
        state = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"adam.{i}.{key}"] = state[key].detach().clone()
    atomic_write(path / "state.safetensors", lambda tmp: save_file(tensors, tmp), suffix=".safetensors")
    write_json(path / "state.json", {"step": step, "adam_step": step})


def _load_state(path: Path, policy: ConditionedPolicy, optimizer: torch.optim.Optimizer) -> int:
    from safetensors.torch import load_file

    meta = json.loads((path / "state.json").read_text())
    tensors = load_file(str(path / "state.safetensors"))
    policy.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    for i, p in enumerate(policy.net.parameters()):
        if f"adam.{i}.exp_avg" in tensors:
            optimizer.state[p] = {"step": torch.tensor(float(meta["adam_step"])), "exp_avg": tensors[f"adam.{i}.exp_avg"],
                                  "exp_avg_sq": tensors[f"adam.{i}.exp_avg_sq"]}
    return int(meta["step"])


def train_bc(cfg: OfflineConfig, policy: ConditionedPolicy, train: Transitions, val: Transitions, codes: np.ndarray,
             checkpoints: Path, on_eval, resume: bool = False) -> int:
    """Behaviour cloning: MSE between tanh(net) and the recorded actions; returns the steps done."""
    optimizer = torch.optim.Adam(policy.net.parameters(), lr=cfg.lr)
    step = _load_state(checkpoints, policy, optimizer) if resume and (checkpoints / "state.json").is_file() else 0
    inputs = torch.from_numpy(policy.inputs(train.states, codes[train.instructions]))
    targets = torch.from_numpy(train.actions)
    gen = torch.Generator().manual_seed(cfg.seed + step)
    weights = torch.from_numpy(np.where(train.holds, cfg.hold_weight, 1.0))
    policy.net.train()
    while step < cfg.steps:
        batch = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)
        loss = torch.mean((torch.tanh(policy.net(inputs[batch])) - targets[batch]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            policy.net.eval()
            on_eval(step, {"train_mse": round(loss.item(), 5), **validate(policy, val, codes)})
            _save_state(checkpoints, policy, optimizer, step)
            policy.net.train()
    policy.net.eval()
    return step


# ------------------------------------------------------------------------------------------ IQL
def _mdp(policy: ConditionedPolicy, data: Transitions, codes: np.ndarray):
    import d3rlpy

    return d3rlpy.dataset.MDPDataset(policy.inputs(data.states, codes[data.instructions]), data.actions,
                                     data.rewards, data.terminals.astype(np.float32), timeouts=data.timeouts.astype(np.float32),
                                     action_space=d3rlpy.constants.ActionSpace.CONTINUOUS)  # never guessed from the values


def _copy_actor(algo, policy: ConditionedPolicy) -> None:
    """d3rlpy's IQL actor (encoder Linear-ReLU layers, then ``mu``; action = tanh(mu)) into ``policy.net``."""
    actor = algo.impl.modules.policy
    linears = [m for m in actor.modules() if isinstance(m, torch.nn.Linear)]
    ours = [m for m in policy.net if isinstance(m, torch.nn.Linear)]
    if len(linears) != len(ours):
        raise RuntimeError(f"d3rlpy's actor has {len(linears)} linear layers; the policy {len(ours)}")
    with torch.no_grad():
        for src, dst in zip(linears, ours):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def train_iql(cfg: OfflineConfig, policy: ConditionedPolicy, train: Transitions, val: Transitions, codes: np.ndarray,
              checkpoints: Path, on_eval, resume: bool = False) -> int:
    """d3rlpy's IQL on the same inputs; the actor is copied into ``policy`` at every evaluation."""
    try:
        import d3rlpy
    except ImportError as err:
        raise ImportError("algorithm=iql needs d3rlpy: `make install` installs it (pip install --no-deps d3rlpy==2.8.1 gym==0.26.2)") from err
    import logging

    import structlog

    # d3rlpy logs every parameter and epoch through structlog to stdout; the run's curve says what matters.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    d3rlpy.seed(cfg.seed)
    encoder = d3rlpy.models.VectorEncoderFactory(hidden_units=list(cfg.hidden), activation="relu")
    algo = d3rlpy.algos.IQLConfig(batch_size=cfg.batch_size, gamma=cfg.gamma, expectile=cfg.expectile,
                                  weight_temp=cfg.temperature, actor_encoder_factory=encoder,
                                  critic_encoder_factory=encoder, value_encoder_factory=encoder).create(device="cpu:0")
    dataset = _mdp(policy, train, codes)
    algo.build_with_dataset(dataset)
    state = checkpoints / "iql-state.d3"
    step = 0
    if resume and (checkpoints / "iql-state.json").is_file():
        algo.load_model(str(state))  # d3rlpy's state dicts, read by torch.load (weights_only by default)
        step = int(json.loads((checkpoints / "iql-state.json").read_text())["step"])
    while step < cfg.steps:
        chunk = min(cfg.eval_every, cfg.steps - step)
        losses = {}
        for _, metrics in algo.fitter(dataset, n_steps=chunk, n_steps_per_epoch=chunk, show_progress=False,
                                      save_interval=10**9, experiment_name="iql", with_timestamp=False,
                                      logger_adapter=d3rlpy.logging.NoopAdapterFactory()):
            losses = metrics
        step += chunk
        _copy_actor(algo, policy)
        on_eval(step, {"actor_loss": round(float(losses.get("actor_loss", float("nan"))), 5),
                       "v_loss": round(float(losses.get("v_loss", float("nan"))), 5), **validate(policy, val, codes)})
        atomic_write(state, lambda tmp: algo.save_model(tmp), suffix=".d3")
        write_json(checkpoints / "iql-state.json", {"step": step})
    return step


# ------------------------------------------------------------------------------------------ the run
def train_offline(cfg: OfflineConfig, run_path: Path, workspace: Path, resume: bool = False, log=print) -> dict[str, Any]:
    """Train a conditioned policy from ``cfg.dataset`` in run directory ``run_path``; returns the metrics.

    Writes ``checkpoints/policy.safetensors`` + ``.json`` (the final policy), ``curve.json``, ``tb/`` and
    ``metrics.json``.
    """
    from torch.utils.tensorboard import SummaryWriter

    from flexrl.data.embeddings import make_embedder

    torch.set_num_threads(cfg.threads)
    root = Path(cfg.root) if cfg.root else workspace / "datasets"
    start = time.perf_counter()
    data = load_transitions(root, cfg.dataset)
    train, val = split(data, cfg.val_share, cfg.seed)
    embedder = make_embedder(cfg.embedder, cache=workspace / "embeddings" / f"{cfg.embedder}.npz")
    embeddings = embedder.embed(data.texts)
    seen = np.unique(train.instructions)
    features = [name for name in NAMES if name not in cfg.drop]
    policy = ConditionedPolicy.new(Projection.fit(embeddings[seen], cfg.code_dim), cfg.hidden, cfg.embedder, cfg.seed, features)
    policy.info["embedder_id"] = embedder.name  # the exact variant: a policy never runs on other embeddings
    codes = policy.projection(embeddings)
    log(f"{len(data.actions)} steps of {len(np.unique(data.episodes))} episodes, {len(data.texts)} instructions "
        f"embedded by {cfg.embedder} in {time.perf_counter() - start:.0f} s; {cfg.algorithm} for {cfg.steps} steps")
    checkpoints = run_path / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    curve_path = run_path / "curve.json"
    curve = json.loads(curve_path.read_text()) if resume and curve_path.is_file() else []
    writer = SummaryWriter(str(run_path / "tb"))

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        wall = round(time.perf_counter() - start, 1)
        curve[:] = [p for p in curve if p["steps"] < step]
        curve.append({"steps": step, "wall_seconds": wall, "success": {"agreement": metrics["agreement"]}, "metrics": metrics})
        write_json(curve_path, curve)
        for key, value in metrics.items():
            writer.add_scalar(f"offline/{key}", value, step)
        writer.flush()
        log(f"step {step}: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))

    trainer = train_bc if cfg.algorithm == "bc" else train_iql
    steps = trainer(cfg, policy, train, val, codes, checkpoints, on_eval, resume=resume)
    writer.close()
    final = validate(policy, val, codes)
    metrics = {"algorithm": cfg.algorithm, "dataset": cfg.dataset, "embedder": cfg.embedder, "steps": steps,
               "wall_seconds": round(time.perf_counter() - start, 1), "episodes": int(len(np.unique(data.episodes))),
               "transitions": int(len(data.actions)), "instructions": len(data.texts), **final}
    policy.save(checkpoints, "policy", {"algorithm": cfg.algorithm, "dataset": cfg.dataset, "steps": steps,
                                         "run": str(run_path), "metrics": final})
    write_json(run_path / "metrics.json", metrics)
    return metrics
