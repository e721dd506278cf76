"""Nothing a user loads runs code: crafted SB3 zips are refused by every entry point; weights-only policies load."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from flexrl.cli import main
from flexrl.skills.checkpoint import CheckpointError, convert_sb3_zip, export_policy, load_policy
from flexrl.skills.policies import PolicySet, pretrained_dir


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_zip(path: Path, marker: Path) -> Path:
    """An SB3-shaped zip whose cloudpickled ``data`` entry and ``policy.pth`` both run code when unpickled."""
    evil = base64.b64encode(pickle.dumps(_Payload(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": evil},
            "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": evil,
                                  "low": "[-10. -10. -10. -10. -10. -10.]", "high": "[10. 10. 10. 10. 10. 10.]"},
            "action_space": {":serialized:": evil, "low": "[-1. -1.]", "high": "[1. 1.]"},
            "policy_kwargs": {"net_arch": [64, 64]}, "num_timesteps": 1024}
    weights = io.BytesIO()
    torch.save({"log_std": torch.zeros(2), "payload": _Payload(marker)}, weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("policy.pth", weights.getvalue())
        z.writestr("pytorch_variables.pth", weights.getvalue())
        z.writestr("_stable_baselines3_version", "2.7.0")
    return path


@pytest.fixture()
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    d = tmp_path / "evil"
    d.mkdir()
    for family in ("reach", "avoid"):
        _malicious_zip(d / f"{family}.zip", marker)
    return d, marker


def test_the_payload_is_live(evil):
    """The control: an unpickling loader does run it, so the refusals below are what keeps it out."""
    d, marker = evil
    with zipfile.ZipFile(d / "reach.zip") as z:
        serialized = json.loads(z.read("data"))["policy_class"][":serialized:"]
    subprocess.run([sys.executable, "-c", f"import base64, pickle; pickle.loads(base64.b64decode({serialized!r}))"],
                   check=True)
    assert marker.exists()


def test_policy_set_refuses_an_sb3_zip_and_names_the_conversion(evil):
    d, marker = evil
    with pytest.raises(CheckpointError, match=r"reach\.zip is an SB3 zip.*flexrl convert"):
        PolicySet.load(d)
    with pytest.raises(CheckpointError, match="SB3 zip"):
        PolicySet.load(sources={"avoid": str(d)})
    assert not marker.exists()


def test_convert_reads_no_pickle(evil, tmp_path, capsys):
    d, marker = evil
    assert main(["convert", str(d / "reach.zip"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refused by the weights-only loader" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "out" / "reach.safetensors").exists()


@pytest.mark.parametrize("command", [
    ["eval", "episodes=1", "skills=[stop]"],
    ["run", "planner=oracle", "agent.max_steps=5", "agent.record_video=false"],
])
def test_commands_refuse_malicious_checkpoints(evil, tmp_path, capsys, command):
    d, marker = evil
    ws = tmp_path / "ws"
    assert main([*command, f"checkpoints={d}", f"experiment.workspace={ws}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "SB3 zip" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not marker.exists()
    assert not [p for p in ws.rglob("*") if p.is_file()] if ws.exists() else True  # no run left behind


def _forged_run(ws: Path, marker: Path, signed: str | None) -> Path:
    """A run directory that looks like an interrupted flexrl training run, with a malicious resume zip."""
    run = ws / "quick" / "20260101-000000-abcdef"
    (run / "checkpoints").mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"id": run.name, "kind": "train", "status": "interrupted",
                                               "experiment": "quick", "start": 0}))
    (run / "config.yaml").write_text("skill:\n  family: reach\n")
    name = "last-0000001024.zip"
    _malicious_zip(run / "checkpoints" / name, marker)
    from flexrl.skills.checkpoint import sha256_file

    digest = sha256_file(run / "checkpoints" / name)
    (run / "checkpoints" / "last.json").write_text(json.dumps({"file": name, "sha256": digest, "hmac": signed}))
    return run


@pytest.mark.parametrize("signature", [None, "0" * 64])
def test_resume_refuses_a_zip_this_workspace_did_not_sign(tmp_path, capsys, signature):
    marker = tmp_path / "PWNED"
    ws = tmp_path / "ws"
    run = _forged_run(ws, marker, signature)
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    assert main(["train", f"resume={run}", f"experiment.workspace={ws}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "was not saved by flexrl for this run and user" in err and len(err.splitlines()) == 1
    assert not marker.exists()
    assert json.loads((run / "meta.json").read_text())["status"] == "interrupted"  # untouched
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before


def test_parent_must_be_weights_only(evil, tmp_path, capsys):
    d, marker = evil
    parent = tmp_path / "parent"
    (parent / "checkpoints").mkdir(parents=True)
    (parent / "checkpoints" / "reach.zip").write_bytes((d / "reach.zip").read_bytes())
    assert main(["train", "experiment=quick", f"parent={parent}", f"experiment.workspace={tmp_path / 'ws'}"]) == 2
    assert "reach.safetensors" in capsys.readouterr().err
    assert not marker.exists()


def test_shipped_policies_are_weights_only_and_self_describing():
    shipped = sorted(p.name for p in pretrained_dir().iterdir())
    assert shipped == ["avoid.json", "avoid.safetensors", "reach.json", "reach.safetensors"]
    meta = json.loads((pretrained_dir() / "reach.json").read_text())
    assert meta["format"] == "flexrl-policy/1" and meta["architecture"]["net_arch"] == [64, 64]
    assert meta["observation_space"]["low"] == [-10.0] * 6 and meta["action_space"]["high"] == [1.0, 1.0]


def test_convert_keeps_the_actions_of_a_real_sb3_zip(tmp_path, capsys):
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", "flexrl/GoTo-v0", n_steps=64, batch_size=64, policy_kwargs={"net_arch": [16, 8]},
                device="cpu", seed=0)
    model.save(tmp_path / "mine.zip")
    assert main(["convert", str(tmp_path / "mine.zip"), "--out", str(tmp_path / "out")]) == 0
    assert "mine.safetensors" in capsys.readouterr().out
    policy = load_policy(tmp_path / "out", "mine")
    obs = np.random.default_rng(1).uniform(-3, 3, (50, 6)).astype(np.float32)
    assert np.array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def _copy_of_shipped(tmp_path: Path) -> Path:
    d = tmp_path / "pol"
    d.mkdir()
    for f in ("reach.json", "reach.safetensors"):
        (d / f).write_bytes((pretrained_dir() / f).read_bytes())
    return d


def test_tampered_or_malformed_policies_get_one_line(tmp_path):
    d = _copy_of_shipped(tmp_path)
    weights = bytearray((d / "reach.safetensors").read_bytes())
    weights[-4:] = b"\x00\x00\xc0\x7f"  # a NaN in the last float
    (d / "reach.safetensors").write_bytes(bytes(weights))
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_policy(d, "reach")
    meta = json.loads((d / "reach.json").read_text())
    for bad, match in [({"format": "sb3"}, "format='sb3'"), ({"architecture": {"policy": "os.system"}}, "architecture.policy"),
                       ({"action_space": {"low": [1.0], "high": [0.0]}}, "low <= high"),
                       ({"architecture": {**meta["architecture"], "net_arch": [10**9]}}, "net_arch")]:
        (d / "reach.json").write_text(json.dumps({**meta, **bad}))
        with pytest.raises(CheckpointError, match=match):
            load_policy(d, "reach")
    (d / "reach.json").write_text('{"format": NaN}')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_policy(d, "reach")


def test_export_then_load_round_trips(tmp_path):
    policy = load_policy(pretrained_dir(), "avoid")
    export_policy(policy, tmp_path, "avoid", {"note": "copy"})
    again = load_policy(tmp_path, "avoid")
    obs = np.random.default_rng(2).uniform(-3, 3, (20, 8)).astype(np.float32)
    assert np.array_equal(policy.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])
    with pytest.raises(CheckpointError, match="not a readable SB3 zip"):
        convert_sb3_zip(tmp_path / "avoid.json", tmp_path, "x")


def test_convert_refuses_odd_zips_in_one_line(tmp_path, capsys, monkeypatch):
    listed = tmp_path / "listed.zip"
    with zipfile.ZipFile(listed, "w") as z:
        z.writestr("data", "[1, 2]")
        z.writestr("policy.pth", b"")
    assert main(["convert", str(listed), "--out", str(tmp_path / "out")]) == 2
    assert "holds a list" in capsys.readouterr().err
    monkeypatch.setattr("flexrl.skills.checkpoint.MAX_MEMBER_BYTES", 3)
    assert main(["convert", str(listed), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "expands to" in err and len(err.splitlines()) == 1


def test_convert_to_an_impossible_directory_is_one_line(tmp_path, capsys):
    from stable_baselines3 import PPO

    PPO("MlpPolicy", "flexrl/GoTo-v0", n_steps=64, batch_size=64, device="cpu").save(tmp_path / "reach.zip")
    (tmp_path / "afile").write_text("x")
    assert main(["convert", str(tmp_path / "reach.zip"), "--out", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Not a directory" in err and len(err.splitlines()) == 1


def test_a_policy_of_the_wrong_family_is_refused_at_load(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    for suffix in (".json", ".safetensors"):  # an avoid policy (8-dim inputs) saved as reach (6-dim)
        (d / f"reach{suffix}").write_bytes((pretrained_dir() / f"avoid{suffix}").read_bytes())
    meta = json.loads((d / "reach.json").read_text())
    (d / "reach.json").write_text(json.dumps({**meta, "weights": "reach.safetensors"}))
    with pytest.raises(CheckpointError, match="reach family's policies take 6"):
        PolicySet.load(d, families=("reach",))
