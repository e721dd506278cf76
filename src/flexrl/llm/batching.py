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
"""

from __future__ import annotations

import math
import queue
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Sequence

import torch

from flexrl.llm.base import OptionScore, common_prefix_length
from flexrl.llm.transformers_backend import TransformersBackend, _cache_over, _chunked_linear

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

    # ------------------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int], top_k: int = 0) -> list[Generation]:
        """Greedily continue every prompt in one left-padded ``generate`` call.

        Args:
            prompts: token ids of each prompt.
            max_new_tokens: token limit of each prompt's continuation.
            top_k: most likely alternatives returned per generated token.
        """
        if not 0 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k={top_k}; allowed: 0 to {MAX_TOP_K}")
        if not prompts:
            return []
        eos = self._tokenizer.eos_token_id
        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else eos
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(p)
            attention[b, width - len(p) :] = 1
        steps = max(max_new_tokens)
        if steps == 0:
            return [Generation([], [], [], False) for _ in prompts]
        out = self._model.generate(
            input_ids=ids.to(self._device),
            attention_mask=attention.to(self._device),
            max_new_tokens=steps,
            do_sample=False,
            pad_token_id=pad,
            output_logits=True,
            return_dict_in_generate=True,
        )
        logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # [B, steps, V]
        results = []
        for b, limit in enumerate(max_new_tokens):
            new = out.sequences[b, width:].tolist()[:limit]
            stopped = eos in new
            new = new[: new.index(eos)] if stopped else new
            lps = logprobs[b, torch.arange(len(new)), torch.tensor(new, dtype=torch.long)].tolist()
            tops = []
            if top_k and new:
                top_lp, top_ids = logprobs[b, : len(new)].topk(top_k, dim=-1)
                tops = [list(zip(i, v)) for i, v in zip(top_ids.tolist(), top_lp.tolist())]
            results.append(Generation(new, lps, tops or [[] for _ in new], stopped))
        return results


class MicroBatcher:
    """Runs score and generate jobs from many threads on one worker thread, in micro-batches.

    The worker takes every queued job (up to ``max_batch``, waiting up to ``wait_s``
    for more once the queue is empty), scores all score jobs in shared passes and
    runs all generate jobs in one batched call. If a batch fails, its jobs are
    retried one by one, so a bad request fails alone.

    Args:
        scorer: the model, used only from the worker thread.
        max_batch: most jobs per micro-batch.
        wait_s: how long to wait for more jobs before running a batch.

    Attributes:
        batches: micro-batches run so far.
        jobs: jobs run so far.
    """

    def __init__(self, scorer: BatchScorer, max_batch: int = 32, wait_s: float = 0.005) -> None:
        self.scorer, self.max_batch, self.wait_s = scorer, max_batch, wait_s
        self.batches = self.jobs = 0
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="flexrl-microbatcher", daemon=True)
        self._worker.start()

    def score(self, group: SequenceGroup) -> Future:
        """Queue a group; the future gives its ``list[TokenLogprobs]``."""
        return self._submit(("score", group))

    def generate(self, prompt: Sequence[int], max_new_tokens: int, top_k: int = 0) -> Future:
        """Queue a greedy continuation; the future gives its :class:`Generation`."""
        return self._submit(("generate", (tuple(prompt), max_new_tokens, top_k)))

    def close(self) -> None:
        """Stop the worker after the queued jobs."""
        self._queue.put(None)
        self._worker.join()

    def _submit(self, job) -> Future:
        future: Future = Future()
        self._queue.put((job, future))
        return future

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get(timeout=self.wait_s) if self.wait_s else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            batch = [(job, f) for job, f in batch if f.set_running_or_notify_cancel()]
            self.batches += 1
            self.jobs += len(batch)
            try:
                results = self._execute([job for job, _ in batch])
            except Exception:  # noqa: BLE001  (run the jobs one by one so only a bad one fails)
                for job, future in batch:
                    try:
                        future.set_result(self._execute([job])[0])
                    except Exception as err:  # noqa: BLE001  (its submitter gets the error)
                        future.set_exception(err)
            else:
                for (_, future), result in zip(batch, results):
                    future.set_result(result)

    def _execute(self, jobs: list) -> list:
        results: list = [None] * len(jobs)
        scores = [i for i, (kind, _) in enumerate(jobs) if kind == "score"]
        for i, result in zip(scores, self.scorer.score_groups([jobs[i][1] for i in scores])):
            results[i] = result
        gens = [i for i, (kind, _) in enumerate(jobs) if kind == "generate"]
        top_k = max((jobs[i][1][2] for i in gens), default=0)
        outputs = self.scorer.generate([jobs[i][1][0] for i in gens], [jobs[i][1][1] for i in gens], top_k)
        for i, out in zip(gens, outputs):
            k = jobs[i][1][2]
            results[i] = Generation(out.tokens, out.logprobs, [t[:k] for t in out.top], out.stopped)
        return results
