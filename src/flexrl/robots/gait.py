"""The Ant's gait: what the gait policy observes, and the trained policy as plain numpy.

The observation is built for a batch of bodies at once (training steps many; the arena one), all in the
torso's frame: torso height, gravity direction, the eight joint positions and velocities, linear and angular
velocity, and the command (vx, vy in m/s). No contact forces.

A gait checkpoint is weights-only: ``gait.safetensors`` (the MLP's tensors) and ``gait.json`` (layer
layout, activation, observation normalisation statistics, what made it). Loading reads tensors and JSON;
nothing in it can run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FORMAT = "flexrl-gait/1"
OBS_DIM = 1 + 3 + 8 + 8 + 3 + 3 + 2
"""Height, gravity (3), joint positions (8), joint velocities (8), linear (3) and angular (3) velocity, command (2)."""
SHIPPED = Path(__file__).parent / "pretrained" / "ant_gait"
"""Where the shipped gait checkpoint lives (absent until one is trained and shipped)."""


def rotations(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3), body to world, of unit quaternions (n, 4) in MuJoCo's (w, x, y, z) order."""
    w, x, y, z = quat.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def headings(quat: np.ndarray) -> np.ndarray:
    """Yaw (radians from east) of quaternions (n, 4)."""
    w, x, y, z = quat.T
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def observations(root_q: np.ndarray, root_v: np.ndarray, joint_q: np.ndarray, joint_v: np.ndarray,
                 command: np.ndarray) -> np.ndarray:
    """Gait observations (n, OBS_DIM) from free-joint positions (n, 7) and velocities (n, 6), leg joint
    positions and velocities (n, 8) and body-frame commands (n, 2)."""
    rot = rotations(root_q[:, 3:7])
    lin = np.einsum("nji,nj->ni", rot, root_v[:, 0:3])  # world -> body
    gravity = -rot[:, 2, :]  # R^T (0, 0, -1)
    ang = root_v[:, 3:6]  # a free joint's angular velocity is in the body frame already
    return np.concatenate([root_q[:, 2:3], gravity, joint_q, joint_v / 10.0, lin, ang / 5.0, command],
                          axis=1).astype(np.float32)


def body_commands(world: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """World-frame planar velocities (n, 2) in each body's heading frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([c * world[:, 0] + s * world[:, 1], -s * world[:, 0] + c * world[:, 1]], axis=1)


@dataclass
class GaitPolicy:
    """A trained gait: a tanh MLP on normalised observations, returning motor commands in [-1, 1]^8."""

    weights: list[tuple[np.ndarray, np.ndarray]]
    obs_mean: np.ndarray
    obs_var: np.ndarray
    clip_obs: float
    meta: dict

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "GaitPolicy":
        """The gait checkpoint in ``directory`` (None: the shipped one); read once per file version.

        Raises:
            FileNotFoundError: one line saying where it looked and how to make one.
            ValueError: one line naming a file that is not a gait checkpoint of this observation layout.
        """
        if not directory and not (SHIPPED / "gait.json").is_file():
            raise FileNotFoundError("robot=ant has no shipped gait yet; set robot.gait=<run>/checkpoints/gait, "
                                    "or train one with `flexrl train skill=locomotion robot=ant`")
        path = Path(directory) if directory else SHIPPED
        if not (path / "gait.json").is_file() or not (path / "gait.safetensors").is_file():
            raise FileNotFoundError(f"robot.gait={str(path)!r} holds no gait checkpoint (gait.json and gait.safetensors); "
                                    "train one with `flexrl train skill=locomotion robot=ant`")
        stamp = tuple((path / f).stat().st_mtime_ns for f in ("gait.json", "gait.safetensors"))
        return _load(str(path.resolve()), stamp)

    @classmethod
    def read(cls, path: Path) -> "GaitPolicy":
        """Read and check the two files (use :meth:`load`)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            meta = json.loads((path / "gait.json").read_text())
            tensors = load_file(str(path / "gait.safetensors"))
        except (ValueError, SafetensorError) as err:
            raise ValueError(f"robot.gait={str(path)!r}: unreadable gait checkpoint ({str(err).splitlines()[0]}); "
                             "allowed: the gait/ directory a locomotion run writes") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("obs_dim") != OBS_DIM:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"robot.gait={str(path)!r}: format {got!r} with obs_dim "
                             f"{meta.get('obs_dim') if isinstance(meta, dict) else None!r}; allowed: {FORMAT!r} with obs_dim {OBS_DIM}")
        try:
            layers = [(tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]) for i in range(int(meta["layers"]))]
            policy = cls(layers, np.asarray(meta["obs_mean"], np.float32), np.asarray(meta["obs_var"], np.float32),
                         float(meta["clip_obs"]), meta)
            out = policy.act(np.zeros(OBS_DIM, np.float32))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"robot.gait={str(path)!r}: a gait checkpoint whose layers do not fit ({err}); "
                             "allowed: the gait/ directory a locomotion run writes") from None
        if out.shape != (8,):
            raise ValueError(f"robot.gait={str(path)!r}: the policy outputs {out.shape}; allowed: 8 motor commands")
        return policy

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Motor commands for observations (OBS_DIM,) or (n, OBS_DIM) (the policy's mean action, clipped)."""
        x = np.clip((obs - self.obs_mean) / np.sqrt(self.obs_var + 1e-8), -self.clip_obs, self.clip_obs)
        for i, (w, b) in enumerate(self.weights):
            x = x @ w.T + b
            if i < len(self.weights) - 1:
                x = np.tanh(x)
        return np.clip(x, -1.0, 1.0)



@lru_cache(maxsize=8)
def _load(path: str, stamp: tuple) -> GaitPolicy:
    """One read per gait file version, shared by every arena holding the robot (``stamp``: the files' mtimes)."""
    return GaitPolicy.read(Path(path))

def actor_linears(policy) -> list:
    """The linear layers of an SB3 ``ActorCriticPolicy``'s actor, input first: what a gait checkpoint holds."""
    import torch

    return [m for m in policy.mlp_extractor.policy_net if isinstance(m, torch.nn.Linear)] + [policy.action_net]


def export_gait(policy, obs_mean: np.ndarray, obs_var: np.ndarray, clip_obs: float, directory: str | Path,
                info: dict) -> Path:
    """Write ``gait.safetensors`` then ``gait.json`` (each atomically) from an SB3 ``ActorCriticPolicy`` with a
    tanh MLP and the ``VecNormalize`` observation statistics it was trained with; returns the directory."""
    import torch
    from safetensors.numpy import save_file

    from flexrl.runs.atomic import atomic_write, write_json

    if policy.activation_fn is not torch.nn.Tanh:
        raise ValueError(f"gait activation {policy.activation_fn.__name__}; allowed: Tanh")
    linears = actor_linears(policy)
    tensors = {}
    for i, layer in enumerate(linears):
        tensors[f"layer{i}.weight"] = layer.weight.detach().cpu().numpy().astype(np.float32)
        tensors[f"layer{i}.bias"] = layer.bias.detach().cpu().numpy().astype(np.float32)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "gait.safetensors", lambda tmp: save_file(tensors, tmp))
    write_json(out / "gait.json", {"format": FORMAT, "layers": len(linears), "activation": "tanh",
                                   "obs_dim": OBS_DIM, "obs_mean": np.asarray(obs_mean).tolist(),
                                   "obs_var": np.asarray(obs_var).tolist(), "clip_obs": float(clip_obs),
                                   "log_std": float(policy.log_std.detach().mean()), **info})
    return out
