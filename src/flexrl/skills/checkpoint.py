"""Weights-only policies: tensors in safetensors, everything else in JSON beside them; nothing is unpickled.

A policy of a skill family is two files, ``<name>.safetensors`` and ``<name>.json``. The JSON describes the
network (SB3's ``ActorCriticPolicy``: net_arch, activation), the observation and action spaces, how
observations are scaled, provenance (steps, run, versions) and the SHA-256 of the weights. Loading rebuilds
the policy from the JSON through SB3's public constructor and copies the tensors in (the nanoGPT habit of
self-describing checkpoints). An SB3 zip unpickles its ``data`` member with cloudpickle, so a crafted zip
runs code when loaded; flexrl never loads one it did not write (see :mod:`flexrl.skills.training_run`), and
:func:`convert_sb3_zip` turns a zip into a weights-only policy while reading only its JSON and tensors.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from flexrl.runs.atomic import atomic_write, write_json

FORMAT = "flexrl-policy/1"
ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
NORMALISATION = "none: observations are scaled in flexrl.skills.goals"
MAX_JSON_BYTES = 1_000_000


class CheckpointError(ValueError):
    """A policy file that is missing, malformed or not what its JSON says; the message is one line."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _box(space: spaces.Box) -> dict[str, Any]:
    return {"low": np.asarray(space.low, dtype=float).tolist(), "high": np.asarray(space.high, dtype=float).tolist()}


def _activation_name(policy) -> str:
    for name, cls in ACTIVATIONS.items():
        if policy.activation_fn is cls:
            return name
    raise CheckpointError(f"activation {policy.activation_fn.__name__}; allowed: {', '.join(ACTIVATIONS)}")


def _net_arch(policy) -> list[int]:
    arch = policy.net_arch
    if isinstance(arch, dict):
        if arch.get("pi") != arch.get("vf"):
            raise CheckpointError(f"net_arch={arch}; only the same widths for policy and value are exported")
        arch = arch["pi"]
    return [int(w) for w in arch]


def export_policy(policy, directory: str | Path, name: str, info: dict[str, Any]) -> Path:
    """Write ``<name>.safetensors`` then ``<name>.json`` (atomically) for an SB3 ``ActorCriticPolicy``.

    Args:
        policy: ``model.policy`` of a PPO model (or a policy from :func:`load_policy`).
        directory: where the two files go.
        name: their stem, usually the family.
        info: provenance merged into the JSON (family, steps, success, hyperparameters, run id).

    Returns:
        The path of the safetensors file.
    """
    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    weights = atomic_write(directory / f"{name}.safetensors", lambda tmp: save_file(state, tmp), suffix=".safetensors")
    write_json(directory / f"{name}.json", {
        **info,
        "format": FORMAT,
        "architecture": {"policy": "ActorCriticPolicy", "net_arch": _net_arch(policy),
                         "activation": _activation_name(policy)},
        "observation_space": _box(policy.observation_space),
        "action_space": _box(policy.action_space),
        "normalisation": NORMALISATION,
        "weights": weights.name,
        "sha256": sha256_file(weights),
    })
    return weights


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is {path.stat().st_size} bytes; a policy description is at most {MAX_JSON_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a {type(data).__name__}; expected a JSON object")
    return data


def _reject_constant(name: str):
    raise ValueError(f"non-standard constant {name}")


def _floats(value: Any, what: str, path: Path) -> list[float]:
    if (not isinstance(value, list) or not value or len(value) > 4096
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise CheckpointError(f"{path}: {what} must be a non-empty list of numbers, got {str(value)[:80]}")
    return [float(v) for v in value]


def _space(desc: Any, what: str, path: Path) -> spaces.Box:
    if not isinstance(desc, dict):
        raise CheckpointError(f"{path}: {what} must be an object with low and high, got {str(desc)[:80]}")
    low, high = _floats(desc.get("low"), f"{what}.low", path), _floats(desc.get("high"), f"{what}.high", path)
    if len(low) != len(high) or any(lo > hi or math.isnan(lo) or math.isnan(hi) for lo, hi in zip(low, high)):
        raise CheckpointError(f"{path}: {what} low and high must have the same length with low <= high")
    return spaces.Box(np.array(low, dtype=np.float32), np.array(high, dtype=np.float32), dtype=np.float32)


def describe(directory: str | Path, name: str) -> dict[str, Any]:
    """The checked JSON of a weights-only policy (format, architecture, spaces)."""
    path = Path(directory) / f"{name}.json"
    meta = _read_json(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format={meta.get('format')!r}; allowed: {FORMAT!r} "
                              "(an SB3 zip? convert it with `flexrl convert ZIP --name NAME --out DIR`)")
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("policy") != "ActorCriticPolicy":
        raise CheckpointError(f"{path}: architecture.policy must be 'ActorCriticPolicy', got {str(arch)[:80]}")
    _check_architecture(arch.get("net_arch"), arch.get("activation"), path)
    meta["observation_space"] = _space(meta.get("observation_space"), "observation_space", path)
    meta["action_space"] = _space(meta.get("action_space"), "action_space", path)
    if not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"{path}: sha256 of the weights is missing")
    return meta


def _check_architecture(widths: Any, activation: Any, source: Path) -> None:
    if (not isinstance(widths, list) or not 1 <= len(widths) <= 8
            or not all(isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 4096 for w in widths)):
        raise CheckpointError(f"{source}: net_arch={str(widths)[:80]}; allowed: 1-8 integer widths in [1, 4096]")
    if activation not in ACTIVATIONS:
        raise CheckpointError(f"{source}: activation={activation!r}; allowed: {', '.join(ACTIVATIONS)}")


def build_policy(observation_space: spaces.Box, action_space: spaces.Box, net_arch: Any, activation: Any, source: Path):
    """An untrained SB3 ``ActorCriticPolicy`` of the described shape (checked first), built through SB3's constructor."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    _check_architecture(net_arch, activation, source)
    return ActorCriticPolicy(observation_space, action_space, lambda _: 0.0, net_arch=list(net_arch),
                             activation_fn=ACTIVATIONS[activation])


def load_policy(directory: str | Path, name: str):
    """Rebuild the policy ``<name>`` in ``directory`` from its JSON and load its safetensors weights.

    Returns:
        An SB3 ``ActorCriticPolicy`` in evaluation mode on the CPU (``predict(obs, deterministic=True)``).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    directory = Path(directory)
    meta = describe(directory, name)
    weights = directory / f"{name}.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"missing {weights} (described by {directory / f'{name}.json'})")
    if sha256_file(weights) != meta["sha256"]:
        raise CheckpointError(f"{weights} does not match the SHA-256 in {name}.json: the file was changed or truncated")
    arch = meta["architecture"]
    policy = build_policy(meta["observation_space"], meta["action_space"], arch["net_arch"], arch["activation"], weights)
    try:
        state = load_file(str(weights), device="cpu")
        policy.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{weights} does not fit the network described in {name}.json: "
                              f"{str(err).strip().splitlines()[0][:200]}") from None
    if not all(torch.isfinite(t).all() for t in state.values()):
        raise CheckpointError(f"{weights} holds NaN or infinite weights")
    policy.set_training_mode(False)
    return policy


