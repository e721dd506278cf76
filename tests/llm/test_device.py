"""One device check for the planner's LLM and `flexrl serve`: "auto" is the best available device, an unavailable
or malformed one is a one-line error naming the value and the devices this machine has."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from flexrl.config import resolvers, schema
from flexrl.config.validate import compose_checked
from flexrl.llm.config import LLMConfig, available_devices, resolve_device


def test_auto_picks_the_best_available_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert available_devices() == ["auto", "cpu"] and resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"^device='cuda:2' is not a device this machine has; allowed: auto, cpu, cuda, "
                                         r"cuda:0, cuda:1, mps$"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("device", ["cuda", "tpu9", "CPU", "cpu "])
def test_the_planner_config_refuses_a_missing_device_in_one_line(device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError) as err:
        LLMConfig(device=device).validate()
    assert str(err.value) == f"llm.device={device!r} is not a device this machine has; allowed: auto, cpu"
    LLMConfig(backend="openai_compat", device=device).validate()  # a served model does not use it


def test_hf_local_and_the_default_ask_for_the_best_device():
    schema.register()
    resolvers.register()
    assert compose_checked("run", ["llm=hf_local"]).llm.device == "auto"
    assert LLMConfig().device == "auto"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_flexrl_run_with_a_missing_device_is_one_line(tmp_path):
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "flexrl.cli", "run", "llm=hf_local", "llm.device=cuda", "agent.max_steps=1"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr == "flexrl run: llm.device='cuda' is not a device this machine has; allowed: auto, cpu\n"
