"""Requests and results of batched scoring and generation: what callers send and get back.

Plain data, free of torch, so that code that only builds requests or reads results
(the serving layer, planners, tests with a fake model) does not load the model stack.
:class:`~flexrl.llm.batching.BatchScorer` and :class:`~flexrl.llm.micro_batcher.MicroBatcher`
take and return these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from flexrl.llm.base import common_prefix_length

MAX_TOP_K = 5
"""Most alternatives returned per position (the OpenAI completions limit)."""


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


OnTokens = Callable[[int, Generation], bool]
"""Called after each generated slice with a prompt's index and its new tokens; False stops that prompt."""
