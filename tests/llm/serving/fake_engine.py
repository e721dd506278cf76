"""A fast stand-in for the served model: one token per UTF-8 byte, fixed log-probs, a fixed continuation.

It implements :class:`~flexrl.llm.serving.engine.Engine`, so request checks, limits, error bodies and
streaming are tested over the real application in milliseconds; tests/llm/test_server.py runs the real model.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Sequence

from flexrl.llm.batch_types import Generation, SequenceGroup, TokenLogprobs

MODEL = "fake-model"
EOS_MARK = "[eos]"
"""A prompt holding this ends its continuation after five tokens, as if the model wrote end-of-text."""
CONTINUATION = "Hello, world! "
"""What the fake model writes after any prompt, repeated."""
SLICE = 4
"""Tokens the fake model hands over per slice."""


def token_logprob(token: int) -> float:
    return -((token % 7) + 1) / 10


class FakeEngine:
    """A byte-level model that answers at once, on the caller's thread."""

    def __init__(self, context_tokens: int = 2048, has_chat_template: bool = True) -> None:
        self.name, self.context_tokens, self.has_chat_template = MODEL, context_tokens, has_chat_template
        self.jobs: list[tuple[str, object]] = []

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        ids, offsets = [], []
        for i, char in enumerate(text):
            data = char.encode()
            ids += list(data)
            offsets += [i] * len(data)
        return ids, offsets

    def decode(self, tokens: Sequence[int]) -> str:
        return bytes(tokens).decode(errors="replace")

    def piece(self, token: int) -> str:
        return bytes([token]).decode(errors="replace")

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}\n" for m in messages) + "<assistant>"

    def score(self, group: SequenceGroup) -> Future:
        self.jobs.append(("score", group))
        first = 1 if group.all_positions else group.prompt_len
        rows = []
        for seq in group.sequences:
            lps = [token_logprob(t) if j >= max(first, 1) else None for j, t in enumerate(seq)]
            tops = [[(t, lp), ((t + 1) % 256, lp - 1.0)][: group.top_k] if lp is not None else [] for t, lp in zip(seq, lps)]
            rows.append(TokenLogprobs(lps, tops))
        return _done(rows)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int, on_tokens=None) -> Future:
        self.jobs.append(("generate", (len(prompts), max_new_tokens, top_k)))
        text = list((CONTINUATION * (max_new_tokens // len(CONTINUATION) + 1)).encode())
        out = []
        for index, prompt in enumerate(prompts):
            limit = min(max_new_tokens, 5) if EOS_MARK in self.decode(prompt) else max_new_tokens
            tokens: list[int] = []
            while len(tokens) < limit:
                new = text[len(tokens) : min(limit, len(tokens) + SLICE)]
                tokens += new
                delta = Generation(new, [token_logprob(t) for t in new], [[(t, token_logprob(t))][:top_k] for t in new],
                                   len(tokens) == limit < max_new_tokens)
                if on_tokens is not None and not on_tokens(index, delta):
                    break
            out.append(Generation(tokens, [token_logprob(t) for t in tokens],
                                  [[(t, token_logprob(t))][:top_k] for t in tokens], len(tokens) < max_new_tokens))
        return _done(out)

    def stats(self) -> dict[str, int]:
        return {"batches": len(self.jobs), "requests": len(self.jobs)}

    def close(self) -> None:
        pass


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future