MAX_MEMBER_BYTES = 64 * 1024 * 1024
"""An SB3 member larger than this (uncompressed) is refused before it is read: a zip bomb costs nothing."""


def _member(z: zipfile.ZipFile, name: str, source: Path) -> bytes:
    size = z.getinfo(name).file_size
    if size > MAX_MEMBER_BYTES:
        raise CheckpointError(f"{source}: member {name} expands to {size} bytes; at most {MAX_MEMBER_BYTES} are read")
    return z.read(name)


def _readable_box(entry: Any, what: str, source: Path) -> spaces.Box:
    """The bounds SB3 writes in plain text beside a pickled Box (``"low": "[-1. -1.]"``)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("low"), str) or not isinstance(entry.get("high"), str):
        raise CheckpointError(f"{source}: no readable {what} bounds in its data member; is it an SB3 PPO zip of a Box space?")

    def parse(text: str) -> list[float]:
        body = text.strip().strip("[]").replace("\n", " ")
        if not re.fullmatch(r"[\s0-9eE.+\-infa]*", body):
            raise CheckpointError(f"{source}: unreadable {what} bound {text[:80]!r}")
        return [float(v) for v in body.split()]

    return _space({"low": parse(entry["low"]), "high": parse(entry["high"])}, what, source)


def convert_sb3_zip(source: str | Path, directory: str | Path, name: str) -> Path:
    """Turn an SB3 PPO zip into a weights-only policy, without unpickling any code.

    Reads the zip's ``data`` member as plain JSON, ignoring its pickled (``:serialized:``) entries, and its
    ``policy.pth`` with ``torch.load(weights_only=True)``, which refuses anything but tensors and containers.

    Raises:
        CheckpointError: one line naming the zip and what is missing or refused.
    """
    source = Path(source)
    try:
        with zipfile.ZipFile(source) as z:
            data = json.loads(_member(z, "data", source))
            weights_bytes = _member(z, "policy.pth", source)
    except (OSError, zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{source} is not a readable SB3 zip: {str(err).splitlines()[0][:200]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: its data member holds a {type(data).__name__}, not an SB3 model's JSON object")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of what it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(weights_bytes), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises many types for a refused or broken pickle)
        raise CheckpointError(f"{source}: policy.pth was refused by the weights-only loader "
                              f"({type(err).__name__}); it holds more than tensors") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: policy.pth is not a state dict of tensors")
    kwargs = data.get("policy_kwargs") if isinstance(data.get("policy_kwargs"), dict) else {}
    widths = kwargs.get("net_arch", [64, 64])
    if isinstance(widths, dict):
        widths = widths.get("pi")
    activation = "relu" if "ReLU" in json.dumps(kwargs.get("activation_fn", "")) else "tanh"
    boxes = [_readable_box(data.get(k), k, source) for k in ("observation_space", "action_space")]
    policy = build_policy(*boxes, widths, activation, source)
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: its tensors do not fit an ActorCriticPolicy with net_arch={widths}: "
                              f"{str(err).strip().splitlines()[0][:200]}") from None
    steps = data.get("num_timesteps")
    return export_policy(policy, directory, name, {"converted_from": str(source), "source_sha256": sha256_file(source),
                                                   "steps": steps if isinstance(steps, int) else None})
