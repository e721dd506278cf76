"""``import flexrl`` registers the Gymnasium ids, as Gymnasium plug-ins do; the CLI and k8s modules import no cycle."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_flexrl_registers_the_env_ids_without_loading_mujoco():
    out = _python("import sys, gymnasium as gym; import flexrl; "
                  "print(sorted(i for i in gym.registry if i.startswith('flexrl/')), 'mujoco' in sys.modules)")
    assert out == "['flexrl/Arena-v0', 'flexrl/Avoid-v0', 'flexrl/GoTo-v0'] False"


def test_gym_make_with_the_module_prefix_needs_no_import():
    assert _python("import gymnasium as gym; print(gym.make('flexrl:flexrl/Arena-v0').spec.id)") == "flexrl/Arena-v0"


def test_k8s_cli_does_not_import_the_cli():
    assert _python("import sys, flexrl.deploy.k8s_cli; print('flexrl.cli' in sys.modules)") == "False"
