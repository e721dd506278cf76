"""A :class:`~flexrl.llm.base.LLMBackend` running a causal LM with Hugging Face transformers.

A thin layer over :func:`~flexrl.llm.model_loading.load_model` and a
:class:`~flexrl.llm.scoring_engine.ScoringEngine`. Scoring is built for one CPU thread: the key/value
cache of a recurring prompt prefix is kept (a new prefix reuses the leading tokens it shares with a
kept one), and everything that changes per decision (the rest of the prompt plus every option) runs in
a single forward pass, the options laid out as a token trie after the prompt, so shared option tokens
(`` go_to(``...) are computed once and the weights are streamed from memory once per decision.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch

from flexrl.llm.adapters import AdapterCard
from flexrl.llm.base import LLMError, OptionScore
from flexrl.llm.batch_types import SequenceGroup
from flexrl.llm.batching import BatchScorer
from flexrl.llm.model_loading import LoadedModel, load_model
from flexrl.llm.scoring_engine import ScoringEngine

# A few prefixes (e.g. one per instruction and episode layout, and the calibration prompt) cover a run;
# each costs ~15 MB of keys and values (SmolLM2-135M, 320 tokens).
PREFIX_CACHE_TOKENS = 2048
# Token ids of recent cache prefixes: a recurring prefix is tokenised once.
_ENCODED_PREFIXES = 16


class TransformersBackend:
    """Causal LM backend on transformers; by default the embedded SmolLM2-135M-Instruct.

    Args:
        model: ``None`` for the embedded GGUF model, a local Hugging Face model
            directory, or a path to a ``.gguf`` file.
        gguf_file: Name of a ``.gguf`` file inside the ``model`` directory, or a
            path to one when ``model`` is ``None``.
        cache_dir: Where dequantised GGUF weights are cached; defaults to
            :func:`~flexrl.llm.model_loading.default_cache_dir`.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device: Torch device string.
        threads: Torch intra-op threads (process-wide); ``None`` leaves the
            setting alone. One by default because simulation shares the CPU.
        cpu_weights: ``"float16"`` stores the Linear weights of the transformer
            body and the LM head in half precision, packed for fbgemm's GEMM,
            while activations and accumulation stay float32: it halves the
            weight memory streamed per pass (~10% faster scoring), and scores
            move by up to ~0.02 nats. Applies on CPU with ``dtype="float32"``
            where torch has fbgemm (x86); ``"float32"`` keeps the weights as
            loaded.
        tensor_parallel: shard the model over the processes of a
            ``torch.distributed`` run (``torchrun --nproc-per-node N``) with
            transformers' tensor-parallel plan; every rank makes the same calls.
            Needs the ``multigpu`` extra (accelerate). See
            :mod:`flexrl.llm.tensor_parallel`.
        adapter: a LoRA adapter directory (see :mod:`flexrl.llm.adapters`), merged
            into the weights as loaded; ``None``: the untrained model.

    Attributes:
        name: Model id for logs.
        weights: How the body's Linear weights are stored, e.g. ``"float16 (fbgemm)"``.
        load_seconds: Wall time the load took.
        from_cache: Whether GGUF weights came from the dequantised cache.
        adapter_card: The merged adapter's card, or ``None``.

    Raises:
        ModelLoadError: The model or the adapter is missing or cannot be loaded.
    """

    def __init__(
        self,
        model: str | None = None,
        gguf_file: str | None = None,
        cache_dir: str | Path | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        threads: int | None = 1,
        cpu_weights: str = "float16",
        tensor_parallel: bool = False,
        adapter: str | Path | None = None,
    ) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        self._loaded = load_model(model, gguf_file, cache_dir, dtype, device, cpu_weights, tensor_parallel,
                                  None if adapter is None else Path(adapter))
        self._engine = ScoringEngine(self._loaded, cache_tokens=PREFIX_CACHE_TOKENS)
        self._encoded: OrderedDict[str, list[int]] = OrderedDict()
        self.name, self.weights = self._loaded.name, self._loaded.weights
        self.load_seconds, self.from_cache = self._loaded.load_seconds, self._loaded.from_cache
        self.adapter_card: AdapterCard | None = self._loaded.adapter_card

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model, tokenizer and head, with how they were loaded."""
        return self._loaded

    @property
    def engine(self) -> ScoringEngine:
        """The scoring engine behind :meth:`score_options` (and :meth:`batch_scorer`), with its prefix cache."""
        return self._engine

    @property
    def model(self) -> torch.nn.Module:
        """The loaded causal LM (a transformers ``...ForCausalLM``, in eval mode)."""
        return self._loaded.model

    @property
    def tokenizer(self):
        """The model's tokenizer (a transformers ``PreTrainedTokenizerBase``)."""
        return self._loaded.tokenizer

    @property
    def device(self) -> torch.device:
        """The device the model's inputs go to."""
        return self._loaded.device

    @property
    def plain_lm_head(self) -> bool:
        """Whether logits are just the base model's last hidden states times ``model.lm_head.weight``.

        Then a caller may run ``model.model`` and apply the head itself, to the
        positions it needs only (see :func:`~flexrl.llm.tree_pass.chunked_linear`).
        """
        return self._loaded.plain_lm_head

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (empty for empty text), as every scoring path tokenises."""
        return self.tokenizer.encode(text, add_special_tokens=False) if text else []

    def chat_prompt(self, system: str, user: str) -> str:
        """Render a system and a user message with the model's chat template.

        Args:
            system: System message text.
            user: User message text.

        Returns:
            The prompt text, ending with the assistant turn's generation prompt.

        Raises:
            LLMError: The tokenizer has no chat template.
        """
        if not self.tokenizer.chat_template:
            raise LLMError(f"model {self.name!r} has no chat template")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def score_options(
        self, prompt: str, options: list[str], cache_prefix: str | None = None
    ) -> list[OptionScore]:
        """Score each option as the continuation of ``prompt``.

        The prefix, the rest of the prompt and every option are tokenised
        separately (no special tokens) and their ids concatenated. Option ids
        thus never depend on the prompt, and as long as ``cache_prefix`` ends on
        a token boundary (e.g. after the system turn's ``<|im_end|>\\n``), the
        cached and uncached paths feed the model identical ids and return the
        same scores up to float rounding.

        Args:
            prompt: Text the options continue.
            options: Candidate continuations, usually with a leading space.
            cache_prefix: A leading part of ``prompt`` that recurs across calls;
                its key/value cache is kept (within the engine's token budget,
                :data:`PREFIX_CACHE_TOKENS` by default, least recently used out),
                computed from the tokens it shares with a kept prefix on. Ignored
                when ``prompt`` does not start with it. Every prompt reuses what
                the cache holds.

        Returns:
            One :class:`OptionScore` per option, in order.

        Raises:
            ValueError: The prompt is empty or an option has no tokens.
        """
        if not options:
            return []
        option_ids = [self.encode(option) for option in options]
        if any(not ids for ids in option_ids):
            raise ValueError("every option must contain at least one token")
        if cache_prefix and prompt.startswith(cache_prefix):
            head = self._encode_prefix(cache_prefix)
            ids = head + self.encode(prompt[len(cache_prefix) :])
        else:
            head, ids = [], self.encode(prompt)
        if not ids:
            raise ValueError("prompt must not be empty")
        group = SequenceGroup(tuple(tuple(ids + option) for option in option_ids), len(ids))
        (scores,) = self._engine.score([group], remember=[len(head)])
        return [OptionScore(math.fsum(c), len(c)) for c in scores.continuations]

    def batch_scorer(self, cache_tokens: int) -> BatchScorer:
        """A :class:`BatchScorer` over this backend's engine: batched requests and :meth:`score_options` share one prefix cache.

        Args:
            cache_tokens: token budget the shared prefix cache is raised to (it never shrinks).
        """
        return BatchScorer(self, cache_tokens=cache_tokens, engine=self._engine)

    @torch.inference_mode()
    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedily continue ``prompt`` without any cache reuse.

        Args:
            prompt: Text to continue.
            max_new_tokens: Upper bound on generated tokens.

        Returns:
            The generated text, without the prompt and special tokens.
        """
        input_ids = torch.tensor([self.encode(prompt)], device=self.device)
        pad = self.tokenizer.pad_token_id
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
        )
        return self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)

    def _encode_prefix(self, prefix: str) -> list[int]:
        ids = self._encoded.get(prefix)
        if ids is None:
            ids = self._encoded[prefix] = self.encode(prefix)
            if len(self._encoded) > _ENCODED_PREFIXES:
                self._encoded.popitem(last=False)
        self._encoded.move_to_end(prefix)
        return ids
