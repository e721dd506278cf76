"""The student planner being distilled: the embedded LM with a LoRA adapter (peft), trained on menu prompts.

Training reads exactly what the planner reads at run time: the menu prompt's tokens (the cached prefix and
"Answer:" tokenised apart, as the scoring backend does) and the answer letter. The loss is cross-entropy
over the candidates' letters at the last prompt position, the choice the planner makes by taking the
best-scored letter. Every prompt starts with the same menu of calls, so each batch runs the menu once
and shares its keys and values across the batch, computed without gradients (the menu's own tokens are not
trained through, which saves their backward pass): the menu is about 85% of an example's tokens.

CPU recipe (measured here, docs/distill.md): two torch threads, float32. bf16 autocast (fp32 master
weights) is a setting; this machine's CPU has no bf16 instructions and it was 6x slower than float32.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import DynamicCache

from flexrl.llm.adapters import CARD, CARD_FORMAT
from flexrl.planners.menu_prompt import FORMAT, MenuPrompt, labels
from flexrl.runs.atomic import write_json
from flexrl.runs.config import check_count
from flexrl.skills.library import SkillCall


@dataclass
class LoraConfig:
    """The adapter and its optimiser.

    Attributes:
        rank: LoRA rank on every linear layer of the transformer body.
        alpha: LoRA scaling numerator (the update is scaled by alpha / rank).
        dropout: LoRA dropout.
        learning_rate: AdamW peak step size (linear warm-up, then cosine decay over each round).
        warmup: warm-up steps per round.
        batch_size: examples per step.
        threads: torch threads while training.
        bf16: bf16 autocast on CPU (fp32 master weights): faster only on CPUs with bf16 instructions.
        seed: seed of initialisation and batch order.
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    learning_rate: float = 1e-3
    warmup: int = 20
    batch_size: int = 16
    threads: int = 2
    bf16: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rank", "alpha", "batch_size", "threads"):
            check_count(f"distill.lora.{name}", getattr(self, name))
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            raise ValueError(f"distill.lora.learning_rate={self.learning_rate!r}; allowed: a number in (0, 1)")
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise ValueError(f"distill.lora.dropout={self.dropout!r}; allowed: a number in [0, 1)")
        check_count("distill.lora.warmup", self.warmup, minimum=0)


@dataclass(frozen=True)
class Encoded:
    """One prompt as token ids: the shared menu's length and the rest, and the answer's index."""

    ids: tuple[int, ...]
    answer: int


