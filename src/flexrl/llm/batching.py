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

Generation runs through :class:`~flexrl.llm.generation.GenerationRun`; the
:class:`~flexrl.llm.micro_batcher.MicroBatcher` schedules score and generate
jobs from many threads onto one scorer.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import DynamicCache

from flexrl.llm.base import OptionScore, common_prefix_length
from flexrl.llm.batch_types import MAX_TOP_K, Generation, ScoreRequest, SequenceGroup, TokenLogprobs
from flexrl.llm.generation import GenerationRun
from flexrl.llm.transformers_backend import TransformersBackend, cache_over, chunked_linear

# A prefix shared within a batch is computed once, in a pass of its own, when it is at least this
# much longer than what the cache already holds (a pass costs ~10 ms of fixed overhead).
_MIN_SHARED_TOKENS = 16


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

    Not thread-safe: use it from one thread (see :class:`~flexrl.llm.micro_batcher.MicroBatcher`).

    Args:
        backend: the loaded model and tokenizer.
        prompt_logprobs: keep per-token log-probs of cached prompts, so that groups with
            ``all_positions`` (echo) can reuse them; costs the output layer at every prompt token.
        cache_tokens: token budget of the prefix cache (~45 KB per token for SmolLM2-135M).
        max_pass_tokens: rows are packed into one pass up to this many new tokens.

    Attributes:
        fed_tokens: tokens run through the model so far (cached prefixes are not fed again).
        model: the backend's model (a transformers causal LM).
        tokenizer: the backend's tokenizer.
        device: the device the model's inputs go to.
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
        self.model, self.tokenizer, self.device = backend.model, backend.tokenizer, backend.device
        self.context_tokens = int(getattr(self.model.config, "max_position_embeddings", 2048))
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
        encode = self.backend.encode
        groups, spans = [], []
        for req in requests:
            options = [encode(o) for o in req.options]
            if any(not ids for ids in options):
                raise ValueError("every option must contain at least one token")
            if req.cache_prefix and req.prompt.startswith(req.cache_prefix):
                prompt = encode(req.cache_prefix) + encode(req.prompt[len(req.cache_prefix) :])
            else:
                prompt = encode(req.prompt)
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
            weight = self.model.lm_head.weight if self.backend.plain_lm_head else None
            for b, row in enumerate(batch):
                kept = torch.tensor(row.kept, device=self.device)
                logits = chunked_linear(hidden[b, kept], weight) if weight is not None else hidden[b, kept]
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
        dtype = self.model.dtype
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
        cache = cache_over(kv, self.model.config)
        inputs = dict(
            input_ids=tokens.to(self.device),
            position_ids=positions.to(self.device),
            attention_mask=mask.to(self.device),
            cache=cache,
            use_cache=True,
        )
        if self.backend.plain_lm_head:
            return self.model.model(**inputs).last_hidden_state, cache, past
        return self.model(**inputs).logits, cache, past

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

    def cached_length(self, tokens: Sequence[int]) -> int:
        """Leading tokens of ``tokens`` whose keys and values the prefix cache holds."""
        return self._lookup(tuple(tokens), touch=False)[1]

    def new_cache(self) -> DynamicCache:
        """An empty key/value cache for :attr:`model`, outside the prefix cache (a :class:`GenerationRun` keeps one)."""
        return cache_over(None, self.model.config)

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
