"""Resumable greedy generation: a left-padded batch of prompts advanced a slice at a time.

A :class:`GenerationRun` keeps its own key/value cache between slices, so a
scheduler can interleave it with other work without changing its output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from flexrl.llm.batch_types import MAX_TOP_K, Generation

if TYPE_CHECKING:
    from flexrl.llm.batching import BatchScorer


class GenerationRun:
    """Greedy continuations of several prompts in one left-padded batch, advanced a slice at a time.

    A slice either reads the next columns of the prompts (chunked prefill, at most
    ``prefill_tokens`` tokens over all rows) or generates up to ``steps`` tokens per
    row with ``generate``. The key/value cache is kept between slices, so slicing
    changes neither the tokens nor the log-probs (beyond float rounding). Rows
    that are done (end of text, token limit, or :meth:`drop`) leave the batch.

    Args:
        scorer: the model; the run must be advanced on the scorer's thread.
        prompts: token ids of each prompt (at least one token each).
        max_new_tokens: token limit of each prompt's continuation.
        top_k: most likely alternatives returned per generated token.
    """

    def __init__(self, scorer: BatchScorer, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int], top_k: int = 0) -> None:
        if not 0 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k={top_k}; allowed: 0 to {MAX_TOP_K}")
        if any(not p for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self._model, tokenizer, device = scorer.model, scorer.tokenizer, scorer.device
        self._eos = tokenizer.eos_token_id
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self._eos
        self._top_k = top_k
        self._limits = list(max_new_tokens)
        self._out = [Generation([], [], [], False) for _ in prompts]
        self._rows = [i for i, limit in enumerate(self._limits) if limit > 0]
        width = max((len(prompts[i]) for i in self._rows), default=0)
        ids = torch.full((len(self._rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, i in enumerate(self._rows):
            ids[b, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[b, width - len(prompts[i]) :] = 1
        self._ids, self._mask = ids.to(device), mask.to(device)
        self._cache = scorer.new_cache()
        self._fed = 0  # columns of ``_ids`` whose keys and values are in the cache

    @property
    def done(self) -> bool:
        """Whether every row has finished."""
        return not self._rows

    def results(self) -> list[Generation]:
        """Each prompt's continuation so far."""
        return list(self._out)

    @torch.inference_mode()
    def advance(self, prefill_tokens: int | None, steps: int | None) -> dict[int, Generation]:
        """Run one slice; returns the new tokens of each row that generated (a prefill slice returns none).

        Args:
            prefill_tokens: most tokens (over all rows) one slice feeds: prompt tokens read, or
                generated tokens (at least one per row); None: no limit.
            steps: most tokens generated per row in this slice; None: up to every row's limit.
        """
        if not self._rows:
            return {}
        rows = len(self._rows)
        columns = self._ids.shape[1] - 1 - self._fed
        chunk = columns if prefill_tokens is None else max(1, prefill_tokens // rows)
        if prefill_tokens is not None and steps is not None:
            steps = max(1, min(steps, prefill_tokens // rows))
        if columns > chunk:
            end = self._fed + chunk
            positions = (self._mask[:, :end].cumsum(-1) - 1).clamp(min=0)
            self._model(input_ids=self._ids[:, self._fed : end], attention_mask=self._mask[:, :end],
                        position_ids=positions[:, self._fed :], cache=self._cache, use_cache=True, logits_to_keep=1)
            self._fed = end
            return {}
        left = max(self._limits[i] - len(self._out[i].tokens) for i in self._rows)
        width = self._ids.shape[1]
        out = self._model.generate(
            input_ids=self._ids, attention_mask=self._mask, cache=self._cache,
            max_new_tokens=left if steps is None else min(steps, left),
            do_sample=False, pad_token_id=self._pad, output_logits=True, return_dict_in_generate=True,
        )
        new_ids = out.sequences[:, width:]
        logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # [rows, steps, vocab]
        deltas, keep = {}, []
        for b, i in enumerate(self._rows):
            so_far = self._out[i]
            new = new_ids[b].tolist()[: self._limits[i] - len(so_far.tokens)]
            stopped = self._eos in new
            new = new[: new.index(self._eos)] if stopped else new
            lps = logprobs[b, torch.arange(len(new)), torch.tensor(new, dtype=torch.long)].tolist()
            tops: list[list[tuple[int, float]]] = [[] for _ in new]
            if self._top_k and new:
                top_lp, top_ids = logprobs[b, : len(new)].topk(self._top_k, dim=-1)
                tops = [list(zip(t, v)) for t, v in zip(top_ids.tolist(), top_lp.tolist())]
            deltas[i] = Generation(new, lps, tops, stopped)
            self._out[i] = Generation(so_far.tokens + new, so_far.logprobs + lps, so_far.top + tops, stopped)
            if not stopped and len(self._out[i].tokens) < self._limits[i]:
                keep.append(b)
        self._ids, self._cache = out.sequences, out.cache
        self._mask = torch.cat([self._mask, torch.ones_like(new_ids)], dim=1)
        self._fed = self._ids.shape[1] - 1
        self._keep(keep)
        return deltas

    def drop(self, rows: Sequence[int]) -> None:
        """Stop generating for ``rows`` (prompt indices); their results stay as they are."""
        dropped = set(rows)
        self._keep([b for b, i in enumerate(self._rows) if i not in dropped])

    def _keep(self, batch_rows: list[int]) -> None:
        if len(batch_rows) == len(self._rows):
            return
        self._rows = [self._rows[b] for b in batch_rows]
        if not batch_rows:
            return
        index = torch.tensor(batch_rows, device=self._ids.device)
        self._ids, self._mask = self._ids[index], self._mask[index]
        if self._fed:
            self._cache.batch_select_indices(index)
