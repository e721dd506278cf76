"""Many scoring and generation requests in shared forward passes of one transformers model.

Each scoring request becomes one row of a batched pass, laid out as in
:meth:`TransformersBackend.score_options`: the tokens after the longest cached
prefix, then the continuations as a token trie (tree attention mask, explicit
positions). Rows are right-padded and each sees only its own cached prefix, so
requests with different prompts share a pass without attending to each other.

Prefix caching is automatic: after each request the key/values of its prompt
are kept (least recently used, within a token budget), and a later prompt
reuses the longest common prefix with any kept one, e.g. a system message
shared by many agents. On one CPU thread a pass costs about the same per token
at any batch size (the matrix products are compute-bound), so there batching
saves per-request overhead rather than arithmetic; on a GPU a pass of many rows
costs little more than a pass of one.

The :class:`MicroBatcher` moves every job on a slice at a time (a long prompt is
read in chunks through the prefix cache; a :class:`GenerationRun` keeps its own
key/value cache between slices), so a big request does not hold the model while
small ones wait.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from flexrl.llm.base import OptionScore, common_prefix_length
from flexrl.llm.transformers_backend import TransformersBackend, _cache_over, _chunked_linear

logger = logging.getLogger(__name__)

MAX_TOP_K = 5
"""Most alternatives returned per position (the OpenAI completions limit)."""
# A prefix shared within a batch is computed once, in a pass of its own, when it is at least this
# much longer than what the cache already holds (a pass costs ~10 ms of fixed overhead).
_MIN_SHARED_TOKENS = 16


@dataclass(frozen=True)
class ScoreRequest:
    """One option-scoring query, as the arguments of :meth:`LLMBackend.score_options`."""

    prompt: str
    options: tuple[str, ...]
    cache_prefix: str | None = None


@dataclass(frozen=True)
class SequenceGroup:
    """Token sequences that share their first ``prompt_len`` tokens; scored in one row of a pass.

    Attributes:
        sequences: token ids of each sequence (the prompt, then a continuation).
        prompt_len: leading tokens common to every sequence, fewer than the shortest
            sequence's length; log-probs are returned from this position on.
        all_positions: return the log-prob of every token, prompt included (echo);
            needs a scorer built with ``prompt_logprobs=True``.
        top_k: most likely alternatives returned at each returned position.
    """

    sequences: tuple[tuple[int, ...], ...]
    prompt_len: int
    all_positions: bool = False
    top_k: int = 0

    @classmethod
    def sharing(cls, sequences: Sequence[Sequence[int]], all_positions: bool = False, top_k: int = 0) -> SequenceGroup:
        """Group ``sequences`` with their longest common prefix as the prompt (at least one token left each)."""
        seqs = tuple(tuple(s) for s in sequences)
        if not seqs or min(map(len, seqs)) < 1:
            raise ValueError("every sequence needs at least one token")
        common = min(common_prefix_length(seqs[0], s) for s in seqs)
        return cls(seqs, min(common, min(map(len, seqs)) - 1), all_positions, top_k)

    def __post_init__(self) -> None:
        if not self.sequences or not 0 <= self.prompt_len < min(map(len, self.sequences)):
            raise ValueError("prompt_len must be below every sequence's length")
        if not 0 <= self.top_k <= MAX_TOP_K:
            raise ValueError(f"top_k={self.top_k}; allowed: 0 to {MAX_TOP_K}")


@dataclass(frozen=True)
class TokenLogprobs:
    """Per-token results for one sequence.

    Attributes:
        logprobs: log-prob of each token given the tokens before it; ``None`` for
            the first token and, without ``all_positions``, for prompt tokens.
        top: per token, the ``top_k`` most likely (token id, log-prob) pairs at that
            position; empty where ``logprobs`` is ``None``.
    """

    logprobs: list[float | None]
    top: list[list[tuple[int, float]]]


@dataclass(frozen=True)
class Generation:
    """A greedy continuation.

    Attributes:
        tokens: generated token ids, without the end-of-sequence token.
        logprobs: log-prob of each generated token.
        top: per generated token, the ``top_k`` most likely (token id, log-prob) pairs.
        stopped: whether the model ended the text (else the token limit did).
    """

    tokens: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]]
    stopped: bool


@dataclass
class _Entry:
    """A cached prompt: its key/values per layer ([1, heads, len, dim]) and, optionally, per-token log-probs."""

    tokens: tuple[int, ...]
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    logprobs: list[float | None] | None
    top: list[list[tuple[int, float]]] | None


@dataclass
class _Row:
    """One group laid out for a pass: ``reused`` cached tokens, then trie nodes (proper prefixes of the rest)."""

    group: SequenceGroup
    entry: _Entry | None
    reused: int
    nodes: dict[tuple[int, ...], int] = field(default_factory=dict)
    parents: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    logprobs: torch.Tensor | None = None


class BatchScorer:
    """Scores groups of sequences, and generates, in batched passes of a :class:`TransformersBackend`'s model.

    Not thread-safe: use it from one thread (see :class:`MicroBatcher`).

    Args:
        backend: the loaded model and tokenizer.
        prompt_logprobs: keep per-token log-probs of cached prompts, so that groups with
            ``all_positions`` (echo) can reuse them; costs the output layer at every prompt token.
        cache_tokens: token budget of the prefix cache (~45 KB per token for SmolLM2-135M).
        max_pass_tokens: rows are packed into one pass up to this many new tokens.

    Attributes:
        fed_tokens: tokens run through the model so far (cached prefixes are not fed again).
        tokenizer: the backend's tokenizer.
        context_tokens: the model's context length (its ``max_position_embeddings``).
    """

    def __init__(
        self,
        backend: TransformersBackend,
        prompt_logprobs: bool = False,
        cache_tokens: int = 4096,
        max_pass_tokens: int = 2048,
    ) -> None:
        self.backend = backend
        self.prompt_logprobs = prompt_logprobs
        self.max_pass_tokens = max_pass_tokens
        self._model, self._tokenizer = backend._model, backend._tokenizer
        self._device = backend._device
        self.tokenizer = backend._tokenizer
        self.context_tokens = int(getattr(self._model.config, "max_position_embeddings", 2048))
        self._cache: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._cache_tokens = cache_tokens
        self.fed_tokens = 0

    # ------------------------------------------------------------------------------ scoring
    def score_requests(self, requests: Sequence[ScoreRequest]) -> list[list[OptionScore]]:
        """Score every request's options, as :meth:`TransformersBackend.score_options` would, in shared passes.

        The prompt is tokenised in the same pieces (``cache_prefix``, the rest, each
        option) so the token ids, and hence the scores up to float rounding, match.

        Raises:
            ValueError: A prompt is empty or an option has no tokens.
        """
        groups, spans = [], []
        for req in requests:
            options = [self._encode(o) for o in req.options]
            if any(not ids for ids in options):
                raise ValueError("every option must contain at least one token")
            if req.cache_prefix and req.prompt.startswith(req.cache_prefix):
                prompt = self._encode(req.cache_prefix) + self._encode(req.prompt[len(req.cache_prefix) :])
            else:
                prompt = self._encode(req.prompt)
            if not prompt:
                raise ValueError("prompt must not be empty")
            spans.append((len(prompt), [len(o) for o in options]))
            if options:
                groups.append(SequenceGroup(tuple(tuple(prompt + o) for o in options), len(prompt)))
        results = iter(self.score_groups(groups))
        scores = []
        for prompt_len, lengths in spans:
            per_seq = next(results) if lengths else []
            scores.append([OptionScore(math.fsum(r.logprobs[prompt_len:]), n) for r, n in zip(per_seq, lengths)])
        return scores

    @torch.inference_mode()
    def score_groups(self, groups: Sequence[SequenceGroup]) -> list[list[TokenLogprobs]]:
        """Per-token log-probs of every group's sequences, packed into as few passes as fit ``max_pass_tokens``."""
        if any(g.all_positions for g in groups) and not self.prompt_logprobs:
            raise ValueError("all_positions needs a BatchScorer built with prompt_logprobs=True")
        self._prime(groups)
        rows = [self._layout(g) for g in groups]
        results: list[list[TokenLogprobs] | None] = [None] * len(rows)
        chunk: list[int] = []
        for index in sorted(range(len(rows)), key=lambda i: len(rows[i].nodes)):
            if chunk and sum(len(rows[i].nodes) for i in chunk) + len(rows[index].nodes) > self.max_pass_tokens:
                self._run(rows, chunk, results)
                chunk = []
            chunk.append(index)
        if chunk:
            self._run(rows, chunk, results)
        return results

    def _prime(self, groups: Sequence[SequenceGroup]) -> None:
        """Cache the prompt prefixes that groups share and the cache lacks, so that rows do not each recompute them."""
        prompts = [g.sequences[0][: g.prompt_len] for g in groups]
        shared = set()
        for i, prompt in enumerate(prompts):
            within = max((common_prefix_length(prompt, q) for j, q in enumerate(prompts) if j != i), default=0)
            if within - self._lookup(prompt, touch=False)[1] >= _MIN_SHARED_TOKENS:
                shared.add(prompt[:within])
        # Keep the longest of nested prefixes; shorter shared parts are primed by the recursion.
        longest = [p for p in shared if not any(q != p and q[: len(p)] == p for q in shared)]
        if longest:
            self.score_groups([SequenceGroup((p,), len(p) - 1) for p in longest])

    def _layout(self, group: SequenceGroup) -> _Row:
        entry, common = self._lookup(group.sequences[0][: group.prompt_len])
        # The cache has no output distribution at the end of the common part, so the last common
        # token is fed again: its output predicts the first differing token.
        reused = max(0, min(common, group.prompt_len) - 1)
        row = _Row(group, entry if reused else None, reused)
        for seq in group.sequences:
            for end in range(reused + 1, len(seq)):
                key = seq[reused:end]
                if key not in row.nodes:
                    row.nodes[key] = len(row.nodes)
                    row.parents.append(row.nodes[key[:-1]] if len(key) > 1 else -1)
        # A node at depth d sits at position reused + d - 1 and predicts the token after it.
        first_needed = 0 if self.prompt_logprobs else group.prompt_len - 1
        row.kept = [i for key, i in row.nodes.items() if reused + len(key) - 1 >= first_needed]
        return row

    def _run(self, rows: list[_Row], chunk: list[int], results: list) -> None:
        batch = [rows[i] for i in chunk if rows[i].nodes]
        if batch:
            self.fed_tokens += sum(len(row.nodes) for row in batch)
            hidden, cache, past = self._forward(batch)
            weight = self._model.lm_head.weight if self.backend._plain_lm_head else None
            for b, row in enumerate(batch):
                kept = torch.tensor(row.kept, device=self._device)
                logits = _chunked_linear(hidden[b, kept], weight) if weight is not None else hidden[b, kept]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                self._remember(row, logprobs, [(layer.keys[b], layer.values[b]) for layer in cache.layers], past)
                row.logprobs = logprobs
        for i in chunk:
            results[i] = self._collect(rows[i])
            rows[i].logprobs = None

    def _forward(self, rows: list[_Row]):
        """One right-padded pass over ``rows``; returns hidden states (or logits), the cache and the padded past length."""
        past = max(r.reused for r in rows)
        width = max(len(r.nodes) for r in rows)
        dtype = self._model.dtype
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        positions = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.full((len(rows), 1, width, past + width), float("-inf"), dtype=dtype)
        for b, row in enumerate(rows):
            n = len(row.nodes)
            tree = torch.zeros(n, n, dtype=torch.bool)
            for key, i in row.nodes.items():
                tokens[b, i] = key[-1]
                positions[b, i] = row.reused + len(key) - 1
                if row.parents[i] >= 0:
                    tree[i] = tree[row.parents[i]]
                tree[i, i] = True
            mask[b, 0, :n, : row.reused] = 0.0
            mask[b, 0, :n, past : past + n].masked_fill_(tree, 0.0)
            # Padding rows attend to themselves only: a fully masked row would give NaN states.
            pad = torch.arange(n, width)
            mask[b, 0, pad, past + pad] = 0.0
        kv = None
        if past:
            kv = []
            template = next(r.entry for r in rows if r.reused)
            for layer, (keys, values) in enumerate(template.kv):
                k = keys.new_zeros(len(rows), keys.shape[1], past, keys.shape[3])
                v = values.new_zeros(len(rows), values.shape[1], past, values.shape[3])
                for b, row in enumerate(rows):
                    if row.reused:
                        k[b, :, : row.reused] = row.entry.kv[layer][0][0, :, : row.reused]
                        v[b, :, : row.reused] = row.entry.kv[layer][1][0, :, : row.reused]
                kv.append((k, v))
        cache = _cache_over(kv, self._model.config)
        inputs = dict(
            input_ids=tokens.to(self._device),
            position_ids=positions.to(self._device),
            attention_mask=mask.to(self._device),
            cache=cache,
            use_cache=True,
        )
        if self.backend._plain_lm_head:
            return self._model.model(**inputs).last_hidden_state, cache, past
        return self._model(**inputs).logits, cache, past

    def _collect(self, row: _Row) -> list[TokenLogprobs]:
        group, entry = row.group, row.entry
        kept_row = {node: k for k, node in enumerate(row.kept)}
        first = 0 if group.all_positions else group.prompt_len
        # Gather every (kept row, target token) pair at once.
        where, rows_, targets = [], [], []
        for s, seq in enumerate(group.sequences):
            for j in range(max(first, row.reused + 1), len(seq)):
                where.append((s, j))
                rows_.append(kept_row[row.nodes[seq[row.reused : j]]])
                targets.append(seq[j])
        values = row.logprobs[rows_, targets].tolist() if where else []
        tops = None
        if group.top_k and where:
            top_lp, top_ids = row.logprobs.topk(group.top_k, dim=-1)
            tops = (top_ids.tolist(), top_lp.tolist())
        out = [TokenLogprobs([None] * len(seq), [[] for _ in seq]) for seq in group.sequences]
        if entry is not None and group.all_positions:
            for res in out:
                res.logprobs[1 : row.reused + 1] = entry.logprobs[1 : row.reused + 1]
                if group.top_k:
                    res.top[1 : row.reused + 1] = [t[: group.top_k] for t in entry.top[1 : row.reused + 1]]
        for (s, j), value, r in zip(where, values, rows_):
            out[s].logprobs[j] = value
            if tops:
                out[s].top[j] = list(zip(tops[0][r], tops[1][r]))
        return out

    # ------------------------------------------------------------------------------ prefix cache
    def _lookup(self, tokens: tuple[int, ...], touch: bool = True) -> tuple[_Entry | None, int]:
        """The cached prompt with the longest common prefix with ``tokens``, and that prefix's length."""
        best, best_len = None, 0
        for entry in self._cache.values():
            n = common_prefix_length(entry.tokens, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is not None and touch:
            self._cache.move_to_end(best.tokens)
        return best, best_len

    def _remember(self, row: _Row, logprobs: torch.Tensor, kv: list, past: int) -> None:
        """Cache the group's prompt: reused key/values, then those of its first ``prompt_len - reused`` nodes."""
        group, reused = row.group, row.reused
        prompt = group.sequences[0][: group.prompt_len]
        if len(prompt) < 2 or any(common_prefix_length(t, prompt) == len(prompt) for t in self._cache):
            return
        new = len(prompt) - reused
        stored = tuple(
            (
                torch.cat([keys[:, :reused], keys[:, past : past + new]], dim=1)[None],
                torch.cat([values[:, :reused], values[:, past : past + new]], dim=1)[None],
            )
            for keys, values in kv
        )
        lps = tops = None
        if self.prompt_logprobs:
            # Node i (i < new) is at position reused + i and predicts prompt[reused + i + 1].
            head = row.entry.logprobs[: reused + 1] if row.entry else [None]
            head_top = row.entry.top[: reused + 1] if row.entry else [[]]
            index = torch.arange(new - 1)
            targets = torch.tensor(prompt[reused + 1 :], dtype=torch.long)
            lps = head + logprobs[index, targets].tolist()
            top_lp, top_ids = logprobs[: new - 1].topk(MAX_TOP_K, dim=-1)
            tops = head_top + [list(zip(i, v)) for i, v in zip(top_ids.tolist(), top_lp.tolist())]
        for tokens in [t for t in self._cache if common_prefix_length(t, prompt) == len(t)]:
            del self._cache[tokens]  # superseded: the new prompt extends it
        self._cache[prompt] = _Entry(prompt, stored, lps, tops)
        while sum(len(t) for t in self._cache) > self._cache_tokens and len(self._cache) > 1:
            self._cache.popitem(last=False)

    def _encode(self, text: str) -> list[int]:
        return self.backend._encode(text)

    def cached_length(self, tokens: Sequence[int]) -> int:
        """Leading tokens of ``tokens`` whose keys and values the prefix cache holds."""
        return self._lookup(tuple(tokens), touch=False)[1]

    # ------------------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int], top_k: int = 0) -> list[Generation]:
        """Greedily continue every prompt in one left-padded batch (a :class:`GenerationRun` run to its end).

        Args:
            prompts: token ids of each prompt.
            max_new_tokens: token limit of each prompt's continuation.
            top_k: most likely alternatives returned per generated token.
        """
        run = GenerationRun(self, prompts, max_new_tokens, top_k)
        while not run.done:
            run.advance(prefill_tokens=None, steps=None)
        return run.results()


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
        self._model, tokenizer, device = scorer._model, scorer._tokenizer, scorer._device
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
        self._cache = _cache_over(None, self._model.config)
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


OnTokens = Callable[[int, Generation], bool]
"""Called after each generated slice with a prompt's index and its new tokens; False stops that prompt."""


@dataclass
class _ScoreTask:
    """A queued :class:`SequenceGroup`; a big one is scored in pieces over several micro-batches."""

    group: SequenceGroup
    future: Future
    results: list[TokenLogprobs | None] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    warmed: int = 0  # prompt tokens read by warm-up pieces so far

    def __post_init__(self) -> None:
        self.results = [None] * len(self.group.sequences)
        self.pending = list(range(len(self.group.sequences)))

    def futures(self) -> list[Future]:
        return [self.future]

    def piece(self, scorer: BatchScorer, budget: int | None) -> tuple[SequenceGroup, list[int]]:
        """The part to score now, feeding about ``budget`` new tokens at most, and the sequences it answers.

        The leading pending sequences that fit go together. A prompt longer than the budget is read in
        chunks first (each chunk's keys and values land in the prefix cache and the next chunk reuses
        them); those warm-up pieces answer no sequence. One sequence's continuation is never split.
        """
        g = self.group
        cost = g.prompt_len - scorer.cached_length(g.sequences[self.pending[0]][: g.prompt_len])
        taken: list[int] = []
        for i in self.pending:
            extra = len(g.sequences[i]) - g.prompt_len
            if budget is not None and taken and cost + extra > budget:
                break
            taken.append(i)
            cost += extra
        prompt_len = g.prompt_len
        if budget is not None and cost > budget:
            if len(taken) == 1 and g.all_positions:  # an echoed sequence is all prompt: read it in chunks
                prompt_len = len(g.sequences[taken[0]]) - 1
            prompt = g.sequences[taken[0]][:prompt_len]
            cached = scorer.cached_length(prompt)
            # Warm up the next chunk, unless other requests pushed the last one out of the cache
            # (then the rest goes in one piece, so that the task always finishes).
            if prompt_len - cached > budget and cached >= self.warmed:
                self.warmed = end = cached + budget
                return SequenceGroup((prompt[: end + 1],), end), []
        self.warmed = 0
        return SequenceGroup(tuple(g.sequences[i] for i in taken), prompt_len, g.all_positions, g.top_k), taken

    def accept(self, taken: list[int], results: list[TokenLogprobs]) -> bool:
        """Keep a piece's results; True (and the future set) once every sequence has them."""
        for i, result in zip(taken, results):
            self.results[i] = result
        done = set(taken)
        self.pending = [i for i in self.pending if i not in done]
        if not self.pending:
            self.future.set_result(self.results)
        return not self.pending


@dataclass
class _GenerateTask:
    """Queued prompts to continue; ``on_tokens`` hears each slice."""

    prompts: list[tuple[int, ...]]
    max_new_tokens: int
    top_k: int
    on_tokens: OnTokens | None
    future: Future
    alone: bool = False  # run in a batch of its own (after a shared batch failed)

    @property
    def width(self) -> int:
        """Prompt tokens a batch of these prompts reads (left-padded to the longest)."""
        return len(self.prompts) * max(len(p) for p in self.prompts)

    def futures(self) -> list[Future]:
        return [self.future]


class _Run:
    """A :class:`GenerationRun` over the prompts of one or more generate tasks."""

    def __init__(self, scorer: BatchScorer, tasks: list[_GenerateTask]) -> None:
        self.tasks = tasks
        self.owners = [(task, j) for task in tasks for j in range(len(task.prompts))]
        self.run = GenerationRun(scorer, [p for task in tasks for p in task.prompts],
                                 [task.max_new_tokens for task, _ in self.owners], max(t.top_k for t in tasks))
        self.started = False  # whether any tokens went out (a failed run can then no longer be retried)

    def advance(self, prefill_tokens: int | None, steps: int | None) -> None:
        """One slice; tells each task's ``on_tokens``, drops the prompts it stops, and sets the futures when done."""
        deltas = self.run.advance(prefill_tokens, steps)
        self.started = self.started or bool(deltas)
        stop = [i for i, delta in deltas.items() if not self._tell(i, delta)]
        self.run.drop(stop)
        if self.run.done:
            results = self.run.results()
            for task in self.tasks:
                task.future.set_result([_top(results[i], task.top_k) for i, (t, _) in enumerate(self.owners) if t is task])

    def _tell(self, i: int, delta: Generation) -> bool:
        task, j = self.owners[i]
        if task.on_tokens is None:
            return True
        try:
            return bool(task.on_tokens(j, _top(delta, task.top_k)))
        except Exception:  # noqa: BLE001  (a broken listener stops its own prompt, not the batch)
            logger.exception("on_tokens failed; generation of that prompt stopped")
            return False

    def fail(self, err: BaseException) -> None:
        for task in self.tasks:
            task.future.set_exception(err)

    def futures(self) -> list[Future]:
        return [task.future for task in self.tasks]


def _top(generation: Generation, k: int) -> Generation:
    """``generation`` with at most ``k`` alternatives per token (tasks of one run may ask for fewer)."""
    return Generation(generation.tokens, generation.logprobs, [t[:k] for t in generation.top], generation.stopped)


class MicroBatcher:
    """Runs score and generate jobs from many threads on one worker thread, in fair micro-batches.

    Each micro-batch takes up to ``max_batch`` jobs in turn, jobs in progress first
    in the order they arrived, and moves each job on by one slice: a score job by
    a piece that feeds at most ``slice_tokens`` new tokens (a longer prompt is read
    in chunks through the prefix cache), a generate job by a prefill chunk of at
    most ``slice_tokens`` tokens or ``decode_steps`` generated tokens. A job that
    is not done goes to the back of the line. A big request therefore holds the
    model for one slice at a time, and small requests that arrive meanwhile run
    in the next micro-batch instead of waiting for all of it.

    All score pieces of a micro-batch share passes; new generate jobs whose
    prompts fit one slice start together in one batch. If a batch of score pieces
    fails, its pieces are retried one by one, so a bad request fails alone.

    Args:
        scorer: the model, used only from the worker thread.
        max_batch: most jobs per micro-batch.
        wait_s: how long an idle worker waits for more jobs before running a batch.
        slice_tokens: most new tokens one job feeds per micro-batch (None: no slicing).
        decode_steps: most tokens one generate job makes per micro-batch (None: no slicing).

    Attributes:
        batches: micro-batches run so far.
        jobs: jobs started so far.
    """

    def __init__(self, scorer: BatchScorer, max_batch: int = 32, wait_s: float = 0.005,
                 slice_tokens: int | None = 512, decode_steps: int | None = 16) -> None:
        self.scorer, self.max_batch, self.wait_s = scorer, max_batch, wait_s
        self.slice_tokens, self.decode_steps = slice_tokens, decode_steps
        self.batches = self.jobs = 0
        self._queue: queue.Queue = queue.Queue()
        self._line: deque = deque()  # jobs in progress, in turn
        self._worker = threading.Thread(target=self._loop, name="flexrl-microbatcher", daemon=True)
        self._worker.start()

    def score(self, group: SequenceGroup) -> Future:
        """Queue a group; the future gives its ``list[TokenLogprobs]``."""
        future: Future = Future()
        self._queue.put(_ScoreTask(group, future))
        return future

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int = 0,
                 on_tokens: OnTokens | None = None) -> Future:
        """Queue greedy continuations of ``prompts``; the future gives their :class:`Generation` list.

        Args:
            prompts: token ids of each prompt (one job: they advance together).
            max_new_tokens: token limit of each continuation.
            top_k: most likely alternatives returned per generated token.
            on_tokens: called on the worker thread after each slice (for streaming); keep it quick.
        """
        if not 0 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k={top_k}; allowed: 0 to {MAX_TOP_K}")
        if not prompts or any(not p for p in prompts):
            raise ValueError("generate needs at least one prompt, each of at least one token")
        future: Future = Future()
        self._queue.put(_GenerateTask([tuple(p) for p in prompts], max_new_tokens, top_k, on_tokens, future))
        return future

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._worker.join()

    def _loop(self) -> None:
        closing = False
        while not (closing and not self._line and self._queue.empty()):
            closing = self._take(block=not self._line and not closing) or closing
            batch = [self._line.popleft() for _ in range(min(self.max_batch, len(self._line)))]
            if not batch:
                continue
            self.batches += 1
            try:
                self._line.extend(self._run(batch))
            except Exception as err:  # noqa: BLE001  (a bug here must not leave submitters waiting forever)
                logger.exception("micro-batch failed")
                for job in batch:
                    for future in job.futures():
                        if not future.done():
                            future.set_exception(err)

    def _take(self, block: bool) -> bool:
        """Move queued jobs to the line (an idle worker waits for one, then ``wait_s`` for more); True on close."""
        taken = 0
        while True:
            try:
                if block and not taken:
                    item = self._queue.get()
                elif block and self.wait_s and taken < self.max_batch:
                    item = self._queue.get(timeout=self.wait_s)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            if item.future.set_running_or_notify_cancel():
                self.jobs += 1
                self._line.append(item)
                taken += 1

    def _run(self, batch: list) -> list:
        """Move every job of ``batch`` on by one slice; returns those not done."""
        unfinished = self._score([job for job in batch if isinstance(job, _ScoreTask)])
        runs = [job for job in batch if isinstance(job, _Run)]
        runs += self._start([job for job in batch if isinstance(job, _GenerateTask)])
        for run in runs:
            try:
                run.advance(self.slice_tokens, self.decode_steps)
            except Exception as err:  # noqa: BLE001  (the run's submitters get the error)
                if run.started or len(run.tasks) == 1:
                    run.fail(err)
                else:  # nothing streamed yet: retry the tasks one by one, so only a bad one fails
                    for task in run.tasks:
                        task.alone = True
                    unfinished += run.tasks
                continue
            if not run.run.done:
                unfinished.append(run)
        return unfinished

    def _score(self, tasks: list[_ScoreTask]) -> list[_ScoreTask]:
        """Score one piece of every task in shared passes; returns the tasks with pieces left."""
        pieces = []
        for task in tasks:
            try:
                pieces.append((task, *task.piece(self.scorer, self.slice_tokens)))
            except Exception as err:  # noqa: BLE001  (its submitter gets the error)
                task.future.set_exception(err)
        try:
            results = self.scorer.score_groups([group for _, group, _ in pieces])
        except Exception:  # noqa: BLE001  (score the pieces one by one so only a bad one fails)
            results = []
            for task, group, _ in pieces:
                try:
                    results.append(self.scorer.score_groups([group])[0])
                except Exception as err:  # noqa: BLE001  (its submitter gets the error)
                    task.future.set_exception(err)
                    results.append(None)
        return [task for (task, _, taken), result in zip(pieces, results)
                if result is not None and not task.accept(taken, result)]

    def _start(self, tasks: list[_GenerateTask]) -> list[_Run]:
        """Group new generate tasks into runs: those that fit one prefill slice together, bigger ones alone."""
        groups: list[list[_GenerateTask]] = []
        shared: list[_GenerateTask] = []
        rows = 0
        for task in sorted(tasks, key=lambda t: max(map(len, t.prompts))):
            if task.alone or (self.slice_tokens is not None and task.width > self.slice_tokens):
                groups.append([task])
                continue
            longest = max(map(len, task.prompts))
            if shared and self.slice_tokens is not None and (rows + len(task.prompts)) * longest > self.slice_tokens:
                groups.append(shared)
                shared, rows = [], 0
            shared.append(task)
            rows += len(task.prompts)
        if shared:
            groups.append(shared)
        runs = []
        for group in groups:
            try:
                runs.append(_Run(self.scorer, group))
            except Exception as err:  # noqa: BLE001  (its submitters get the error)
                for task in group:
                    task.future.set_exception(err)
        return runs
