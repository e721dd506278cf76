"""The model behind ``flexrl serve``: its tokenizer and the one micro-batcher every model call goes through."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol, Sequence

from flexrl.llm.batch_types import OnTokens, SequenceGroup
from flexrl.llm.config import resolve_device
from flexrl.llm.serving.config import ServeConfig


class Engine(Protocol):
    """What the serving logic needs from a model (:class:`ServedModel`, or a fake in tests).

    Attributes:
        name: the model id clients send.
        context_tokens: the model's context length.
        has_chat_template: whether :meth:`render_chat` can render messages.
    """

    name: str
    context_tokens: int
    has_chat_template: bool

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` (no special tokens added) and each token's start offset in it."""
        ...

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens left out."""
        ...

    def piece(self, token: int) -> str:
        """The text of one token."""
        ...

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """``messages`` (role, content) through the chat template, ending with the assistant's turn."""
        ...

    def score(self, group: SequenceGroup) -> Future:
        """Queue a scoring job (see :meth:`MicroBatcher.score`)."""
        ...

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int,
                 on_tokens: OnTokens | None = None) -> Future:
        """Queue greedy continuations (see :meth:`MicroBatcher.generate`)."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for ``/health``: micro-batches and requests so far."""
        ...

    def close(self) -> None:
        """Stop the model's worker."""
        ...


class ServedModel:
    """The model behind the server: a transformers backend, a batched scorer and the micro-batcher.

    Args:
        config: the server settings (model, dtype, device, batching).

    Raises:
        ModelLoadError: the model cannot be loaded.
        ValueError: the device is malformed or missing on this machine (one line).
    """

    def __init__(self, config: ServeConfig) -> None:
        from flexrl.llm.batching import BatchScorer
        from flexrl.llm.micro_batcher import MicroBatcher
        from flexrl.llm.transformers_backend import TransformersBackend

        backend = TransformersBackend(
            model=config.model, gguf_file=config.gguf_file, cache_dir=config.model_cache, dtype=config.dtype,
            device=resolve_device(config.device, "device"), threads=config.threads,
        )
        scorer = BatchScorer(backend, prompt_logprobs=True, cache_tokens=config.prefix_cache_tokens)
        self.name = config.served_model_name or backend.name
        self.context_tokens = scorer.context_tokens
        self._tokenizer = scorer.tokenizer
        self.has_chat_template = bool(self._tokenizer.chat_template)
        self._batcher = MicroBatcher(scorer, max_batch=config.max_batch, wait_s=config.batch_wait_ms / 1e3,
                                     slice_tokens=config.slice_tokens, decode_steps=config.decode_steps)
        self._pieces: dict[int, str] = {}

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Token ids of ``text`` (no special tokens added) and each token's start offset in it."""
        if not text:
            return [], []
        enc = self._tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [start for start, _ in enc["offset_mapping"]]

    def decode(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens left out."""
        return self._tokenizer.decode(list(tokens), skip_special_tokens=True)

    def piece(self, token: int) -> str:
        """The text of one token (memoised: an echoed answer names thousands of tokens)."""
        text = self._pieces.get(token)
        if text is None:
            text = self._pieces[token] = self._tokenizer.decode([token])
        return text

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """``messages`` through the model's chat template, ending with the assistant's turn."""
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def score(self, group: SequenceGroup) -> Future:
        """Queue a scoring job; the future gives its ``list[TokenLogprobs]``."""
        return self._batcher.score(group)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, top_k: int,
                 on_tokens: OnTokens | None = None) -> Future:
        """Queue greedy continuations of ``prompts`` as one job; the future gives their ``Generation`` list."""
        return self._batcher.generate(prompts, max_new_tokens, top_k, on_tokens)

    def stats(self) -> dict[str, int]:
        """Micro-batches and requests (jobs) so far."""
        return {"batches": self._batcher.batches, "requests": self._batcher.jobs}

    def close(self) -> None:
        """Stop the batcher's worker after the queued jobs."""
        self._batcher.close()
