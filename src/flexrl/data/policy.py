"""A policy conditioned on the instruction: (world features, instruction embedding) -> the robot's action.

The BC-Z / RT-1 shape at arena scale: the instruction's sentence embedding (:mod:`flexrl.data.embeddings`)
is projected to ``code_dim`` numbers (a PCA fitted on the training instructions, stored with the policy),
concatenated with the world features (:mod:`flexrl.data.features`) and mapped by an MLP to a planar action
in [-1, 1]. The same network is trained by behaviour cloning and by IQL (d3rlpy's actor has this shape).

Saved weights-only: ``<name>.safetensors`` (the MLP and the projection) and ``<name>.json`` (architecture,
embedder, provenance, the weights' SHA-256). Loading reads tensors and JSON, nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flexrl.data.features import DIM, NAMES
from flexrl.runs.atomic import atomic_write, write_json
from flexrl.skills.checkpoint import CheckpointError, sha256_file

FORMAT = "flexrl-conditioned-policy/1"
MAX_JSON_BYTES = 1_000_000


def mlp(in_dim: int, hidden: list[int], out_dim: int) -> torch.nn.Sequential:
    """Linear-ReLU layers of widths ``hidden``, then a linear layer of ``out_dim`` (tanh applied by the policy)."""
    layers: list[torch.nn.Module] = []
    for width in hidden:
        layers += [torch.nn.Linear(in_dim, width), torch.nn.ReLU()]
        in_dim = width
    layers.append(torch.nn.Linear(in_dim, out_dim))
    return torch.nn.Sequential(*layers)


@dataclass
class Projection:
    """Instruction embedding -> code: ``(e - mean) @ basis / scale`` (a PCA of the training instructions)."""

    mean: np.ndarray
    basis: np.ndarray
    scale: float = 1.0

    @classmethod
    def fit(cls, embeddings: np.ndarray, dim: int) -> "Projection":
        """The top ``dim`` principal directions of ``embeddings`` (n, E); fewer when n or E is smaller."""
        mean = embeddings.mean(axis=0)
        centred = embeddings - mean
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = vt[: min(dim, vt.shape[0])].T.astype(np.float32)
        if basis.shape[1] < dim:  # pad, so the network's input size is what was asked
            basis = np.pad(basis, ((0, 0), (0, dim - basis.shape[1])))
        codes = centred @ basis
        scale = float(codes.std()) or 1.0
        return cls(mean.astype(np.float32), basis, scale)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        return ((np.atleast_2d(embeddings) - self.mean) @ self.basis / self.scale).astype(np.float32)


@dataclass
class ConditionedPolicy:
    """An MLP over [world features, instruction code]; ``act`` maps a batch of both to actions in [-1, 1].

    Attributes:
        net: the MLP (its input is ``DIM + code_dim``).
        projection: embedding -> code.
        info: the JSON description (embedder, hidden widths, provenance, metrics).
    """

    net: torch.nn.Sequential
    projection: Projection
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, projection: Projection, hidden: list[int], embedder: str, seed: int = 0,
            features: list[str] | None = None) -> "ConditionedPolicy":
        """A fresh policy reading ``features`` (names from :data:`~flexrl.data.features.NAMES`; None: all)."""
        features = list(NAMES if features is None else features)
        unknown = [f for f in features if f not in NAMES]
        if unknown or not features:
            raise ValueError(f"features={unknown or features!r}; allowed: names from {', '.join(NAMES)}")
        torch.manual_seed(seed)
        net = mlp(len(features) + projection.basis.shape[1], list(hidden), 2)
        return cls(net, projection, {"embedder": embedder, "hidden": list(hidden), "code_dim": projection.basis.shape[1],
                                     "inputs": features})

    @property
    def columns(self) -> list[int]:
        """Which world features the network reads."""
        return [NAMES.index(name) for name in self.info.get("inputs", NAMES)]

    @property
    def embedder(self) -> str:
        return self.info["embedder"]

    def inputs(self, states: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """The network's input rows for world features (n, DIM) and instruction codes (n, code_dim): the
        features it reads, then the code."""
        return np.concatenate([np.atleast_2d(states)[:, self.columns], np.atleast_2d(codes)], axis=1).astype(np.float32)

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3's interface (what :class:`~flexrl.skills.policies.PolicySet` calls): obs rows are :meth:`inputs`."""
        single = np.ndim(obs) == 1
        with torch.no_grad():
            out = torch.tanh(self.net(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32))).numpy()
        return (out[0] if single else out), None

    # ------------------------------------------------------------------------------ files
    def save(self, directory: str | Path, name: str, extra: dict[str, Any] | None = None) -> Path:
        """Write ``<name>.safetensors`` and ``<name>.json`` atomically; returns the JSON's path."""
        directory = Path(directory)
        tensors = {f"net.{k}": v.detach().contiguous().clone() for k, v in self.net.state_dict().items()}
        tensors["projection.mean"] = torch.from_numpy(self.projection.mean.copy())
        tensors["projection.basis"] = torch.from_numpy(np.ascontiguousarray(self.projection.basis))
        weights = directory / f"{name}.safetensors"
        atomic_write(weights, lambda tmp: save_file(tensors, tmp), suffix=".safetensors")
        info = {**self.info, **(extra or {}), "format": FORMAT, "features": DIM, "projection_scale": self.projection.scale,
                "sha256": sha256_file(weights)}
        self.info = info
        return write_json(directory / f"{name}.json", info)

    @classmethod
    def load(cls, directory: str | Path, name: str = "policy") -> "ConditionedPolicy":
        """Load a saved policy; nothing is unpickled.

        Raises:
            CheckpointError: one line naming a missing, malformed or changed file.
        """
        directory = Path(directory)
        meta_path, weights = directory / f"{name}.json", directory / f"{name}.safetensors"
        for path in (meta_path, weights):
            if not path.is_file():
                raise CheckpointError(f"no conditioned policy at {path}; train one with `flexrl train-offline`")
        if meta_path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{meta_path} is over {MAX_JSON_BYTES} bytes; allowed: a policy description")
        try:
            info = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{meta_path} is not JSON: {err}") from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise CheckpointError(f"{meta_path}: format {info.get('format') if isinstance(info, dict) else info!r}; allowed: {FORMAT}")
        if info.get("sha256") != sha256_file(weights):
            raise CheckpointError(f"{weights} does not match the SHA-256 in {meta_path.name} (changed or truncated)")
        hidden, code_dim, inputs = info.get("hidden"), info.get("code_dim"), info.get("inputs", list(NAMES))
        if not (isinstance(hidden, list) and all(isinstance(w, int) and 0 < w <= 4096 for w in hidden) and len(hidden) <= 8
                and isinstance(code_dim, int) and 0 < code_dim <= 4096 and info.get("features") == DIM
                and isinstance(inputs, list) and inputs and all(name in NAMES for name in inputs)):
            raise CheckpointError(f"{meta_path}: hidden={hidden!r}, code_dim={code_dim!r}, features={info.get('features')!r}, "
                                  f"inputs={inputs!r:.80}; allowed: up to 8 widths in 1..4096, a code_dim in 1..4096, "
                                  f"features {DIM}, inputs named in flexrl.data.features.NAMES")
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{weights}: not a safetensors file ({err})") from None
        net = mlp(len(inputs) + code_dim, hidden, 2)
        try:
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, strict=True)
            projection = Projection(tensors["projection.mean"].numpy(), tensors["projection.basis"].numpy(),
                                    float(info.get("projection_scale", 1.0)))
        except (RuntimeError, KeyError) as err:
            raise CheckpointError(f"{weights}: tensors do not fit {meta_path.name} ({str(err).splitlines()[0]})") from None
        if projection.basis.shape[1] != code_dim:
            raise CheckpointError(f"{weights}: projection has {projection.basis.shape[1]} columns, the JSON says {code_dim}")
        net.eval()
        return cls(net, projection, info)
