"""``flexrl distill``: data from the simulator, DAgger rounds and LoRA training, in one resumable run directory.

Stages, each timed and recorded in ``pipeline.json`` as it completes:

1. ``data``: grammar instructions x sampled progress states, labelled by the oracle (``data/round0``).
2. ``train-0``: LoRA on the round-0 training split.
3. per DAgger round r: ``dagger-r`` (the student drives generated episodes with the real skills; the oracle
   labels every state it visits: ``data/dagger-r``, and the student's agreement with the oracle is the
   round's figure), then ``train-r`` on everything gathered so far (half of each batch from the new round).
4. ``export``: the adapter (peft format, float16) with its card, in ``<run>/adapter`` (and ``export=DIR``).

A kill loses at most ``checkpoint_every`` steps: the adapter, optimiser and position are checkpointed
atomically (``checkpoint/``), and ``flexrl distill resume=<run>`` skips finished stages and continues the
one in progress. Curves: TensorBoard (``<run>/tb``), ``curve.json`` and MLflow with ``tracking=mlflow``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from flexrl.distill.data import Example, arena_calls, generate, read_split, write_dataset
from flexrl.distill.student import LoraConfig, Student, batches
from flexrl.runs.atomic import write_json
from flexrl.runs.config import ExperimentConfig, TrackingConfig, check_count
from flexrl.runs.run_dir import RunDir

PIPELINE = "pipeline.json"


@dataclass
class DistillConfig:
    """``flexrl distill``: every setting of the pipeline.

    Attributes:
        examples: grammar examples in round 0 (about 5% validation; held-out templates apart).
        rounds: DAgger rounds after the first training.
        episodes: generated episodes the student drives per DAgger round.
        first_steps: optimiser steps of the first training.
        round_steps: optimiser steps after each DAgger round.
        checkpoint_every: steps between checkpoints.
        eval_examples: validation and held-out examples scored after each training stage (at most).
        n_envs: episodes stepped together in DAgger rounds.
        base_model: the model adapted (None: the embedded SmolLM2-135M-Instruct).
        export: also write the final adapter here (e.g. ``src/flexrl/planners/adapter`` to ship it).
        lora: adapter and optimiser settings.
        experiment: name, workspace, seed.
        tracking: MLflow on or off (TensorBoard and curve.json always).
        resume: a distill run directory to continue.
    """

    examples: int = 6000
    rounds: int = 2
    episodes: int = 128
    first_steps: int = 420
    round_steps: int = 120
    checkpoint_every: int = 20
    eval_examples: int = 200
    n_envs: int = 16
    base_model: Optional[str] = None
    export: Optional[str] = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    experiment: ExperimentConfig = field(default_factory=lambda: ExperimentConfig(name="distill"))
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    resume: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("examples", "episodes", "first_steps", "checkpoint_every", "eval_examples", "n_envs"):
            check_count(name, getattr(self, name))
        for name in ("rounds", "round_steps"):
            check_count(name, getattr(self, name), minimum=0)


class Pipeline:
    """Runs the stages of one distill run directory (fresh or resumed)."""

    def __init__(self, cfg: DistillConfig, run: RunDir, say: Callable[[str], None] = print) -> None:
        self.cfg, self.run, self.say = cfg, run, say
        self.state = json.loads((run.path / PIPELINE).read_text()) if (run.path / PIPELINE).is_file() else {"stages": {}}
        self.candidates = arena_calls()
        self.student: Student | None = None
        self.writer = None
        self.tracker = None

    # ------------------------------------------------------------------ plumbing
    def _done(self, stage: str) -> bool:
        return stage in self.state["stages"]

    def _finish(self, stage: str, seconds: float, **figures) -> None:
        self.state["stages"][stage] = {"seconds": round(seconds, 1), **figures}
        write_json(self.run.path / PIPELINE, self.state)
        shown = ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, dict))
        self.say(f"[{stage}] {seconds / 60:.1f} min" + (f": {shown}" if shown else ""))

    def _student(self) -> Student:
        if self.student is None:
            from flexrl.llm.transformers_backend import TransformersBackend

            backend = TransformersBackend(self.cfg.base_model, cpu_weights="float32", threads=self.cfg.lora.threads)
            self.student = Student(backend, self.cfg.lora, self.candidates)
            checkpoint = self.run.path / "checkpoint"
            if checkpoint.is_dir():
                self.student.load_checkpoint(checkpoint)
            from torch.utils.tensorboard import SummaryWriter

            from flexrl.runs.tracking import Tracker

            self.writer = SummaryWriter(str(self.run.path / "tb"))
            params = {k: v for k, v in asdict(self.cfg).items() if not isinstance(v, dict)}
            params.update({f"lora.{k}": v for k, v in asdict(self.cfg.lora).items()})
            self.tracker = Tracker(self.run, self.cfg.tracking, self.cfg.experiment.workspace, params)
        return self.student

    def _encode(self, examples: list[Example]):
        student = self._student()
        return [student.encode_prompt(e.prompt(self.candidates), e.label) for e in examples]

    # ------------------------------------------------------------------ stages
    def data(self) -> None:
        if self._done("data"):
            return
        start = time.perf_counter()
        examples = generate(self.cfg.examples, self.cfg.experiment.seed)
        sheet = write_dataset(self.run.path / "data" / "round0", examples,
                              {"command": "flexrl distill", "seed": self.cfg.experiment.seed, "examples": self.cfg.examples})
        self._finish("data", time.perf_counter() - start, examples=sheet["examples"], splits=sheet["splits"])

    def train(self, stage: str, new: list[Example], old: list[Example], steps: int) -> None:
        """``steps`` optimiser steps; with ``old`` examples, half of each batch comes from them."""
        if self._done(stage) or steps == 0:
            return
        student = self._student()
        state = self._checkpoint_state()
        first = state.get("stage_step", 0) if state.get("stage") == stage else 0
        size = self.cfg.lora.batch_size
        rng = np.random.default_rng([self.cfg.experiment.seed, len(self.state["stages"]), 7])
        enc_new, enc_old = self._encode(new), self._encode(old)
        new_size = size if not old else size // 2
        it_new = batches(len(enc_new), new_size, rng, [len(e.ids) for e in enc_new])
        it_old = batches(len(enc_old), size - new_size, rng, [len(e.ids) for e in enc_old]) if old else None
        for _ in range(first):  # the batches already trained on, before a kill
            next(it_new)
            if it_old is not None:
                next(it_old)
        start = time.perf_counter() - state.get("stage_seconds", 0.0) if first else time.perf_counter()
        self.say(f"[{stage}] {steps} steps of {size} ({len(enc_new)} new, {len(enc_old)} earlier examples)"
                 + (f", resuming at step {first}" if first else ""))
        for k in range(first, steps):
            batch = [enc_new[i] for i in next(it_new)] + ([enc_old[i] for i in next(it_old)] if it_old else [])
            lr = student.schedule(k, steps)
            loss, acc = student.train_step(batch, lr)
            self.writer.add_scalar("train/loss", loss, student.step)
            self.writer.add_scalar("train/batch_accuracy", acc, student.step)
            self.writer.add_scalar("train/learning_rate", lr, student.step)
            if (k + 1) % self.cfg.checkpoint_every == 0 or k + 1 == steps:
                student.save_checkpoint(self.run.path / "checkpoint", {"stage": stage, "stage_step": k + 1,
                                                                       "stage_seconds": time.perf_counter() - start})
                self.say(f"[{stage}] step {k + 1}/{steps}: loss {loss:.3f}, batch accuracy {acc:.0%}, "
                         f"{(time.perf_counter() - start) / (k + 1 - first):.1f} s/step")
        figures = self.evaluate(stage)
        self._finish(stage, time.perf_counter() - start, steps=steps, **figures)

    def evaluate(self, stage: str) -> dict:
        """The student's agreement with the oracle on validation and held-out-template examples."""
        student = self._student()
        out = {}
        for split in ("val", "held_out"):
            examples = read_split(self.run.path / "data" / "round0", split)[: self.cfg.eval_examples]
            if not examples:
                continue
            picks = student.predict(self._encode(examples))
            right = [str(self.candidates[p]) == e.label for p, e in zip(picks, examples)]
            out[f"{split}_agreement"] = round(float(np.mean(right)), 4)
            per_kind: dict[str, list[bool]] = {}
            for e, ok in zip(examples, right):
                per_kind.setdefault(e.kind, []).append(ok)
            out[f"{split}_by_kind"] = {k: round(float(np.mean(v)), 3) for k, v in sorted(per_kind.items())}
            self.writer.add_scalar(f"eval/{split}_agreement", out[f"{split}_agreement"], student.step)
        self.tracker.log(student.step, 0.0, {k: v for k, v in out.items() if not isinstance(v, dict)})
        return out

    def dagger(self, r: int) -> list[Example]:
        stage = f"dagger-{r}"
        directory = self.run.path / "data" / stage
        if not self._done(stage):
            from flexrl.distill.dagger import run_round
            from flexrl.skills.policies import PolicySet

            start = time.perf_counter()
            examples, figures = run_round(self._student(), PolicySet.load(), self.cfg.episodes,
                                          self.cfg.experiment.seed * 1000 + r, stage, n_envs=self.cfg.n_envs)
            write_dataset(directory, examples, {"command": "flexrl distill", "round": r, **figures})
            self.writer.add_scalar("dagger/agreement", figures["agreement"] or 0.0, r)
            self._finish(stage, time.perf_counter() - start, **figures)
        return read_split(directory, "train")

    def export(self) -> Path:
        target = self.run.path / "adapter"
        if not self._done("export"):
            start = time.perf_counter()
            stages = self.state["stages"]
            card = {"data": {k: v for k, v in stages.items() if k == "data" or k.startswith("dagger")},
                    "metrics": {k: v for k, v in stages.items() if k.startswith("train")},
                    "run": self.run.meta.get("id"), "pipeline_minutes": round(sum(s["seconds"] for s in stages.values()) / 60, 1)}
            self._student().export(target, card)
            self._finish("export", time.perf_counter() - start, adapter=str(target))
        if self.cfg.export:
            out = Path(self.cfg.export)
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(target, tmp)
            if out.exists():
                shutil.rmtree(out)
            tmp.rename(out)
            self.say(f"adapter copied to {out}")
        return target

    def _checkpoint_state(self) -> dict:
        path = self.run.path / "checkpoint" / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # ------------------------------------------------------------------ all
    def run_all(self) -> dict:
        """Every stage in order; returns the pipeline state (stage figures and seconds)."""
        self.data()
        round0 = read_split(self.run.path / "data" / "round0", "train")
        self.train("train-0", round0, [], self.cfg.first_steps)
        gathered = list(round0)
        for r in range(1, self.cfg.rounds + 1):
            new = self.dagger(r)
            self.train(f"train-{r}", new, gathered, self.cfg.round_steps)
            gathered += new
        self.export()
        total = sum(s["seconds"] for s in self.state["stages"].values())
        self.state["total_minutes"] = round(total / 60, 1)
        write_json(self.run.path / PIPELINE, self.state)
        if self.writer is not None:
            self.writer.close()
        if self.tracker is not None:
            self.tracker.close("finished", {"total_minutes": self.state["total_minutes"]})
        return self.state
