"""checkov over the rendered manifests, the Terraform and the Dockerfiles: no failure outside deploy/checkov.yaml's
justified skip list. checkov lives in its own venv (build/checkov-venv, made by `make lint-deploy`): its pins
clash with mlflow's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checkov() -> str:
    found = shutil.which("checkov") or shutil.which("checkov", path=str(ROOT / "build" / "checkov-venv" / "bin"))
    if not found:
        pytest.skip("checkov not found: `make lint-deploy` installs it into build/checkov-venv")
    return found


@pytest.mark.slow  # ~10 s per framework
@pytest.mark.parametrize("framework", ["kubernetes", "terraform", "dockerfile"])
def test_no_unexplained_failure(framework, tmp_path):
    checkov, target = _checkov(), {"terraform": ROOT / "deploy" / "terraform", "dockerfile": ROOT / "deploy" / "docker"}
    if framework == "kubernetes":
        kubectl = shutil.which("kubectl") or pytest.skip("kubectl not found")
        for k in ("overlays/minikube", "overlays/gke", "lws"):
            out = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / k)], capture_output=True,
                                 text=True, check=True, timeout=60).stdout
            (tmp_path / f"{k.replace('/', '-')}.yaml").write_text(out)
        target[framework] = tmp_path
    r = subprocess.run([checkov, "--config-file", str(ROOT / "deploy" / "checkov.yaml"), "-d", str(target[framework]),
                        "--framework", framework], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    assert r.returncode == 0 and "Failed checks: 0" in r.stdout, r.stdout[-4000:]
