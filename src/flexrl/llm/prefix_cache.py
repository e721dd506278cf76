"""The key/value cache of prompt prefixes behind every scoring pass: keyed by tokens, least recently used out.

Keys and values of leading tokens depend on those tokens alone, so a new prompt reuses the longest
run of leading tokens it shares with any kept prefix (e.g. a system message shared by many prompts,
when only the instruction after it changed).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from flexrl.llm.base import common_prefix_length


@dataclass(frozen=True)
class CachedPrefix:
    """A kept prefix.

    Attributes:
        tokens: its token ids.
        kv: per layer, (keys, values) of its tokens, each ``[1, heads, len(tokens), dim]``.
        next_logprobs: log-probs of the token after it (``[vocab]``), or ``None``.
        logprobs: log-prob of each of its tokens (``None`` for the first), when the engine keeps them.
        top: per token, the most likely (token id, log-prob) pairs, when the engine keeps them.
    """

    tokens: tuple[int, ...]
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    next_logprobs: torch.Tensor | None = None
    logprobs: list[float | None] | None = None
    top: list[list[tuple[int, float]]] | None = None


class PrefixCache:
    """Kept prefixes, within a token budget; the least recently used goes first (the last one always stays).

    Args:
        max_tokens: token budget of all kept prefixes together (~45 KB of keys and values per token for
            SmolLM2-135M).
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._entries: OrderedDict[tuple[int, ...], CachedPrefix] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tokens(self) -> int:
        """Tokens kept, over all prefixes."""
        return sum(len(t) for t in self._entries)

    def longest(self, tokens: tuple[int, ...], touch: bool = True) -> tuple[CachedPrefix | None, int]:
        """The kept prefix sharing the most leading tokens with ``tokens``, and how many it shares.

        Args:
            tokens: token ids of a prompt.
            touch: count this as a use (the prefix found moves to the back of the eviction queue).
        """
        best, best_len = None, 0
        for entry in self._entries.values():
            n = common_prefix_length(entry.tokens, tokens)
            if n > best_len:
                best, best_len = entry, n
        if best is not None and touch:
            self._entries.move_to_end(best.tokens)
        return best, best_len

    def covers(self, tokens: tuple[int, ...]) -> bool:
        """Whether a kept prefix starts with all of ``tokens``."""
        return any(common_prefix_length(t, tokens) == len(tokens) for t in self._entries)

    def add(self, entry: CachedPrefix) -> None:
        """Keep ``entry``; kept prefixes it extends go (it covers them), then the least recently used over budget."""
        for tokens in [t for t in self._entries if common_prefix_length(t, entry.tokens) == len(t)]:
            del self._entries[tokens]
        self._entries[entry.tokens] = entry
        while self.tokens > self.max_tokens and len(self._entries) > 1:
            self._entries.popitem(last=False)

    def reserve(self, max_tokens: int) -> None:
        """Raise the token budget to at least ``max_tokens``."""
        self.max_tokens = max(self.max_tokens, max_tokens)

    def clear(self) -> None:
        """Drop every kept prefix."""
        self._entries.clear()