class Student:
    """The base LM with a trainable LoRA adapter.

    Args:
        backend: a loaded :class:`~flexrl.llm.transformers_backend.TransformersBackend` with float32 weights
            (``cpu_weights="float32"``): its model is adapted in place.
        config: adapter and optimiser settings.
        candidates: the calls of the menu, in order (every arena has the same ones).
    """

    def __init__(self, backend, config: LoraConfig, candidates: Sequence[SkillCall]) -> None:
        from peft import LoraConfig as PeftLora
        from peft import get_peft_model

        torch.manual_seed(config.seed)
        torch.set_num_threads(config.threads)
        self.config, self.candidates = config, tuple(candidates)
        self.encode = backend.encode
        base = backend.model
        base.set_attn_implementation("sdpa")
        self.base_model_name = backend.name
        peft_config = PeftLora(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                               target_modules="all-linear", task_type="CAUSAL_LM")
        self.model = get_peft_model(base, peft_config)
        self.body = self.model.get_base_model().model  # the transformer, LoRA layers inside
        head = self.model.get_base_model().lm_head.weight
        self.marks = labels(len(self.candidates))
        ids = [self.encode(m) for m in self.marks]
        if any(len(i) != 1 for i in ids):
            raise ValueError(f"answer labels must be single tokens; got {[m for m, i in zip(self.marks, ids) if len(i) != 1]}")
        self.label_ids = torch.tensor([i[0] for i in ids])
        self.head = head  # tied to the embeddings; frozen
        self.menu: tuple[int, ...] | None = None
        self._menu_cache: tuple[tuple[int, bool], list] | None = None
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                           lr=config.learning_rate, weight_decay=0.0)
        self.step = 0

    # ------------------------------------------------------------------ encoding
    def encode_prompt(self, prompt: MenuPrompt, answer: str | None = None) -> Encoded:
        """Token ids as the scoring backend feeds them (the cached prefix, then the rest), and the answer's index."""
        ids = tuple(self.encode(prompt.cache_prefix)) + tuple(self.encode(prompt.text[len(prompt.cache_prefix):]))
        if self.menu is None:
            menu_text = prompt.cache_prefix[: prompt.cache_prefix.index("\n") + 1]
            self.menu = tuple(self.encode(menu_text))
        index = [str(c) for c in self.candidates].index(answer) if answer is not None else -1
        return Encoded(ids, index)

    def _shared(self, batch: Sequence[Encoded]) -> int:
        """How many leading tokens every prompt of the batch shares with the menu (0: no sharing)."""
        n = len(self.menu or ())
        return n if n and all(e.ids[:n] == self.menu for e in batch) else 0

    def _scores(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """Logits of the candidates' letters after each prompt, ``[batch, candidates]``."""
        shared = self._shared(batch)
        past = None
        if shared:
            kv = [(k.expand(len(batch), -1, -1, -1), v.expand(len(batch), -1, -1, -1)) for k, v in self._menu_kv()]
            past = DynamicCache(ddp_cache_data=kv, config=self.model.get_base_model().config)
        tails = [e.ids[shared:] for e in batch]
        width = max(len(t) for t in tails)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), shared + width, dtype=torch.long)
        mask[:, :shared] = 1
        for i, t in enumerate(tails):
            ids[i, : len(t)] = torch.tensor(t)
            mask[i, shared : shared + len(t)] = 1
        positions = torch.arange(shared, shared + width)[None].expand(len(batch), -1)
        hidden = self.body(input_ids=ids, attention_mask=mask, position_ids=positions, cache=past,
                           use_cache=past is not None).last_hidden_state
        last = hidden[torch.arange(len(batch)), torch.tensor([len(t) - 1 for t in tails])]
        return last.float() @ self.head[self.label_ids].float().T

    def _menu_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The menu's keys and values under the current weights (no gradients), computed once per step."""
        key = (self.step, self.model.training)
        if self._menu_cache is None or self._menu_cache[0] != key:
            cache = DynamicCache(config=self.model.get_base_model().config)
            with torch.no_grad():
                self.body(input_ids=torch.tensor([self.menu]), cache=cache, use_cache=True)
            self._menu_cache = (key, [(layer.keys, layer.values) for layer in cache.layers])
        return self._menu_cache[1]

    # ------------------------------------------------------------------ training
    def train_step(self, batch: Sequence[Encoded], lr: float) -> tuple[float, float]:
        """One optimiser step; returns (loss, accuracy) of the batch."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
            logits = self._scores(batch)
        target = torch.tensor([e.answer for e in batch])
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], 1.0)
        self.optimizer.step()
        self.step += 1
        return loss.item(), (logits.argmax(-1) == target).float().mean().item()

    @torch.no_grad()
    def predict(self, batch: Sequence[Encoded], chunk: int = 32) -> list[int]:
        """The index of the best-scored candidate for each prompt."""
        self.model.eval()
        out: list[int] = []
        for start in range(0, len(batch), chunk):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.bf16):
                out += self._scores(batch[start : start + chunk]).argmax(-1).tolist()
        return out

    def schedule(self, step_in_round: int, round_steps: int) -> float:
        """Learning rate: linear warm-up, then cosine decay to a tenth over the round."""
        peak = self.config.learning_rate
        if step_in_round < self.config.warmup:
            return peak * (step_in_round + 1) / self.config.warmup
        progress = (step_in_round - self.config.warmup) / max(1, round_steps - self.config.warmup)
        return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    # ------------------------------------------------------------------ state
    def adapter_tensors(self) -> dict[str, torch.Tensor]:
        """The trainable (LoRA) tensors by name."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def save_checkpoint(self, directory: Path, extra: dict) -> None:
        """Adapter, optimiser and position, written to a temporary directory and renamed into place."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(self.adapter_tensors(), str(tmp / "adapter.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        write_json(tmp / "state.json", {"step": self.step, **extra})
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, directory: Path) -> dict:
        """Restore what :meth:`save_checkpoint` wrote; returns its ``state.json``."""
        tensors = load_file(str(directory / "adapter.safetensors"))
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in tensors.items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
        state = json.loads((directory / "state.json").read_text())
        self.step = int(state["step"])
        return state

    def export(self, directory: Path, card: dict) -> Path:
        """Write the adapter in peft's format, weights in float16, with flexrl's card (atomically)."""
        tmp = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(str(tmp), safe_serialization=True)
        weights = tmp / "adapter_model.safetensors"
        save_file({k: v.half().contiguous() for k, v in load_file(str(weights)).items()}, str(weights))
        for extra in tmp.iterdir():
            if extra.name not in ("adapter_config.json", "adapter_model.safetensors"):
                extra.unlink() if extra.is_file() else shutil.rmtree(extra)
        write_json(tmp / CARD, {"format": CARD_FORMAT, "prompt": FORMAT, "base_model": self.base_model_name,
                                "lora": asdict(self.config), "candidates": [str(c) for c in self.candidates],
                                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **card})
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
        return directory


def batches(n: int, size: int, rng: np.random.Generator, lengths: Sequence[int] | None = None):
    """Endless shuffled index batches over ``n`` items (drawn with replacement when ``n < size``).

    With ``lengths``, each batch holds items of similar length (sorted with random tie-breaking, cut into
    batches, batches shuffled): padding to the longest prompt of a batch cost about 40% of a step's tokens.
    """
    if n == 0:
        raise ValueError("no examples to train on")
    while True:
        if n < size:
            yield rng.choice(n, size)
            continue
        if lengths is None:
            order = rng.permutation(n)
        else:
            order = np.lexsort((rng.random(n), np.asarray(lengths)))
        chunks = [order[start : start + size] for start in range(0, n - size + 1, size)]
        for i in rng.permutation(len(chunks)):
            yield chunks[i]
