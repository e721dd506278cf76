"""The one scoring pass of the transformers backend: prompts and their continuations as token trees over a prefix cache.

Each request (a :class:`~flexrl.llm.batch_types.SequenceGroup`: a prompt and its continuations) is one
row of a pass: the prompt's tokens after its longest cached prefix, then the continuations as a token
trie (a tree-shaped attention mask and explicit positions), so continuation tokens they share
(`` go_to(``...) are computed once. Rows are right-padded and each sees only its own cached prefix.
A single request is a pass of one row: its cached prefix seeds the pass as it is, without a copy.

The prefix cache (:class:`~flexrl.llm.prefix_cache.PrefixCache`) keeps, per request, as many leading
prompt tokens as the caller asks (a recurring system turn, or every prompt), with the log-probs of the
token after them, so a prompt that is all cached feeds only its continuations' trie. On one CPU thread
a pass costs about the same per token at any batch size, and the weights are streamed once per pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import DynamicCache

from flexrl.llm.batch_types import MAX_TOP_K, SequenceGroup, TokenLogprobs
from flexrl.llm.model_loading import LoadedModel
from flexrl.llm.prefix_cache import CachedPrefix, PrefixCache
from flexrl.llm.tree_pass import TreeLayout, cache_over, forward_trees


@dataclass(frozen=True)
class GroupScores:
    """The log-probs of one request (a :class:`~flexrl.llm.batch_types.SequenceGroup`).

    Attributes:
        prompt_len: tokens of the prompt.
        continuations: per continuation, the log-prob of each of its tokens (``None`` for a first
            token that no prompt precedes).
        continuation_top: per continuation and token, the ``top_k`` most likely (token id, log-prob)
            pairs; ``None`` without ``top_k``.
        prompt: with ``all_positions``, the log-prob of each prompt token (``None`` for the first).
        prompt_top: with ``all_positions``, the most likely pairs at each prompt token (empty without ``top_k``).
    """

    prompt_len: int
    continuations: list[list[float | None]]
    continuation_top: list[list[list[tuple[int, float]]]] | None
    prompt: list[float | None] | None = None
    prompt_top: list[list[tuple[int, float]]] | None = None

    def sequences(self) -> list[TokenLogprobs]:
        """Each sequence's :class:`TokenLogprobs` (prompt positions ``None`` without ``all_positions``)."""
        out = []
        for i, cont in enumerate(self.continuations):
            prompt = self.prompt if self.prompt is not None else [None] * self.prompt_len
            prompt_top = self.prompt_top if self.prompt_top is not None else [[] for _ in range(self.prompt_len)]
            top = self.continuation_top[i] if self.continuation_top is not None else [[] for _ in cont]
            out.append(TokenLogprobs(prompt + cont, [list(t) for t in prompt_top] + top))
        return out


@dataclass
class _Row(TreeLayout):
    """One request laid out for a pass, with what it asks for and where its results are."""

    conts: list[tuple[int, ...]] = field(default_factory=list)
    remember: int = 0
    all_positions: bool = False
    top_k: int = 0
    entry: CachedPrefix | None = None
    slot: int = -1  # the row's index in its pass
    first_row: int = -1  # where its kept positions start in the pass's log-prob table
    next_row: int = -1  # the table row of its cached prompt's next-token log-probs, when that starts it
    results: GroupScores | None = None


