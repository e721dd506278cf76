"""Many scoring and generation requests in shared forward passes of one transformers model.

A thin batcher over a :class:`~flexrl.llm.scoring_engine.ScoringEngine`: each scoring request is one
row of a pass, laid out as in :meth:`TransformersBackend.score_options` (the tokens after the longest
cached prefix, then the continuations as a token trie), and rows are packed into passes up to a token
budget.

Prefix caching is automatic: after each request the key/values of its prompt are kept (least
recently used, within a token budget), and a later prompt reuses the longest common prefix with any
kept one, e.g. a system message shared by many agents. A prefix that several requests of one batch
share and the cache lacks is read once, in a pass of its own, first. On one CPU thread a pass costs
about the same per token at any batch size (the matrix products are compute-bound), so there
batching saves per-request overhead rather than arithmetic; on a GPU a pass of many rows costs
little more than a pass of one.

Generation runs through :class:`~flexrl.llm.generation.GenerationRun`; the
:class:`~flexrl.llm.micro_batcher.MicroBatcher` schedules score and generate
jobs from many threads onto one scorer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from transformers import DynamicCache

from flexrl.llm.base import OptionScore, common_prefix_length
from flexrl.llm.batch_types import Generation, ScoreRequest, SequenceGroup, TokenLogprobs
from flexrl.llm.generation import GenerationRun
from flexrl.llm.scoring_engine import GroupScores, ScoringEngine

if TYPE_CHECKING:
    from flexrl.llm.transformers_backend import TransformersBackend

# A prefix shared within a batch is read once, in a pass of its own, when it is at least this
# much longer than what the cache already holds (a pass costs ~10 ms of fixed overhead).
_MIN_SHARED_TOKENS = 16


class BatchScorer:
    """Scores groups of sequences, and generates, in batched passes of a :class:`TransformersBackend`'s model.

    Not thread-safe: use it from one thread (see :class:`~flexrl.llm.micro_batcher.MicroBatcher`).

    Args:
        backend: the loaded model and tokenizer.
        prompt_logprobs: keep per-token log-probs of cached prompts, so that groups with
            ``all_positions`` (echo) can reuse them; costs the output layer at every prompt token.
        cache_tokens: token budget of the prefix cache (~45 KB per token for SmolLM2-135M).
        max_pass_tokens: rows are packed into one pass up to this many new tokens.
        engine: an engine to share (with its prefix cache, whose budget is raised to ``cache_tokens``),
            e.g. the backend's own (:meth:`TransformersBackend.batch_scorer`); ``None``: a new one
            over the backend's model.

    Attributes:
        engine: the scoring engine.
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
        engine: ScoringEngine | None = None,
    ) -> None:
        if engine is None:
            engine = ScoringEngine(backend.loaded, cache_tokens, prompt_logprobs)
        elif engine.prompt_logprobs != prompt_logprobs:
            raise ValueError(f"prompt_logprobs={prompt_logprobs} differs from the shared engine's")
        engine.cache.reserve(cache_tokens)
        self.backend, self.engine = backend, engine
        self.prompt_logprobs = prompt_logprobs
        self.max_pass_tokens = max_pass_tokens
        self.model, self.tokenizer, self.device = engine.model, engine.tokenizer, engine.device
        self.context_tokens = engine.context_tokens

    @property
    def fed_tokens(self) -> int:
        """Tokens the engine has run through the model so far (cached prefixes are not fed again)."""
        return self.engine.fed_tokens

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
            spans.append([len(o) for o in options])
            if options:
                groups.append(SequenceGroup(tuple(tuple(prompt + o) for o in options), len(prompt)))
        results = iter(self._score(groups))
        scores = []
        for lengths in spans:
            conts = next(results).continuations if lengths else []
            scores.append([OptionScore(math.fsum(c), n) for c, n in zip(conts, lengths)])
        return scores

    def score_groups(self, groups: Sequence[SequenceGroup]) -> list[list[TokenLogprobs]]:
        """Per-token log-probs of every group's sequences, packed into as few passes as fit ``max_pass_tokens``.

        Raises:
            ValueError: A group asks for ``all_positions`` from a scorer without ``prompt_logprobs``.
        """
        return [scores.sequences() for scores in self._score(groups)]

    def _score(self, groups: Sequence[SequenceGroup]) -> list[GroupScores]:
        self._prime([g.sequences[0][: g.prompt_len] for g in groups])
        return self.engine.score(groups, max_pass_tokens=self.max_pass_tokens)

    def _prime(self, prompts: list[tuple[int, ...]]) -> None:
        """Read the prompt prefixes that several prompts share and the cache lacks, so that rows do not each recompute them."""
        shared = set()
        for i, prompt in enumerate(prompts):
            within = max((common_prefix_length(prompt, q) for j, q in enumerate(prompts) if j != i), default=0)
            if within - self.engine.cached_length(prompt) >= _MIN_SHARED_TOKENS:
                shared.add(prompt[:within])
        # Keep the longest of nested prefixes; shorter shared parts are read first, by the recursion.
        longest = [p for p in shared if not any(q != p and q[: len(p)] == p for q in shared)]
        if longest:
            self._prime(longest)
            self.engine.read(longest, max_pass_tokens=self.max_pass_tokens)

    def cached_length(self, tokens: Sequence[int]) -> int:
        """Leading tokens of ``tokens`` whose keys and values the prefix cache holds."""
        return self.engine.cached_length(tokens)

    def new_cache(self) -> DynamicCache:
        """An empty key/value cache for :attr:`model`, outside the prefix cache (a :class:`GenerationRun` keeps one)."""
        return self.engine.new_cache()

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
