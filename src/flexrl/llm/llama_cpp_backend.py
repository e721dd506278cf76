"""A :class:`~flexrl.llm.base.LLMBackend` on llama.cpp, through llama-cpp-python (optional extra).

llama-cpp-python compiles llama.cpp from source when installed (about 13 minutes on 2 cores), so it is
not part of the default install: ``pip install 'flexrl[llamacpp]'``. It runs GGUF files directly on
their quantised weights; by default the embedded SmolLM2-135M-Instruct.

Two ways to pick among options:

- ``"logprobs"`` (default): every option is scored by its log-likelihood after the prompt, as the
  transformers backend does. The prompt, its cached prefix and each option are tokenised apart and
  concatenated (as there), and llama.cpp's KV cache keeps the last prompt: a new prompt only runs the
  tokens after the longest prefix it shares with it (the system turn, usually).
- ``"grammar"``: constrained decoding with a GBNF grammar admitting exactly the options; the chosen
  option scores 0 and every other :data:`~flexrl.llm.openai_compat.UNCHOSEN_LOGPROB`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flexrl.llm.base import LLMError, ModelLoadError, OptionScore, common_prefix_length
from flexrl.llm.embedded import EMBEDDED_INSTALL, embedded_gguf_path
from flexrl.llm.openai_compat import UNCHOSEN_LOGPROB

INSTALL = "pip install 'flexrl[llamacpp]' (compiles llama.cpp: ~13 min)"
SCORING = ("logprobs", "grammar")


def _import_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(f"the llama_cpp backend needs llama-cpp-python: {INSTALL}") from exc
    return llama_cpp


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))


class LlamaCppBackend:
    """Causal LM on llama.cpp; by default the embedded GGUF.

    Args:
        model: a ``.gguf`` file; ``None`` for the embedded model.
        n_ctx: context length in tokens.
        threads: CPU threads (one by default: simulation shares the CPU).
        scoring: ``"logprobs"`` or ``"grammar"`` (see the module docstring).

    Raises:
        ModelLoadError: llama-cpp-python is missing (the message has the install command), or the
            model file is missing or unreadable.
    """

    def __init__(self, model: str | None = None, n_ctx: int = 4096, threads: int = 1, scoring: str = "logprobs") -> None:
        if scoring not in SCORING:
            raise ValueError(f"llama_cpp scoring={scoring!r}; allowed: {', '.join(SCORING)}")
        llama_cpp = _import_llama_cpp()
        path = Path(model) if model else embedded_gguf_path()
        if not path.is_file():
            raise ModelLoadError(f"GGUF model file not found: {path} (the default embedded model installs with: {EMBEDDED_INSTALL})")
        start = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                                        logits_all=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load GGUF model {path}: {exc}") from exc
        self.name, self.scoring = path.name, scoring
        self.load_seconds = time.perf_counter() - start
        self.tokens_run = 0  # prompt and option tokens llama.cpp evaluated (prefix reuse shows here)
        template = self._llm.metadata.get("tokenizer.chat_template")
        self._chat = None
        if template:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            self._chat = Jinja2ChatFormatter(template, eos_token=self._special(self._llm.token_eos()),
                                             bos_token=self._special(self._llm.token_bos()))

    @property
    def likelihoods(self) -> bool:
        """Whether scores are log-likelihoods (False under grammar choice: the planner then skips calibration)."""
        return self.scoring == "logprobs"

    def _special(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    def chat_prompt(self, system: str, user: str) -> str:
        """Render a system and a user message with the GGUF's chat template."""
        if self._chat is None:
            raise LLMError(f"model {self.name!r} has no chat template")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self._chat(messages=messages).prompt

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text`` (no BOS; special-token text parsed as special tokens unless ``special`` is False)."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=special) if text else []

    def _run(self, ids: list[int]) -> None:
        """Make the context hold exactly ``ids``, running only what its KV cache lacks (the last id always)."""
        keep = common_prefix_length(self._llm.input_ids[: self._llm.n_tokens], ids[:-1])
        self._llm.n_tokens = keep
        self._llm.eval(ids[keep:])
        self.tokens_run += len(ids) - keep

    def score_options(self, prompt: str, options: list[str], cache_prefix: str | None = None) -> list[OptionScore]:
        """Score each option as the continuation of ``prompt`` (log-likelihood, or grammar choice)."""
        if not options:
            return []
        option_ids = [self.encode(o, special=False) for o in options]
        if not all(option_ids):
            raise ValueError("options must not be empty")
        if self.scoring == "grammar":
            return self._choose(prompt, options, option_ids)
        if cache_prefix and prompt.startswith(cache_prefix):
            ids = self.encode(cache_prefix) + self.encode(prompt[len(cache_prefix) :])
        else:
            ids = self.encode(prompt)
        if not ids:
            raise ValueError("prompt must not be empty")
        if len(ids) + max(map(len, option_ids)) > self._llm.n_ctx():
            raise LLMError(f"prompt of {len(ids)} tokens does not fit the context of {self._llm.n_ctx()}")
        self._run(ids)
        after_prompt = _log_softmax(np.asarray(self._llm.scores[len(ids) - 1], dtype=np.float64))
        out = []
        for option in option_ids:
            total = float(after_prompt[option[0]])
            if len(option) > 1:
                self._run(ids + option[:-1])
                rows = _log_softmax(np.asarray(self._llm.scores[len(ids) : len(ids) + len(option) - 1], dtype=np.float64))
                total += float(rows[np.arange(len(option) - 1), option[1:]].sum())
            out.append(OptionScore(logprob=total, n_tokens=len(option)))
        return out

    def _choose(self, prompt: str, options: list[str], option_ids: list[list[int]]) -> list[OptionScore]:
        from llama_cpp import LlamaGrammar

        grammar = LlamaGrammar.from_string("root ::= " + " | ".join(json.dumps(o) for o in options), verbose=False)
        longest = max(map(len, option_ids))
        text = self._llm.create_completion(prompt, max_tokens=longest + 2, temperature=0.0, grammar=grammar)["choices"][0]["text"]
        return [OptionScore(logprob=0.0 if o == text else UNCHOSEN_LOGPROB, n_tokens=len(ids))
                for o, ids in zip(options, option_ids)]

    def generate(self, prompt: str, max_new_tokens: int) -> str:
        """Greedily continue ``prompt``."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}; must be >= 1")
        answer = self._llm.create_completion(prompt, max_tokens=max_new_tokens, temperature=0.0)
        return answer["choices"][0]["text"]