class ScoringEngine:
    """Scores token sequences in tree passes of one loaded model over one prefix cache.

    Not thread-safe: use it from one thread (see :class:`~flexrl.llm.micro_batcher.MicroBatcher`).

    Args:
        loaded: the model, tokenizer and head.
        cache_tokens: token budget of the prefix cache.
        prompt_logprobs: keep per-token log-probs of cached prompts, so that requests with
            ``all_positions`` (echo) can reuse them; costs the output layer at every prompt token.

    Attributes:
        loaded: the model as loaded.
        model, tokenizer, device: the loaded model's.
        context_tokens: the model's context length (its ``max_position_embeddings``).
        cache: the prefix cache.
        fed_tokens: tokens run through the model so far (cached prefixes are not fed again).
    """

    def __init__(self, loaded: LoadedModel, cache_tokens: int = 2048, prompt_logprobs: bool = False) -> None:
        self.loaded = loaded
        self.model, self.tokenizer, self.device = loaded.model, loaded.tokenizer, loaded.device
        self.prompt_logprobs = prompt_logprobs
        self.context_tokens = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.cache = PrefixCache(cache_tokens)
        self.fed_tokens = 0

    @torch.inference_mode()
    def score(self, groups: Sequence[SequenceGroup], remember: Sequence[int] | None = None,
              max_pass_tokens: int | None = None) -> list[GroupScores]:
        """The log-probs of every group's sequences, in as few passes as fit ``max_pass_tokens`` fed tokens.

        Args:
            groups: the requests.
            remember: per group, leading prompt tokens to keep in the prefix cache afterwards
                (0: none); ``None``: every whole prompt.
            max_pass_tokens: most tokens fed per pass (one row per pass at least); ``None``: one pass.

        Raises:
            ValueError: a group asks for ``all_positions`` from an engine without ``prompt_logprobs``.
        """
        if any(g.all_positions for g in groups) and not self.prompt_logprobs:
            raise ValueError("all_positions needs a BatchScorer built with prompt_logprobs=True")
        keep = [g.prompt_len for g in groups] if remember is None else remember
        rows = [self._layout(g.sequences[0][: g.prompt_len], [s[g.prompt_len :] for s in g.sequences], k,
                             g.all_positions, g.top_k) for g, k in zip(groups, keep, strict=True)]
        self._run(rows, max_pass_tokens)
        return [row.results for row in rows]

    @torch.inference_mode()
    def read(self, prompts: Sequence[Sequence[int]], max_pass_tokens: int | None = None) -> None:
        """Put ``prompts`` in the prefix cache, each from its longest cached prefix on, in shared passes."""
        self._run([self._layout(tuple(p), [], len(p), False, 0) for p in prompts], max_pass_tokens)

    def cached_length(self, tokens: Sequence[int]) -> int:
        """Leading tokens of ``tokens`` whose keys and values the prefix cache holds."""
        return self.cache.longest(tuple(tokens), touch=False)[1]

    def clear_cache(self) -> None:
        """Empty the prefix cache (the next request reads its whole prompt)."""
        self.cache.clear()

    def new_cache(self) -> DynamicCache:
        """An empty key/value cache for :attr:`model`, outside the prefix cache (a ``GenerationRun`` keeps one)."""
        return cache_over(None, self.model.config)

    # ------------------------------------------------------------------------------ layout
    def _layout(self, prompt: tuple[int, ...], conts: list[tuple[int, ...]], remember: int,
                all_positions: bool, top_k: int) -> _Row:
        entry, common = self.cache.longest(prompt)
        size = len(prompt)
        common, remember = min(common, size), min(remember, size)
        whole = common == size and entry is not None and len(entry.tokens) == size and entry.next_logprobs is not None
        if self.prompt_logprobs and (conts or common < size):
            # The cache keeps no distribution where the prompt leaves a cached one, so the last common
            # token is fed again: its output predicts the first differing prompt token.
            reused = max(common - 1, 0)
        elif conts and common == size and not whole:
            reused = max(size - 1, 0)  # nothing predicts the first continuation token: the prompt's last is fed again
        else:
            reused = common
        row = _Row(prompt, reused, entry.kv if reused else None, conts=conts, remember=remember,
                   all_positions=all_positions, top_k=top_k, entry=entry if reused else None)
        for cont in conts:
            for end in range(1, len(cont)):
                key = cont[:end]
                if key not in row.nodes:
                    row.nodes[key] = len(row.nodes)
                    row.parents.append(row.nodes[key[:-1]] if end > 1 else -1)
        rest = row.rest
        if self.prompt_logprobs:
            row.kept = list(range(row.fed))
        else:
            kept = set(range(rest, row.fed))
            if rest and conts:
                kept.add(rest - 1)
            if reused < remember:
                kept.add(remember - 1 - reused)  # the distribution after the kept prefix
            row.kept = sorted(kept)
        return row

    # ------------------------------------------------------------------------------ passes
    def _run(self, rows: list[_Row], max_pass_tokens: int | None) -> None:
        chunk: list[_Row] = []
        for row in sorted(rows, key=lambda r: r.fed):
            if chunk and max_pass_tokens is not None and sum(r.fed for r in chunk) + row.fed > max_pass_tokens:
                self._pass(chunk)
                chunk = []
            chunk.append(row)
        if chunk:
            self._pass(chunk)

    def _pass(self, rows: list[_Row]) -> None:
        """One forward pass over the rows that feed tokens, then every row's results and cache entry."""
        batch = [row for row in rows if row.fed]
        tables, cache, past, size = [], None, 0, 0
        if batch:
            self.fed_tokens += sum(row.fed for row in batch)
            logits, cache, past = forward_trees(self.loaded, batch)
            tables.append(torch.log_softmax(logits.float(), dim=-1))
            for b, row in enumerate(batch):
                row.slot, row.first_row = b, size
                size += len(row.kept)
        for row in rows:
            if row.conts and row.reused and row.reused == len(row.prompt):
                # The whole prompt is cached: its next-token log-probs start the continuations.
                row.next_row, size = size, size + 1
                tables.append(row.entry.next_logprobs[None])
        if not tables:
            return
        table = tables[0] if len(tables) == 1 else torch.cat(tables)
        where, targets = [], []
        spans = [self._targets(row, where, targets) for row in rows]
        values = table[where, targets].tolist() if where else []
        top_k = max(row.top_k for row in rows)
        if self.prompt_logprobs and any(row.remember > row.reused for row in batch):
            top_k = MAX_TOP_K  # kept with the cached prompt, for echo
        tops = None
        if top_k:
            top_lp, top_ids = table.topk(top_k, dim=-1)
            tops = [list(zip(i, v)) for i, v in zip(top_ids.tolist(), top_lp.tolist())]
        for row, (start, end) in zip(rows, spans):
            if row.fed:
                self._remember(row, cache, past, table, values[start:end], where[start:end], tops)
            row.results = self._collect(row, values[start:end], where[start:end], tops)

    def _targets(self, row: _Row, where: list[int], targets: list[int]) -> tuple[int, int]:
        """Append the (table row, token) pairs of ``row``: its fed prompt tokens, then every continuation token."""
        start, size, rest = len(where), len(row.prompt), row.rest
        kept = {fed: row.first_row + k for k, fed in enumerate(row.kept)}
        if self.prompt_logprobs:  # for the cache entry and echo
            for j in range(row.reused + 1, size):
                where.append(kept[j - 1 - row.reused])
                targets.append(row.prompt[j])
        first = row.next_row if row.next_row >= 0 else kept.get(rest - 1)
        for cont in row.conts:
            for t, token in enumerate(cont):
                if t or size:  # nothing predicts a first token that no prompt precedes
                    where.append(first if t == 0 else kept[rest + row.nodes[cont[:t]]])
                    targets.append(token)
        return start, len(where)

    def _collect(self, row: _Row, values: list[float], where: list[int], tops: list | None) -> GroupScores:
        """The row's :class:`GroupScores` from its values (in :meth:`_targets` order)."""
        size, reused, entry, k = len(row.prompt), row.reused, row.entry, row.top_k
        fed_prompt = max(size - reused - 1, 0) if self.prompt_logprobs else 0
        prompt = prompt_top = None
        if row.all_positions:  # the cached part's from the entry (its first token's are None and [])
            prompt = (entry.logprobs[: reused + 1] if entry else [None]) + values[:fed_prompt]
            head_top = entry.top[: reused + 1] if entry else [[]]
            prompt_top = [t[:k] for t in head_top] + [tops[w][:k] if k else [] for w in where[:fed_prompt]]
        conts, conts_top, at = [], [] if k else None, fed_prompt
        for cont in row.conts:
            end = at + len(cont) - (0 if size else 1)
            conts.append(values[at:end] if size else [None, *values[at:end]])
            if k:
                conts_top.append(([] if size else [[]]) + [tops[w][:k] for w in where[at:end]])
            at = end
        return GroupScores(size, conts, conts_top, prompt, prompt_top)

    def _remember(self, row: _Row, cache: DynamicCache, past: int, table: torch.Tensor, values: list[float],
                  where: list[int], tops: list | None) -> None:
        """Keep the row's first ``remember`` prompt tokens, unless the cache already holds them."""
        size, reused, b = row.remember, row.reused, row.slot
        if size <= reused or self.cache.covers(row.prompt[:size]):
            return
        lone = cache.layers[0].keys.shape[0] == 1  # a lone row's cache holds its tokens in order: a view, no copy

        def part(tensor: torch.Tensor) -> torch.Tensor:
            if lone:
                return tensor[:, :, :size]
            return torch.cat([tensor[b : b + 1, :, :reused], tensor[b : b + 1, :, past : past + size - reused]], dim=2)

        kv = tuple((part(layer.keys), part(layer.values)) for layer in cache.layers)
        after = table[row.first_row + row.kept.index(size - 1 - reused)].clone()
        logprobs = top = None
        if self.prompt_logprobs:  # the row's values start with its fed prompt tokens'
            new = size - 1 - reused
            logprobs = (row.entry.logprobs[: reused + 1] if row.entry else [None]) + values[:new]
            top = (row.entry.top[: reused + 1] if row.entry else [[]]) + [tops[w] for w in where[:new]]
        self.cache.add(CachedPrefix(row.prompt[:size], kv, after, logprobs, top))
