"""One-off prompts through any backend: the work behind ``flexrl infer``."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Sequence

from flexrl.llm.base import LLMBackend


@dataclass(frozen=True)
class InferResult:
    """What one prompt gave.

    Attributes:
        prompt: the text the model saw (after the chat template, unless raw).
        text: the generated text, or None when options were scored.
        scores: per option, (option, log-likelihood, tokens), in the given order; None when generating.
        best: the option with the highest score (length-normalised if asked), or None when generating.
        latency_ms: wall time of the model call.
    """

    prompt: str
    text: str | None
    scores: list[tuple[str, float, int]] | None
    best: str | None
    latency_ms: float

    def lines(self) -> list[str]:
        """The result as printable lines: the generated text, or one line per option, best marked."""
        if self.scores is None:
            return [self.text or "", f"({self.latency_ms:.0f} ms)"]
        width = max(len(option) for option, _, _ in self.scores)
        out = [
            f"{'*' if option == self.best else ' '} {option:{width}s}  logprob {lp:9.3f}  ({n} tokens)"
            for option, lp, n in self.scores
        ]
        return [*out, f"best: {self.best}  ({self.latency_ms:.0f} ms)"]


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt arguments of :func:`infer`, shared by ``flexrl infer`` and the tensor-parallel worker."""
    parser.add_argument("text", help="the user message (the whole prompt with --raw)")
    parser.add_argument("--option", action="append", dest="options", help="a candidate answer to score (repeatable)")
    parser.add_argument("--system", default="", help="system message")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--raw", action="store_true", help="no chat template")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (per rank under torchrun)")


def infer(
    backend: LLMBackend,
    text: str,
    system: str = "",
    options: Sequence[str] | None = None,
    max_new_tokens: int = 64,
    raw: bool = False,
    normalise: bool = False,
) -> InferResult:
    """Score ``options`` as answers to ``text``, or generate an answer when no options are given.

    Args:
        backend: any :class:`~flexrl.llm.base.LLMBackend` (local, served, resilient).
        text: the user message, or the whole prompt with ``raw``.
        system: the system message (ignored with ``raw``).
        options: candidate answers to score; None: generate.
        max_new_tokens: generation limit.
        raw: send ``text`` as is, without the chat template.
        normalise: pick the best option by log-likelihood per token instead of the sum.

    Returns:
        The prompt, the answer and the latency.

    Raises:
        ValueError: empty text, duplicate or empty options, or a non-positive ``max_new_tokens``.
        LLMError: the backend failed.
    """
    if not text:
        raise ValueError("the prompt text must not be empty")
    if options is not None and (not options or any(not o for o in options) or len(set(options)) != len(options)):
        raise ValueError("options must be distinct non-empty strings (at least one)")
    if options is None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}; allowed: a positive integer")
    prompt = text if raw else backend.chat_prompt(system, text)
    start = time.perf_counter()
    if options is None:
        answer = backend.generate(prompt, max_new_tokens)
        return InferResult(prompt, answer, None, None, (time.perf_counter() - start) * 1e3)
    scored = backend.score_options(prompt, list(options))
    latency = (time.perf_counter() - start) * 1e3
    scores = [(o, s.logprob, s.n_tokens) for o, s in zip(options, scored)]
    key = (lambda s: s[1] / max(s[2], 1)) if normalise else (lambda s: s[1])
    return InferResult(prompt, None, scores, max(scores, key=key)[0], latency)
