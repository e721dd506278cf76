"""LoRA adapters for the planner's language model: where they live, what they say about themselves, and merging.

An adapter is a directory in peft's format, weights in safetensors only: ``adapter_config.json``,
``adapter_model.safetensors`` and flexrl's card ``adapter.json`` (base model, prompt format, training data
and metrics). Loading reads JSON and tensors, never a pickle: a directory holding any other file
(``adapter_model.bin``, a ``.pt``) is refused. The adapter is merged into the base weights in memory
(peft's ``merge_and_unload``), so scoring costs what the base model costs.

``llm.adapter``: ``null`` (the untrained model), ``shipped`` (the planner adapter inside the package,
trained by ``flexrl distill``) or a directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from flexrl.llm.base import ModelLoadError

CARD = "adapter.json"
CARD_FORMAT = "flexrl-adapter/1"
ALLOWED_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", CARD, "README.md"})
SHIPPED = "shipped"


@dataclass(frozen=True)
class AdapterCard:
    """What an adapter says about itself.

    Attributes:
        path: the adapter directory.
        prompt: the prompt format it was trained on (the planner uses it: see ``flexrl.planners.prompting``).
        base_model: the base model it adapts (file name, for the log).
        info: everything else in the card (data, training, metrics).
    """

    path: Path
    prompt: str
    base_model: str
    info: dict[str, Any]


def shipped_adapter_dir() -> Path:
    """The planner adapter shipped inside the package."""
    return Path(str(resources.files("flexrl.planners") / "adapter"))


def resolve_adapter(value: str | Path | None) -> Path | None:
    """The adapter directory ``llm.adapter`` names (None: no adapter).

    Raises:
        ModelLoadError: one line when the value names no adapter directory.
    """
    if value is None or value == "" or str(value).lower() in ("null", "none"):
        return None
    path = shipped_adapter_dir() if str(value) == SHIPPED else Path(value).expanduser()
    if not path.is_dir():
        what = "the shipped adapter is missing from the package" if str(value) == SHIPPED else "no such directory"
        raise ModelLoadError(f"llm.adapter={str(value)!r}: {what}; allowed: null, {SHIPPED} or an adapter directory "
                             f"({', '.join(sorted(ALLOWED_FILES - {'README.md'}))})")
    return path


def read_card(path: Path) -> AdapterCard:
    """Check the adapter directory's files and read its card.

    Raises:
        ModelLoadError: one line naming the unexpected file, the missing file or the bad card field.
    """
    found = {p.name for p in path.iterdir()}
    extra = sorted(found - ALLOWED_FILES)
    if extra:
        raise ModelLoadError(f"adapter {path}: unexpected file {extra[0]!r} (weights load from safetensors only); "
                             f"allowed: {', '.join(sorted(ALLOWED_FILES))}")
    missing = sorted({"adapter_config.json", "adapter_model.safetensors", CARD} - found)
    if missing:
        raise ModelLoadError(f"adapter {path}: {missing[0]} is missing; allowed: a directory written by flexrl distill")
    try:
        card = json.loads((path / CARD).read_text())
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"adapter {path}: {CARD} is not readable JSON ({err}); allowed: a card written by flexrl distill") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        got = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelLoadError(f"adapter {path}: {CARD} format {got!r}; allowed: {CARD_FORMAT!r}")
    prompt = card.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise ModelLoadError(f"adapter {path}: {CARD} prompt={prompt!r}; allowed: the name of a prompt format")
    return AdapterCard(path, prompt, str(card.get("base_model", "")), card)


def apply_adapter(model, path: Path):
    """``model`` with the adapter at ``path`` merged into its weights (in memory; the files are unchanged).

    Call on the float32 (or bfloat16) weights as loaded, before any packing or quantising.

    Raises:
        ModelLoadError: one line when the directory is not a valid adapter for this model.
    """
    read_card(path)
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelLoadError("an adapter needs peft; allowed: pip install 'peft>=0.13', or llm.adapter=null") from None
    try:
        merged = PeftModel.from_pretrained(model, str(path), is_trainable=False, use_safetensors=True).merge_and_unload()
    except Exception as err:  # shape mismatches, bad config keys: one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"adapter {path} does not fit the model: {first[:200]}; allowed: an adapter trained on this base model") from None
    return merged
