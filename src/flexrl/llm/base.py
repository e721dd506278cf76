"""The narrow interface the planner needs from a language model.

The planner never generates free text to pick a skill: it scores every valid
skill call as a continuation of the prompt (SayCan-style) and takes the best,
so a decision is always a valid call. Backends implement :class:`LLMBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


class LLMError(RuntimeError):
    """A language-model backend failed."""


class ModelLoadError(LLMError):
    """A model could not be found or loaded; the message names the path and the fix."""


@dataclass(frozen=True)
class OptionScore:
    """Log-likelihood of one option text given a prompt.

    Attributes:
        logprob: Sum of the natural-log probabilities of the option's tokens.
        n_tokens: Number of tokens the option was split into; divide ``logprob``
            by it for a length-normalised score.
    """

    logprob: float
    n_tokens: int


@runtime_checkable
class LLMBackend(Protocol):
    """A causal language model that can format, score and generate."""

    name: str
    # Backends that choose under a constraint instead of scoring (vLLM's structured-output choice,
    # llama.cpp's grammar) set ``likelihoods = False``; the planner then skips calibration.

    def chat_prompt(self, system: str, user: str) -> str:
        """Render a system and a user message with the model's chat template.

        Args:
            system: System message text.
            user: User message text.

        Returns:
            The prompt text, ending with the generation prompt of the assistant turn.
        """
        ...

    def score_options(
        self, prompt: str, options: list[str], cache_prefix: str | None = None
    ) -> list[OptionScore]:
        """Score each option as the continuation of ``prompt``.

        Args:
            prompt: Text the options continue.
            options: Candidate continuations, usually with a leading space.
            cache_prefix: A leading part of ``prompt`` that recurs across calls
                (e.g. the rendered system message); its key/value cache is
                computed once and reused. Ignored when ``prompt`` does not start
                with it.

        Returns:
            One :class:`OptionScore` per option, in order.
        """
        ...

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedily continue ``prompt`` without any cache reuse.

        Args:
            prompt: Text to continue.
            max_new_tokens: Upper bound on generated tokens.

        Returns:
            The generated text, without the prompt and special tokens.
        """
        ...


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading token ids ``a`` and ``b`` share (how much of a cached prompt a new one can reuse)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
